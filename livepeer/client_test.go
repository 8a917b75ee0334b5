package livepeer

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

func newSim(t *testing.T, cfg livepeertest.Config) *livepeertest.Server {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = testSecret
	}
	s, err := livepeertest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newTestClient(t *testing.T, gatewayURL string, edit func(*Config)) *Client {
	t.Helper()
	cfg := Config{GatewayURL: gatewayURL, Keys: StaticKey(mustParseKey(t, testSecret))}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func t2i() *TextToImageParams {
	return &TextToImageParams{ModelID: DefaultModels[PipelineTextToImage], Prompt: "a lighthouse at dusk"}
}

func TestClientSendsBearerKey(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), func(c *Config) { c.UserAgent = "genservice/test" })
	res, err := c.TextToImage(context.Background(), t2i())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || !strings.HasPrefix(res.Images[0].URL, sim.Origin()+"/stream/") {
		t.Errorf("images = %+v", res.Images)
	}
	reqs := sim.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests recorded", len(reqs))
	}
	h := reqs[0].Header
	if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+testSecret {
		t.Errorf("Authorization = %q, want exactly %q", got, "Bearer "+testSecret)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "genservice/test"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if reqs[0].Method != http.MethodPost || reqs[0].Path != "/api/generate/text-to-image" {
		t.Errorf("request %s %s", reqs[0].Method, reqs[0].Path)
	}
	if reqs[0].JSON["model_id"] != DefaultModels[PipelineTextToImage] || reqs[0].JSON["prompt"] != "a lighthouse at dusk" {
		t.Errorf("body = %s", reqs[0].Body)
	}
}

// Every pipeline's request passes the simulator's validation (Studio's schemas and the
// gateway's checks), multipart ones included.
func TestClientAllPipelines(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), nil)
	ctx := context.Background()
	png := File{ContentType: "image/png", Content: []byte("\x89PNG\r\n\x1a\n fake")}
	wav := File{ContentType: "audio/wav", Content: []byte("RIFF\x00\x00\x00\x00WAVEfmt ")}
	str := func(s string) *string { return &s }
	seed := int64(7)
	calls := map[string]func() error{
		PipelineTextToImage: func() error { _, err := c.TextToImage(ctx, t2i()); return err },
		PipelineImageToImage: func() error {
			r, err := c.ImageToImage(ctx, &ImageToImageParams{ModelID: DefaultModels[PipelineImageToImage], Prompt: "p", Image: png, Seed: &seed})
			if err == nil && (len(r.Images) != 1 || r.Images[0].Seed != 7) {
				t.Errorf("image-to-image: %+v", r)
			}
			return err
		},
		PipelineImageToVideo: func() error {
			_, err := c.ImageToVideo(ctx, &ImageToVideoParams{ModelID: DefaultModels[PipelineImageToVideo], Image: png})
			return err
		},
		PipelineUpscale: func() error {
			_, err := c.Upscale(ctx, &UpscaleParams{ModelID: DefaultModels[PipelineUpscale], Prompt: "p", Image: png})
			return err
		},
		PipelineAudioToText: func() error {
			r, err := c.AudioToText(ctx, &AudioToTextParams{ModelID: DefaultModels[PipelineAudioToText], Audio: wav, ReturnTimestamps: TimestampsSentence})
			if err == nil && (r.Text == nil || len(r.Chunks) == 0) {
				t.Errorf("audio-to-text: %+v", r)
			}
			return err
		},
		PipelineSegmentAnything2: func() error {
			r, err := c.SegmentAnything2(ctx, &SegmentAnything2Params{ModelID: DefaultModels[PipelineSegmentAnything2], Image: png, PointCoords: []Point{{1, 2}}, PointLabels: []int32{1}})
			if err == nil && (len(r.Masks) == 0 || len(r.Scores) != len(r.Masks) || r.Masks[0].Height*r.Masks[0].Width != len(r.Masks[0].Values)) {
				t.Errorf("segment-anything-2: %+v", r)
			}
			return err
		},
		PipelineLLM: func() error {
			r, err := c.LLM(ctx, &LLMRequest{Model: DefaultModels[PipelineLLM], MaxTokens: DefaultLLMMaxTokens, Stream: true,
				Messages: []LLMMessage{{Role: "user", Content: "hi"}}})
			if err == nil && len(r.Choices) == 0 {
				t.Errorf("llm: %+v", r)
			}
			return err
		},
		PipelineImageToText: func() error {
			_, err := c.ImageToText(ctx, &ImageToTextParams{ModelID: DefaultModels[PipelineImageToText], Image: png, Prompt: str("what")})
			return err
		},
		PipelineTextToSpeech: func() error {
			r, err := c.TextToSpeech(ctx, &TextToSpeechParams{ModelID: DefaultModels[PipelineTextToSpeech], Text: "hello"})
			if err == nil && !strings.HasPrefix(r.Audio.URL, "http://") {
				t.Errorf("text-to-speech: %+v", r.Audio)
			}
			return err
		},
	}
	for _, p := range Pipelines {
		call := calls[p]
		if call == nil {
			t.Errorf("no test call for pipeline %s", p)
			continue
		}
		if err := call(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, r := range sim.Requests() {
		if r.Pipeline == PipelineLLM && r.JSON["stream"] != false {
			t.Errorf("LLM sent stream=%v, want false", r.JSON["stream"])
		}
		if r.Files["image"].Size > 0 && r.Files["image"].Filename != "image.png" {
			t.Errorf("%s: image filename %q", r.Pipeline, r.Files["image"].Filename)
		}
	}
}

func TestClientWrongKey(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	other := mustParseKey(t, "some-other-key-0000")
	c := newTestClient(t, sim.URL(), func(c *Config) { c.Keys = StaticKey(other) })
	_, err := c.TextToImage(context.Background(), t2i())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want StatusError 401", err)
	}
	if se.Message != "Invalid API key" || se.KeyFingerprint != other.Fingerprint() || se.Pipeline != PipelineTextToImage {
		t.Errorf("StatusError = %+v", se)
	}
	if strings.Contains(err.Error(), "some-other-key") {
		t.Errorf("error shows the key: %v", err)
	}
	if n := sim.Hits(PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	var targetHits atomic.Int32
	var leakedAuth atomic.Value
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		targetHits.Add(1)
		leakedAuth.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"images":[{"url":"https://x/y.png","seed":1,"nsfw":false}]}`))
	}))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL+r.URL.Path, code)
		}))
		c := newTestClient(t, redirector.URL+"/api/beta/generate", nil)
		ci := &Trace{}
		_, err := c.TextToImage(WithTrace(context.Background(), ci), t2i())
		redirector.Close()
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != code {
			t.Errorf("%d: err = %v, want StatusError %d", code, err, code)
		}
		if ci.Attempts != 1 || ci.Status != code {
			t.Errorf("%d: Trace = %+v", code, ci)
		}
	}
	if n := targetHits.Load(); n != 0 {
		t.Errorf("redirect target was called %d times (Authorization %q)", n, leakedAuth.Load())
	}
}

func TestClientRetriesGatewayErrors(t *testing.T) {
	for _, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			sim := newSim(t, livepeertest.Config{})
			fail := livepeertest.Step{Status: code, Body: livepeertest.GatewayError("busy")}

			// Default: two attempts, both failing.
			c := newTestClient(t, sim.URL(), nil)
			sim.Script(PipelineTextToImage, fail, fail)
			ci := &Trace{}
			_, err := c.TextToImage(WithTrace(context.Background(), ci), t2i())
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != code || se.Message != "busy" {
				t.Fatalf("err = %v, want StatusError %d", err, code)
			}
			if n := sim.Hits(PipelineTextToImage); n != 2 {
				t.Errorf("hits = %d, want 2", n)
			}
			if ci.Attempts != 2 || ci.Status != code {
				t.Errorf("Trace = %+v", ci)
			}

			// One failure then success: the retry succeeds.
			sim.Reset()
			sim.Script(PipelineTextToImage, fail)
			ci = &Trace{}
			if _, err := c.TextToImage(WithTrace(context.Background(), ci), t2i()); err != nil {
				t.Fatalf("retry after %d: %v", code, err)
			}
			if n := sim.Hits(PipelineTextToImage); n != 2 || ci.Attempts != 2 || ci.Status != http.StatusOK {
				t.Errorf("hits = %d, Trace = %+v", n, ci)
			}

			// MaxAttempts 1 disables retries.
			sim.Reset()
			one := newTestClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 1 })
			sim.Script(PipelineTextToImage, fail, fail)
			if _, err := one.TextToImage(context.Background(), t2i()); !errors.As(err, &se) || se.StatusCode != code {
				t.Fatalf("MaxAttempts 1: err = %v", err)
			}
			if n := sim.Hits(PipelineTextToImage); n != 1 {
				t.Errorf("MaxAttempts 1: hits = %d, want 1", n)
			}
		})
	}
}

// A retried multipart request carries the same body again.
func TestClientRetryReplaysMultipartBody(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), nil)
	sim.Script(PipelineImageToImage, livepeertest.Step{Status: http.StatusServiceUnavailable, Body: livepeertest.GatewayError("Service Unavailable Error")})
	img := File{ContentType: "image/png", Content: randomBytes(300_000, 9)}
	if _, err := c.ImageToImage(context.Background(), &ImageToImageParams{ModelID: "m", Prompt: "p", Image: img}); err != nil {
		t.Fatal(err)
	}
	reqs := sim.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	a, b := reqs[0].Files["image"], reqs[1].Files["image"]
	if a.Size != int64(len(img.Content)) || a != b || reqs[0].Form["prompt"] != "p" || reqs[1].Form["prompt"] != "p" {
		t.Errorf("attempts sent different bodies: %+v / %+v", a, b)
	}
}

func TestClientDoesNotRetry(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		header http.Header
	}{
		{http.StatusInternalServerError, livepeertest.StudioError("Failed to generate text-to-image"), nil},
		{http.StatusBadRequest, livepeertest.GatewayError(": Prompt must be provided."), nil},
		{http.StatusUnprocessableEntity, livepeertest.StudioError("x"), nil},
		{http.StatusForbidden, livepeertest.StudioError("forbidden"), nil},
		{http.StatusNotFound, livepeertest.StudioError("not found"), nil},
		{http.StatusTooManyRequests, livepeertest.StudioError("Too many AI requests"), nil}, // no Retry-After
		{http.StatusInternalServerError, livepeertest.GatewayError("Internal Server Error"), http.Header{"Retry-After": {"0"}}},
	} {
		sim := newSim(t, livepeertest.Config{})
		c := newTestClient(t, sim.URL(), nil)
		step := livepeertest.Step{Status: tc.status, Body: tc.body, Header: tc.header}
		sim.Script(PipelineTextToImage, step, step)
		_, err := c.TextToImage(context.Background(), t2i())
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != tc.status {
			t.Errorf("%d: err = %v", tc.status, err)
		}
		if n := sim.Hits(PipelineTextToImage); n != 1 {
			t.Errorf("%d: hits = %d, want 1 (never retried)", tc.status, n)
		}
	}
}

func TestClientRateLimited(t *testing.T) {
	limited := livepeertest.Step{
		Status: http.StatusTooManyRequests,
		Body:   livepeertest.StudioError("Too many AI requests"),
		Header: http.Header{"Retry-After": {"1"}},
	}
	t.Run("retried when the deadline allows", func(t *testing.T) {
		sim := newSim(t, livepeertest.Config{})
		c := newTestClient(t, sim.URL(), nil)
		sim.Script(PipelineTextToImage, limited)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if _, err := c.TextToImage(ctx, t2i()); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < time.Second {
			t.Errorf("retried after %v, before Retry-After (1s)", el)
		}
		if n := sim.Hits(PipelineTextToImage); n != 2 {
			t.Errorf("hits = %d, want 2", n)
		}
	})
	t.Run("retried without a caller deadline", func(t *testing.T) {
		sim := newSim(t, livepeertest.Config{})
		c := newTestClient(t, sim.URL(), nil)
		sim.Script(PipelineTextToImage, limited)
		if _, err := c.TextToImage(context.Background(), t2i()); err != nil {
			t.Fatal(err)
		}
		if n := sim.Hits(PipelineTextToImage); n != 2 {
			t.Errorf("hits = %d, want 2", n)
		}
	})
	t.Run("not retried when the deadline is shorter", func(t *testing.T) {
		sim := newSim(t, livepeertest.Config{})
		c := newTestClient(t, sim.URL(), nil)
		sim.Script(PipelineTextToImage, limited, limited)
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.TextToImage(ctx, t2i())
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("err = %v, want StatusError 429", err)
		}
		if !se.HasRetryAfter || se.RetryAfter != time.Second || se.Message != "Too many AI requests" {
			t.Errorf("StatusError = %+v", se)
		}
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Errorf("gave up after %v; it should not wait when Retry-After cannot fit", el)
		}
		if n := sim.Hits(PipelineTextToImage); n != 1 {
			t.Errorf("hits = %d, want 1", n)
		}
	})
	t.Run("per-pipeline timeout shorter than Retry-After", func(t *testing.T) {
		sim := newSim(t, livepeertest.Config{})
		c := newTestClient(t, sim.URL(), func(c *Config) { c.Timeouts = map[string]time.Duration{PipelineTextToImage: 500 * time.Millisecond} })
		sim.Script(PipelineTextToImage, limited, limited)
		_, err := c.TextToImage(context.Background(), t2i())
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusTooManyRequests || se.RetryAfter != time.Second {
			t.Fatalf("err = %v, want StatusError 429 with RetryAfter 1s", err)
		}
		if n := sim.Hits(PipelineTextToImage); n != 1 {
			t.Errorf("hits = %d, want 1", n)
		}
	})
	t.Run("503 with Retry-After beyond the deadline", func(t *testing.T) {
		sim := newSim(t, livepeertest.Config{})
		c := newTestClient(t, sim.URL(), nil)
		busy := livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error"), Header: http.Header{"Retry-After": {"30"}}}
		sim.Script(PipelineTextToImage, busy, busy)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.TextToImage(ctx, t2i())
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != 503 || se.RetryAfter != 30*time.Second {
			t.Fatalf("err = %v", err)
		}
		if n := sim.Hits(PipelineTextToImage); n != 1 {
			t.Errorf("hits = %d, want 1", n)
		}
	})
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestClientConnectError(t *testing.T) {
	url := "http://" + closedAddr(t) + "/api/beta/generate"
	for _, tc := range []struct {
		maxAttempts, want int
	}{{0, 2}, {1, 1}, {3, 3}} {
		c := newTestClient(t, url, func(c *Config) { c.MaxAttempts = tc.maxAttempts })
		ci := &Trace{}
		_, err := c.TextToImage(WithTrace(context.Background(), ci), t2i())
		var te *TransportError
		if !errors.As(err, &te) {
			t.Fatalf("err = %T %v, want *TransportError", err, err)
		}
		if te.Timeout || te.Pipeline != PipelineTextToImage || !isConnectError(te.Err) {
			t.Errorf("TransportError = %+v", te)
		}
		if !strings.Contains(err.Error(), "could not reach the gateway") {
			t.Errorf("message = %q", err.Error())
		}
		if ci.Attempts != tc.want || ci.Status != 0 {
			t.Errorf("MaxAttempts %d: Trace = %+v, want %d attempts", tc.maxAttempts, ci, tc.want)
		}
	}
}

// A connection dropped after the request was sent is not retried: the gateway may be
// generating (and charging for) it.
func TestClientDroppedConnectionNotRetried(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), nil)
	sim.Script(PipelineTextToImage, livepeertest.Step{DropConnection: true}, livepeertest.Step{DropConnection: true})
	_, err := c.TextToImage(context.Background(), t2i())
	var te *TransportError
	if !errors.As(err, &te) || te.Timeout {
		t.Fatalf("err = %v, want a TransportError", err)
	}
	if n := sim.Hits(PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}

func TestClientPipelineTimeout(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), func(c *Config) {
		c.Timeouts = map[string]time.Duration{PipelineTextToImage: 100 * time.Millisecond}
	})
	sim.Script(PipelineTextToImage, livepeertest.Step{Delay: 2 * time.Second})
	ci := &Trace{}
	start := time.Now()
	_, err := c.TextToImage(WithTrace(context.Background(), ci), t2i())
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout {
		t.Fatalf("err = %T %v, want TransportError{Timeout: true}", err, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("the pipeline timeout must not look like the caller's deadline")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v with a 100ms timeout", el)
	}
	if n := sim.Hits(PipelineTextToImage); n != 1 || ci.Attempts != 1 {
		t.Errorf("hits = %d, Trace = %+v", n, ci)
	}
	if !sim.WaitDisconnects(1, 2*time.Second) {
		t.Error("the upstream request was not cancelled")
	}
	// Other pipelines keep their defaults.
	if d := c.timeouts[PipelineImageToVideo]; d != DefaultTimeouts[PipelineImageToVideo] {
		t.Errorf("image-to-video timeout = %v", d)
	}
}

// The per-pipeline timeout may also expire while the body of a 200 is arriving; that is
// still genservice's own timeout, not the caller's deadline nor a broken connection.
func TestClientPipelineTimeoutDuringBody(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"images":[`))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, func(c *Config) {
		c.Timeouts = map[string]time.Duration{PipelineTextToImage: 200 * time.Millisecond}
	})
	_, err := c.TextToImage(context.Background(), t2i())
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout {
		t.Fatalf("err = %T %v, want TransportError{Timeout: true}", err, err)
	}
}

func TestClientCallerDeadline(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), func(c *Config) {
		c.Timeouts = map[string]time.Duration{PipelineTextToImage: 10 * time.Second}
	})
	sim.Script(PipelineTextToImage, livepeertest.Step{Delay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.TextToImage(ctx, t2i())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %T %v, want context.DeadlineExceeded", err, err)
	}
	var te *TransportError
	if errors.As(err, &te) {
		t.Errorf("caller deadline reported as %v", te)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v", el)
	}

	// Cancellation likewise.
	sim.Script(PipelineTextToImage, livepeertest.Step{Delay: 2 * time.Second})
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.TextToImage(ctx, t2i()); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !sim.WaitDisconnects(2, 2*time.Second) {
		t.Errorf("disconnects = %d, want 2 (upstream requests cancelled)", sim.Disconnects())
	}

	// A caller deadline during the backoff before a retry.
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("x"), Header: http.Header{"Retry-After": {"0"}}},
		livepeertest.Step{Delay: 2 * time.Second})
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.TextToImage(ctx, t2i()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline during retry: err = %v", err)
	}
}

func TestClientBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(*Config)
		step   livepeertest.Step
		reason string
	}{
		{"HTML 200", nil, livepeertest.Step{Status: 200, Body: "<html>ok</html>", ContentType: "text/html"}, "expected application/json, got text/html"},
		{"text 200", nil, livepeertest.Step{Status: 200, Body: "ok"}, "expected application/json"},
		{"empty 200 without type", nil, livepeertest.Step{Status: 200}, "expected application/json"},
		{"empty JSON 200", nil, livepeertest.Step{Status: 200, ContentType: "application/json"}, "empty body"},
		{"invalid JSON", nil, livepeertest.Step{Status: 200, Body: `{"images":`, ContentType: "application/json"}, "invalid JSON"},
		{"wrong shape", nil, livepeertest.Step{Status: 200, Body: `{"foo":1}`}, `missing "images"`},
		{"image without url", nil, livepeertest.Step{Status: 200, Body: `{"images":[{"seed":1}]}`}, "images[0] has no url"},
		{"JSON with charset", nil, livepeertest.Step{Status: 200, Body: `{"foo":1}`, ContentType: "application/json; charset=utf-8"}, `missing "images"`},
		{"too large", func(c *Config) { c.MaxResponseBytes = 64 }, livepeertest.Step{}, "larger than 64 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := newSim(t, livepeertest.Config{})
			c := newTestClient(t, sim.URL(), tc.edit)
			sim.Script(PipelineTextToImage, tc.step, tc.step)
			_, err := c.TextToImage(context.Background(), t2i())
			var be *BadResponseError
			if !errors.As(err, &be) {
				t.Fatalf("err = %T %v, want *BadResponseError", err, err)
			}
			if !strings.Contains(be.Reason, tc.reason) || be.Pipeline != PipelineTextToImage {
				t.Errorf("BadResponseError = %+v, want reason containing %q", be, tc.reason)
			}
			if n := sim.Hits(PipelineTextToImage); n != 1 {
				t.Errorf("hits = %d, want 1", n)
			}
		})
	}
	// A body exactly at the limit is fine.
	sim := newSim(t, livepeertest.Config{})
	body := `{"images":[{"url":"https://x/y.png","seed":1,"nsfw":false}]}`
	c := newTestClient(t, sim.URL(), func(c *Config) { c.MaxResponseBytes = int64(len(body)) })
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 200, Body: body})
	if _, err := c.TextToImage(context.Background(), t2i()); err != nil {
		t.Errorf("body of exactly MaxResponseBytes: %v", err)
	}
}

func TestClientResolvesRelativeURLs(t *testing.T) {
	sim := newSim(t, livepeertest.Config{RelativeURLs: true})
	c := newTestClient(t, sim.URL(), nil)
	res, err := c.TextToImage(context.Background(), t2i())
	if err != nil {
		t.Fatal(err)
	}
	if u := res.Images[0].URL; !strings.HasPrefix(u, sim.Origin()+"/stream/") || !strings.HasSuffix(u, "/0.png") {
		t.Errorf("image URL = %q, want %s/stream/...", u, sim.Origin())
	}
	tts, err := c.TextToSpeech(context.Background(), &TextToSpeechParams{ModelID: "m", Text: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if u := tts.Audio.URL; !strings.HasPrefix(u, sim.Origin()+"/stream/") {
		t.Errorf("audio URL = %q", u)
	}
	// The resolved URL is served.
	resp, err := http.Get(res.Images[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("GET %s: %d %s", res.Images[0].URL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	c = newTestClient(t, "http://gw.example:8935/api/beta/generate", nil)
	for in, want := range map[string]string{
		"/stream/a/0.png":                 "http://gw.example:8935/stream/a/0.png",
		"https://cdn.example/x/0.png":     "https://cdn.example/x/0.png",
		"http://other:1/stream/a/0.png":   "http://other:1/stream/a/0.png",
		"/stream/a/0.png?sig=1":           "http://gw.example:8935/stream/a/0.png?sig=1",
		"//cdn.example/a.png":             "http://cdn.example/a.png",
		"data:image/png;base64,iVBORw0KG": "data:image/png;base64,iVBORw0KG",
	} {
		if got := c.absolute(in); got != want {
			t.Errorf("absolute(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientTrace(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), nil)
	if TraceFrom(context.Background()) != nil {
		t.Error("TraceFrom on a bare context is not nil")
	}
	ci := &Trace{}
	ctx := WithTrace(context.Background(), ci)
	if TraceFrom(ctx) != ci {
		t.Fatal("TraceFrom does not return the attached Trace")
	}
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("x"), Delay: 20 * time.Millisecond})
	if _, err := c.TextToImage(ctx, t2i()); err != nil {
		t.Fatal(err)
	}
	if ci.Pipeline != PipelineTextToImage || ci.Attempts != 2 || ci.Status != 200 || ci.KeyFingerprint != mustParseKey(t, testSecret).Fingerprint() {
		t.Errorf("Trace = %+v", ci)
	}
	if d := ci.UpstreamDuration(); d < 20*time.Millisecond || d > 5*time.Second {
		t.Errorf("UpstreamDuration = %v", d)
	}

	// A StatusError records the status and the key fingerprint too.
	ci = &Trace{}
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 400, Body: livepeertest.GatewayError(": Prompt must be provided.")})
	_, err := c.TextToImage(WithTrace(context.Background(), ci), t2i())
	var se *StatusError
	if !errors.As(err, &se) || se.Message != "Prompt must be provided." || se.KeyFingerprint != ci.KeyFingerprint {
		t.Errorf("err = %#v", err)
	}
	if ci.Attempts != 1 || ci.Status != 400 {
		t.Errorf("Trace = %+v", ci)
	}
}

func TestClientStatusErrorDetails(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), nil)
	// The simulator validates like Studio: a missing prompt is an ajv "required" 422.
	_, err := c.TextToImage(context.Background(), &TextToImageParams{ModelID: "m"})
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v", err)
	}
	if se.StatusCode != http.StatusBadRequest && se.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("status = %d", se.StatusCode)
	}
	if se.Message == "" {
		t.Errorf("no message: %+v", se)
	}
	// A runner validation error relayed verbatim.
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 422, Body: livepeertest.ValidationError(livepeertest.Violation{Loc: []any{"body", "prompt"}, Msg: "field required", Type: "missing"})})
	_, err = c.TextToImage(context.Background(), t2i())
	if !errors.As(err, &se) || len(se.Violations) != 1 || se.Violations[0] != (Violation{Field: "body.prompt", Message: "field required"}) {
		t.Errorf("err = %#v", err)
	}
	// A huge error body is read only up to a bound and reduced to a short message.
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 500, Body: strings.Repeat("x", 1<<20)})
	_, err = c.TextToImage(context.Background(), t2i())
	if !errors.As(err, &se) || len(se.Message) > MaxMessageLen {
		t.Errorf("err = %v", err)
	}
}

func TestParseGatewayURL(t *testing.T) {
	for _, raw := range []string{
		"ftp://gw.example/x",
		"gw.example/api",
		"http://",
		"https:///path",
		"https://user:pass@gw.example/api",
		"https://user@gw.example/api",
		"https://gw.example/api?x=1",
		"https://gw.example/api#frag",
		"://bad",
		"",
	} {
		if u, err := ParseGatewayURL(raw); err == nil {
			t.Errorf("ParseGatewayURL(%q) = %v, want an error", raw, u)
		} else if strings.Contains(err.Error(), "pass") {
			t.Errorf("ParseGatewayURL(%q) error shows the credentials: %v", raw, err)
		}
	}
	for raw, want := range map[string]string{
		"https://livepeer.studio/api/beta/generate":  "https://livepeer.studio/api/beta/generate",
		"https://livepeer.studio/api/beta/generate/": "https://livepeer.studio/api/beta/generate",
		"http://127.0.0.1:8935":                      "http://127.0.0.1:8935",
		"http://127.0.0.1:8935/":                     "http://127.0.0.1:8935",
		"http://[::1]:8935/gw":                       "http://[::1]:8935/gw",
	} {
		u, err := ParseGatewayURL(raw)
		if err != nil {
			t.Errorf("ParseGatewayURL(%q): %v", raw, err)
			continue
		}
		if u.String() != want {
			t.Errorf("ParseGatewayURL(%q) = %q, want %q", raw, u, want)
		}
	}
}

func TestNewClient(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a key source succeeded")
	}
	if _, err := New(Config{GatewayURL: "ftp://x", Keys: StaticKey(mustParseKey(t, testSecret))}); err == nil {
		t.Error("New with an ftp URL succeeded")
	}
	c, err := New(Config{Keys: StaticKey(mustParseKey(t, testSecret))})
	if err != nil {
		t.Fatal(err)
	}
	if c.GatewayURL() != DefaultGatewayURL || c.maxAttempts != 2 || c.maxResp != 64<<20 || c.userAgent != "genservice" {
		t.Errorf("defaults: url %q attempts %d maxResp %d ua %q", c.GatewayURL(), c.maxAttempts, c.maxResp, c.userAgent)
	}
	for p, d := range DefaultTimeouts {
		if c.timeouts[p] != d {
			t.Errorf("timeout %s = %v", p, c.timeouts[p])
		}
	}
	for _, p := range Pipelines {
		if DefaultTimeouts[p] <= 0 || DefaultModels[p] == "" {
			t.Errorf("pipeline %s has no default timeout or model", p)
		}
	}
	tr := NewTransport(time.Second, 64, nil)
	if tr.MaxIdleConnsPerHost != 64 || !tr.ForceAttemptHTTP2 || tr.TLSHandshakeTimeout != time.Second {
		t.Errorf("transport = %+v", tr)
	}
}

func TestClientOverTLS(t *testing.T) {
	sim := newSim(t, livepeertest.Config{TLS: true})
	// Without the simulator's certificate in RootCAs the handshake fails: a TransportError.
	c := newTestClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 1 })
	_, err := c.TextToImage(context.Background(), t2i())
	var te *TransportError
	if !errors.As(err, &te) {
		t.Fatalf("untrusted certificate: err = %v", err)
	}
	c = newTestClient(t, sim.URL(), func(c *Config) { c.RootCAs = sim.CertPool() })
	if _, err := c.TextToImage(context.Background(), t2i()); err != nil {
		t.Fatal(err)
	}
}

// TestClientLogsEachRetriedAttempt: a retried attempt gets its own log line with the
// call's request id, the pipeline, the attempt number, what failed and the backoff.
func TestClientLogsEachRetriedAttempt(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	c := newTestClient(t, sim.URL(), func(cfg *Config) { cfg.Logger = log })
	sim.Script(PipelineTextToImage, livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error")})
	ci := &Trace{RequestID: "req-42"}
	if _, err := c.TextToImage(WithTrace(context.Background(), ci), t2i()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	mu.Unlock()
	if len(lines) != 1 {
		t.Fatalf("want one log line for the one retry, got %d: %q", len(lines), lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "upstream attempt failed; retrying" || rec["requestId"] != "req-42" || rec["pipeline"] != "text-to-image" ||
		rec["attempt"] != float64(1) || rec["outcome"] != "503 Service Unavailable" {
		t.Errorf("log line = %v", rec)
	}
	if ci.Attempts != 2 {
		t.Errorf("attempts = %d, want 2", ci.Attempts)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Studio's beta path (UPSTREAM §12.6) keeps working when an operator configures it; the
// default is the non-beta path.
func TestClientBetaPathStillWorks(t *testing.T) {
	if !strings.HasSuffix(DefaultGatewayURL, "/api/generate") {
		t.Errorf("DefaultGatewayURL = %q, want Studio's non-beta /api/generate", DefaultGatewayURL)
	}
	sim := newSim(t, livepeertest.Config{Studio: true})
	c := newTestClient(t, sim.BetaURL(), nil)
	if _, err := c.TextToImage(context.Background(), t2i()); err != nil {
		t.Fatal(err)
	}
	if reqs := sim.Requests(); len(reqs) != 1 || reqs[0].Path != "/api/beta/generate/text-to-image" {
		t.Errorf("requests = %+v", reqs)
	}
}
