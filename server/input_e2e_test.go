package server_test

// End-to-end tests of input checking against hostile and careless callers: NaN and
// infinities in float fields, numbers outside their documented ranges, and InputFile
// content types and file names that would break the multipart part sent upstream. Each
// bad request gets INVALID_ARGUMENT / INVALID_REQUEST with a BadRequest naming the field
// and the allowed range, and reaches the gateway not at all (the simulator's recorded
// requests).

import (
	"context"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

// inCall is one RPC with a request built by the case.
type inCall func(ctx context.Context, c generationv1.GenerationServiceClient) error

func inT2I(mod func(*generationv1.TextToImageRequest)) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.TextToImageRequest{Prompt: "a lighthouse"}
		mod(r)
		_, err := c.TextToImage(ctx, r)
		return err
	}
}

func inI2I(mod func(*generationv1.ImageToImageRequest)) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.ImageToImageRequest{Prompt: "make it blue", Image: image1()}
		mod(r)
		_, err := c.ImageToImage(ctx, r)
		return err
	}
}

func inI2V(mod func(*generationv1.ImageToVideoRequest)) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.ImageToVideoRequest{Image: image1()}
		mod(r)
		_, err := c.ImageToVideo(ctx, r)
		return err
	}
}

func inUpscale(mod func(*generationv1.UpscaleRequest)) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.UpscaleRequest{Prompt: "sharper", Image: image1()}
		mod(r)
		_, err := c.Upscale(ctx, r)
		return err
	}
}

func inLlm(mod func(*generationv1.LlmRequest)) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}}
		mod(r)
		_, err := c.Llm(ctx, r)
		return err
	}
}

// inLlmStream reads the stream to its end: a validation error arrives on the first Recv.
func inLlmStream(mod func(*generationv1.LlmRequest)) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}}
		mod(r)
		s, err := c.LlmStream(ctx, r)
		if err != nil {
			return err
		}
		for {
			if _, err := s.Recv(); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
		}
	}
}

func inI2IFile(f *generationv1.InputFile) inCall {
	return inI2I(func(r *generationv1.ImageToImageRequest) { r.Image = f })
}

func inA2TFile(f *generationv1.InputFile) inCall {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.AudioToText(ctx, &generationv1.AudioToTextRequest{Audio: f})
		return err
	}
}

// requireRefused asserts err is INVALID_REQUEST with a violation for field whose
// description contains every want fragment, and that the simulator got no request.
func requireRefused(t *testing.T, h *harness, err error, field string, want ...string) {
	t.Helper()
	st := requireStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST")
	got := fieldViolations(t, st)
	desc, ok := got[field]
	if !ok {
		t.Fatalf("no violation for %q: %v", field, got)
	}
	if len(got) != 1 {
		t.Errorf("violations = %v, want only %q", got, field)
	}
	for _, w := range want {
		if !strings.Contains(desc, w) {
			t.Errorf("%s: description %q does not say %q", field, desc, w)
		}
	}
	if !strings.Contains(st.Message(), field) {
		t.Errorf("message %q does not name %q", st.Message(), field)
	}
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("the simulator received %d requests for an invalid call", n)
	}
}

// TestE2E_Input_NonFiniteFloats: NaN, +Inf and -Inf in every float field of every
// request are INVALID_ARGUMENT naming the field, with the allowed range, and nothing
// reaches the gateway. Before, JSON pipelines failed with INTERNAL (encoding/json
// refuses NaN) and multipart pipelines sent the text "NaN" upstream.
func TestE2E_Input_NonFiniteFloats(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	fields := []struct {
		name, field, rng string
		call             func(x float64) inCall
	}{
		{"TextToImage", "guidance_scale", "from 0 to 30", func(x float64) inCall {
			return inT2I(func(r *generationv1.TextToImageRequest) { r.GuidanceScale = &x })
		}},
		{"ImageToImage", "strength", "from 0 to 1", func(x float64) inCall {
			return inI2I(func(r *generationv1.ImageToImageRequest) { r.Strength = &x })
		}},
		{"ImageToImage", "guidance_scale", "from 0 to 30", func(x float64) inCall {
			return inI2I(func(r *generationv1.ImageToImageRequest) { r.GuidanceScale = &x })
		}},
		{"ImageToImage", "image_guidance_scale", "from 0 to 30", func(x float64) inCall {
			return inI2I(func(r *generationv1.ImageToImageRequest) { r.ImageGuidanceScale = &x })
		}},
		{"ImageToVideo", "noise_aug_strength", "from 0 to 1", func(x float64) inCall {
			return inI2V(func(r *generationv1.ImageToVideoRequest) { r.NoiseAugStrength = &x })
		}},
		{"Llm", "temperature", "from 0 to 2", func(x float64) inCall {
			return inLlm(func(r *generationv1.LlmRequest) { r.Temperature = &x })
		}},
		{"Llm", "top_p", "from 0 to 1", func(x float64) inCall {
			return inLlm(func(r *generationv1.LlmRequest) { r.TopP = &x })
		}},
		{"LlmStream", "temperature", "from 0 to 2", func(x float64) inCall {
			return inLlmStream(func(r *generationv1.LlmRequest) { r.Temperature = &x })
		}},
		{"LlmStream", "top_p", "from 0 to 1", func(x float64) inCall {
			return inLlmStream(func(r *generationv1.LlmRequest) { r.TopP = &x })
		}},
	}
	for _, f := range fields {
		for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			t.Run(f.name+"/"+f.field+"/"+strconv.FormatFloat(x, 'g', -1, 64), func(t *testing.T) {
				h.sim.Reset()
				err := f.call(x)(ctxTimeout(t, 5*time.Second), h.client)
				requireRefused(t, h, err, f.field, "finite", f.rng)
			})
		}
	}
}

// boundCase is one numeric field at its bounds: ok is the extreme value accepted (it
// reaches the gateway with exactly that value), bad the nearest or absurd value refused.
type boundCase struct {
	name     string
	pipeline string
	field    string
	want     string  // fragment of the violation's description: the allowed range
	sent     float64 // the value the gateway must see for ok
	ok, bad  inCall
}

func i32(v int32) *int32     { return &v }
func i64(v int64) *int64     { return &v }
func f64(v float64) *float64 { return &v }

var boundCases = []boundCase{
	// text-to-image
	{"t2i width absurd", livepeer.PipelineTextToImage, "width", "multiple of 8 from 8 to 2048", 2048,
		inT2I(func(r *generationv1.TextToImageRequest) { r.Width = i32(2048) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.Width = i32(100000) })},
	{"t2i height over", livepeer.PipelineTextToImage, "height", "multiple of 8 from 8 to 2048", 8,
		inT2I(func(r *generationv1.TextToImageRequest) { r.Height = i32(8) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.Height = i32(2056) })},
	{"t2i width not a multiple of 8", livepeer.PipelineTextToImage, "width", "multiple of 8", 1016,
		inT2I(func(r *generationv1.TextToImageRequest) { r.Width = i32(1016) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.Width = i32(1001) })},
	{"t2i num_images_per_prompt absurd", livepeer.PipelineTextToImage, "num_images_per_prompt", "from 1 to 10", 10,
		inT2I(func(r *generationv1.TextToImageRequest) { r.NumImagesPerPrompt = i32(10) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.NumImagesPerPrompt = i32(1000000) })},
	{"t2i num_images_per_prompt over", livepeer.PipelineTextToImage, "num_images_per_prompt", "from 1 to 10", 1,
		inT2I(func(r *generationv1.TextToImageRequest) { r.NumImagesPerPrompt = i32(1) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.NumImagesPerPrompt = i32(11) })},
	{"t2i num_inference_steps over", livepeer.PipelineTextToImage, "num_inference_steps", "from 1 to 500", 500,
		inT2I(func(r *generationv1.TextToImageRequest) { r.NumInferenceSteps = i32(500) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.NumInferenceSteps = i32(501) })},
	{"t2i guidance_scale over", livepeer.PipelineTextToImage, "guidance_scale", "from 0 to 30", 30,
		inT2I(func(r *generationv1.TextToImageRequest) { r.GuidanceScale = f64(30) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.GuidanceScale = f64(30.5) })},
	{"t2i seed negative", livepeer.PipelineTextToImage, "seed", "from 0 to 9007199254740991", 0,
		inT2I(func(r *generationv1.TextToImageRequest) { r.Seed = i64(0) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.Seed = i64(-1) })},
	{"t2i seed beyond 2^53", livepeer.PipelineTextToImage, "seed", "from 0 to 9007199254740991", 1<<53 - 1,
		inT2I(func(r *generationv1.TextToImageRequest) { r.Seed = i64(1<<53 - 1) }),
		inT2I(func(r *generationv1.TextToImageRequest) { r.Seed = i64(1 << 53) })},
	// image-to-image
	{"i2i image_guidance_scale over", livepeer.PipelineImageToImage, "image_guidance_scale", "from 0 to 30", 30,
		inI2I(func(r *generationv1.ImageToImageRequest) { r.ImageGuidanceScale = f64(30) }),
		inI2I(func(r *generationv1.ImageToImageRequest) { r.ImageGuidanceScale = f64(1e9) })},
	{"i2i guidance_scale over", livepeer.PipelineImageToImage, "guidance_scale", "from 0 to 30", 0,
		inI2I(func(r *generationv1.ImageToImageRequest) { r.GuidanceScale = f64(0) }),
		inI2I(func(r *generationv1.ImageToImageRequest) { r.GuidanceScale = f64(31) })},
	{"i2i num_inference_steps absurd", livepeer.PipelineImageToImage, "num_inference_steps", "from 1 to 500", 1,
		inI2I(func(r *generationv1.ImageToImageRequest) { r.NumInferenceSteps = i32(1) }),
		inI2I(func(r *generationv1.ImageToImageRequest) { r.NumInferenceSteps = i32(100000) })},
	{"i2i num_images_per_prompt over", livepeer.PipelineImageToImage, "num_images_per_prompt", "from 1 to 10", 10,
		inI2I(func(r *generationv1.ImageToImageRequest) { r.NumImagesPerPrompt = i32(10) }),
		inI2I(func(r *generationv1.ImageToImageRequest) { r.NumImagesPerPrompt = i32(11) })},
	{"i2i seed negative", livepeer.PipelineImageToImage, "seed", "from 0 to 9007199254740991", 1<<53 - 1,
		inI2I(func(r *generationv1.ImageToImageRequest) { r.Seed = i64(1<<53 - 1) }),
		inI2I(func(r *generationv1.ImageToImageRequest) { r.Seed = i64(math.MinInt64) })},
	// image-to-video
	{"i2v width over", livepeer.PipelineImageToVideo, "width", "multiple of 8 from 8 to 2048", 2048,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Width = i32(2048) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Width = i32(100000) })},
	{"i2v height over", livepeer.PipelineImageToVideo, "height", "multiple of 8 from 8 to 2048", 576,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Height = i32(576) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Height = i32(4096) })},
	{"i2v fps absurd", livepeer.PipelineImageToVideo, "fps", "from 1 to 60", 60,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Fps = i32(60) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Fps = i32(100000) })},
	{"i2v fps over", livepeer.PipelineImageToVideo, "fps", "from 1 to 60", 1,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Fps = i32(1) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Fps = i32(61) })},
	{"i2v motion_bucket_id over", livepeer.PipelineImageToVideo, "motion_bucket_id", "from 0 to 255", 255,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.MotionBucketId = i32(255) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.MotionBucketId = i32(256) })},
	{"i2v motion_bucket_id negative", livepeer.PipelineImageToVideo, "motion_bucket_id", "from 0 to 255", 0,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.MotionBucketId = i32(0) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.MotionBucketId = i32(-1) })},
	{"i2v noise_aug_strength over", livepeer.PipelineImageToVideo, "noise_aug_strength", "from 0 to 1", 1,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.NoiseAugStrength = f64(1) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.NoiseAugStrength = f64(1.5) })},
	{"i2v num_inference_steps over", livepeer.PipelineImageToVideo, "num_inference_steps", "from 1 to 500", 500,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.NumInferenceSteps = i32(500) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.NumInferenceSteps = i32(501) })},
	{"i2v seed negative", livepeer.PipelineImageToVideo, "seed", "from 0 to 9007199254740991", 42,
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Seed = i64(42) }),
		inI2V(func(r *generationv1.ImageToVideoRequest) { r.Seed = i64(-42) })},
	// upscale
	{"upscale num_inference_steps over", livepeer.PipelineUpscale, "num_inference_steps", "from 1 to 500", 500,
		inUpscale(func(r *generationv1.UpscaleRequest) { r.NumInferenceSteps = i32(500) }),
		inUpscale(func(r *generationv1.UpscaleRequest) { r.NumInferenceSteps = i32(1 << 30) })},
	{"upscale seed beyond 2^53", livepeer.PipelineUpscale, "seed", "from 0 to 9007199254740991", 1<<53 - 1,
		inUpscale(func(r *generationv1.UpscaleRequest) { r.Seed = i64(1<<53 - 1) }),
		inUpscale(func(r *generationv1.UpscaleRequest) { r.Seed = i64(math.MaxInt64) })},
	// llm (JSON) and its streaming twin
	{"llm temperature over", livepeer.PipelineLLM, "temperature", "from 0 to 2", 2,
		inLlm(func(r *generationv1.LlmRequest) { r.Temperature = f64(2) }),
		inLlm(func(r *generationv1.LlmRequest) { r.Temperature = f64(2.5) })},
	{"llm temperature negative", livepeer.PipelineLLM, "temperature", "from 0 to 2", 0,
		inLlm(func(r *generationv1.LlmRequest) { r.Temperature = f64(0) }),
		inLlm(func(r *generationv1.LlmRequest) { r.Temperature = f64(-0.1) })},
	{"llm max_tokens over", livepeer.PipelineLLM, "max_tokens", "from 1 to 8192", 8192,
		inLlm(func(r *generationv1.LlmRequest) { r.MaxTokens = i32(8192) }),
		inLlm(func(r *generationv1.LlmRequest) { r.MaxTokens = i32(8193) })},
	{"llm top_k zero", livepeer.PipelineLLM, "top_k", "-1 (disabled) or at least 1", -1,
		inLlm(func(r *generationv1.LlmRequest) { r.TopK = i32(-1) }),
		inLlm(func(r *generationv1.LlmRequest) { r.TopK = i32(0) })},
	{"llm top_k negative", livepeer.PipelineLLM, "top_k", "-1 (disabled) or at least 1", 1,
		inLlm(func(r *generationv1.LlmRequest) { r.TopK = i32(1) }),
		inLlm(func(r *generationv1.LlmRequest) { r.TopK = i32(-5) })},
	{"llm stream max_tokens absurd", livepeer.PipelineLLM, "max_tokens", "from 1 to 8192", 1,
		inLlmStream(func(r *generationv1.LlmRequest) { r.MaxTokens = i32(1) }),
		inLlmStream(func(r *generationv1.LlmRequest) { r.MaxTokens = i32(1000000) })},
	{"llm stream temperature over", livepeer.PipelineLLM, "temperature", "from 0 to 2", 1.5,
		inLlmStream(func(r *generationv1.LlmRequest) { r.Temperature = f64(1.5) }),
		inLlmStream(func(r *generationv1.LlmRequest) { r.Temperature = f64(3) })},
	{"llm stream top_k zero", livepeer.PipelineLLM, "top_k", "-1 (disabled) or at least 1", 50,
		inLlmStream(func(r *generationv1.LlmRequest) { r.TopK = i32(50) }),
		inLlmStream(func(r *generationv1.LlmRequest) { r.TopK = i32(0) })},
}

// sentNumber is field's value in a recorded gateway request, as a number.
func sentNumber(t *testing.T, rec livepeertest.Request, field string) float64 {
	t.Helper()
	if rec.JSON != nil {
		f, ok := rec.JSON[field].(float64)
		if !ok {
			t.Fatalf("JSON body has no number %q: %v", field, rec.JSON)
		}
		return f
	}
	s, ok := rec.Form[field]
	if !ok {
		t.Fatalf("form has no field %q: %v", field, rec.Form)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("form field %s = %q is not a number", field, s)
	}
	return f
}

// TestE2E_Input_NumericBounds: every numeric field of every request has a range.
// Outside it (an absurd value such as width 100000, a million images or fps 100000, and
// the first value past the bound) the call is INVALID_ARGUMENT with a BadRequest naming
// the field and the range, and the gateway sees nothing; at the bound itself the call
// goes through and the gateway gets exactly that value.
func TestE2E_Input_NumericBounds(t *testing.T) {
	t.Parallel()
	// One harness, cases in turn: each starts from an empty simulator record.
	h := newHarness(t)
	for _, tc := range boundCases {
		t.Run(tc.name, func(t *testing.T) {
			h.sim.Reset()
			err := tc.bad(ctxTimeout(t, 5*time.Second), h.client)
			requireRefused(t, h, err, tc.field, tc.want, "when set")

			if err := tc.ok(ctxTimeout(t, 5*time.Second), h.client); err != nil {
				t.Fatalf("value at the bound refused: %v", err)
			}
			reqs := h.sim.Requests()
			if len(reqs) != 1 || reqs[0].Pipeline != tc.pipeline {
				t.Fatalf("simulator requests = %d, want 1 %s", len(reqs), tc.pipeline)
			}
			if got := sentNumber(t, reqs[0], tc.field); got != tc.sent {
				t.Errorf("gateway got %s = %v, want %v", tc.field, got, tc.sent)
			}
		})
	}
}

// TestE2E_Input_FileHeaders: InputFile.content_type and filename go into the multipart
// part's headers. A content type with CR/LF (header injection), one that is not a MIME
// type or is too long, and a file name with CR/LF, NUL, a path or too many bytes are
// INVALID_ARGUMENT naming the field (image.content_type, audio.filename, ...) with what
// is allowed, and nothing is sent. Ordinary values, quotes in a file name included, are
// sent as given.
func TestE2E_Input_FileHeaders(t *testing.T) {
	t.Parallel()
	file := func(name, ct string) *generationv1.InputFile {
		return &generationv1.InputFile{Content: pngBytes, Filename: name, ContentType: ct}
	}
	wav := func(name, ct string) *generationv1.InputFile {
		return &generationv1.InputFile{Content: wavBytes, Filename: name, ContentType: ct}
	}
	cases := []struct {
		name  string
		call  inCall
		field string
		want  string
	}{
		{"content_type CRLF header injection", inI2IFile(file("", "image/png\r\nX-Injected: yes")), "image.content_type", "no CR, LF"},
		{"content_type trailing LF", inI2IFile(file("", "image/png\n")), "image.content_type", "control characters"},
		{"content_type LF in a parameter", inA2TFile(wav("", "audio/wav; x=\"a\nb\"")), "audio.content_type", "control characters"},
		{"content_type not a MIME type", inI2IFile(file("", "not a type")), "image.content_type", "MIME type"},
		{"content_type without subtype", inI2IFile(file("", "image")), "image.content_type", "type/subtype"},
		{"content_type too long", inI2IFile(file("", "image/"+strings.Repeat("x", 250))), "image.content_type", "at most 255 bytes"},
		{"filename CRLF", inI2IFile(file("a.png\r\nContent-Type: text/html\r\n\r\n<script>", "")), "image.filename", "no control characters"},
		{"filename NUL", inA2TFile(wav("a\x00.wav", "")), "audio.filename", "no control characters"},
		{"filename path", inI2IFile(file("../../etc/passwd", "")), "image.filename", `no "/"`},
		{"filename windows path", inI2IFile(file(`C:\Users\x.png`, "")), "image.filename", `"\"`},
		{"filename dot dot", inI2IFile(file("..", "")), "image.filename", `not "." or ".."`},
		{"filename too long", inI2IFile(file(strings.Repeat("x", 252)+".png", "")), "image.filename", "at most 255 bytes"},
	}
	h := newHarness(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.sim.Reset()
			err := tc.call(ctxTimeout(t, 5*time.Second), h.client)
			requireRefused(t, h, err, tc.field, tc.want)
		})
	}

	t.Run("ordinary values are sent as given", func(t *testing.T) {
		h.sim.Reset()
		name, ct := `my "best" photo (1).png`, "image/png; charset=binary"
		if err := inI2IFile(file(name, ct))(ctxTimeout(t, 5*time.Second), h.client); err != nil {
			t.Fatal(err)
		}
		reqs := h.sim.Requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests", len(reqs))
		}
		if got := reqs[0].Files["image"]; got.Filename != name || got.ContentType != ct {
			t.Errorf("gateway got filename %q, content type %q; want %q, %q", got.Filename, got.ContentType, name, ct)
		}
	})
}
