package main

// 10 MiB ImageToImage uploads: the memory genservice needs per call in flight.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"time"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

const uploadBytes = 10 << 20

var uploadModel = livepeer.DefaultModels[livepeer.PipelineImageToImage]

// uploadPayload is a PNG signature followed by random bytes (incompressible, and
// sniffed as image/png).
func uploadPayload() []byte {
	b := make([]byte, uploadBytes)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

func grpcImageToImage(clients []generationv1.GenerationServiceClient, payload []byte) callFunc {
	req := &generationv1.ImageToImageRequest{
		ModelId: uploadModel, Prompt: "make it blue",
		Image: &generationv1.InputFile{Content: payload, Filename: "in.png", ContentType: "image/png"},
	}
	return func(ctx context.Context, w, conc int) error {
		resp, err := clients[w%min(conc, len(clients))].ImageToImage(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.GetImages()) == 0 {
			return errors.New("no images in the answer")
		}
		return nil
	}
}

func directImageToImage(client *http.Client, gatewayURL, key string, payload []byte) (callFunc, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("model_id", uploadModel)
	_ = mw.WriteField("prompt", "make it blue")
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="image"; filename="in.png"`)
	h.Set("Content-Type", "image/png")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return nil, err
	}
	_, _ = pw.Write(payload)
	if err := mw.Close(); err != nil {
		return nil, err
	}
	body, ctype := buf.Bytes(), mw.FormDataContentType()
	url := gatewayURL + "/" + livepeer.PipelineImageToImage
	return func(ctx context.Context, _, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header["Content-Type"] = []string{ctype}
		req.Header["Authorization"] = []string{"Bearer " + key}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("simulator answered %d: %s", resp.StatusCode, data)
		}
		return nil
	}, nil
}

// uploadPhase is one concurrency level of uploads.
type uploadPhase struct {
	conc                 int
	calls, errs          int
	firstErr             error
	p50Direct, p50Gen    time.Duration
	baseline             uint64 // genservice VmRSS before any upload
	peak1, peak2         uint64 // VmHWM after the first and after the second batch
	rssSampled           uint64 // highest VmRSS sampled
	peakResetUnsupported bool
}

// measureUploads runs two equal batches of uploads at conc callers through genservice
// (the second shows whether memory keeps growing) and a few straight to the simulator
// for the latency reference. The peak RSS is reset before the phase.
func measureUploads(ctx context.Context, gen *child, genCall, directCall callFunc, conc, perCaller int, baseline uint64) uploadPhase {
	up := uploadPhase{conc: conc, baseline: baseline}
	note := func(r loadResult) {
		up.calls += len(r.lats)
		up.errs += r.errs
		if up.firstErr == nil {
			up.firstErr = r.firstErr
		}
	}
	d := runLoad(ctx, directCall, conc, 0, perCaller)
	note(d)
	up.p50Direct = percentile(d.lats, 0.5)
	if err := gen.resetPeak(); err != nil {
		up.peakResetUnsupported = true
	}
	sampler := sampleRSS(gen, 5*time.Millisecond)
	r1 := runLoad(ctx, genCall, conc, 0, perCaller)
	note(r1)
	_, up.peak1, _ = gen.memory()
	r2 := runLoad(ctx, genCall, conc, 0, perCaller)
	note(r2)
	up.rssSampled = sampler.finish()
	_, up.peak2, _ = gen.memory()
	all := append(r1.lats, r2.lats...)
	slices.Sort(all)
	up.p50Gen = percentile(all, 0.5)
	return up
}
