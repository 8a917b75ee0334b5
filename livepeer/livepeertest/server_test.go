package livepeertest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

func TestAuth(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	body := []byte(`{"model_id":"m","prompt":"a cat"}`)
	for _, auth := range []string{
		"",
		"Bearer wrong",
		"bearer " + testKey,
		"Bearer  " + testKey,
		testKey,
		"Basic " + testKey,
		"Bearer ",
	} {
		r := doWith(t, s, http.MethodPost, "text-to-image", "application/json", body, auth)
		if r.status != http.StatusUnauthorized || r.body != livepeertest.UnauthorizedBody {
			t.Errorf("auth %q: got %d %s, want 401 %s", auth, r.status, r.body, livepeertest.UnauthorizedBody)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("auth %q: Content-Type %q", auth, ct)
		}
	}
	// A wrong key gets 401 even for a scripted pipeline or an unknown one.
	s.Script("text-to-image", livepeertest.Step{Status: 503})
	if r := doWith(t, s, http.MethodPost, "text-to-image", "application/json", body, "Bearer nope"); r.status != 401 {
		t.Fatalf("scripted pipeline with wrong key: %d", r.status)
	}
	if r := doWith(t, s, http.MethodPost, "no-such-pipeline", "application/json", body, "Bearer nope"); r.status != 401 {
		t.Fatalf("unknown pipeline with wrong key: %d", r.status)
	}
	if s.Pending() != 1 {
		t.Fatalf("a 401 consumed a script step")
	}

	// Two Authorization headers, one of them right, are still refused.
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/text-to-image", bytes.NewReader(body))
	req.Header.Add("Authorization", "Bearer "+testKey)
	req.Header.Add("Authorization", "Bearer other")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("two Authorization headers: %d", resp.StatusCode)
	}

	// Rotation.
	s.Reset()
	s.SetAPIKey("new-key")
	if r := doWith(t, s, http.MethodPost, "text-to-image", "application/json", body, "Bearer "+testKey); r.status != 401 {
		t.Fatalf("old key after rotation: %d", r.status)
	}
	if r := doWith(t, s, http.MethodPost, "text-to-image", "application/json", body, "Bearer new-key"); r.status != 200 {
		t.Fatalf("new key after rotation: %d %s", r.status, r.body)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Header.Get("Authorization") != "Bearer "+testKey || reqs[0].Body != nil {
		t.Fatalf("recorded: %+v", reqs)
	}
	if s.Hits("text-to-image") != 2 {
		t.Fatalf("hits = %d", s.Hits("text-to-image"))
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []livepeertest.Config{
		{},
		{APIKey: "k", Pipelines: []string{"live-video-to-video"}},
		{APIKey: "k", BasePath: "api"},
	} {
		if s, err := livepeertest.New(cfg); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// happyCase is a well-formed request of one pipeline.
type happyCase struct {
	pipeline string
	ctype    string
	body     []byte
	check    func(t *testing.T, s *livepeertest.Server, out map[string]any)
}

func happyCases(t *testing.T) []happyCase {
	mp := func(pipeline string, check func(*testing.T, *livepeertest.Server, map[string]any), parts ...part) happyCase {
		ct, b := form(t, parts...)
		return happyCase{pipeline, ct, b, check}
	}
	js := func(pipeline, body string, check func(*testing.T, *livepeertest.Server, map[string]any)) happyCase {
		return happyCase{pipeline, "application/json", []byte(body), check}
	}
	images := func(ext string, n int, seed float64) func(*testing.T, *livepeertest.Server, map[string]any) {
		return func(t *testing.T, s *livepeertest.Server, out map[string]any) {
			list, _ := out["images"].([]any)
			if len(list) != n {
				t.Fatalf("images = %v, want %d", out["images"], n)
			}
			for i, it := range list {
				m := it.(map[string]any)
				url, _ := m["url"].(string)
				if !strings.HasPrefix(url, s.Origin()+"/stream/") || !strings.HasSuffix(url, "."+ext) {
					t.Errorf("url %q", url)
				}
				if m["seed"] != seed+float64(i) || m["nsfw"] != false {
					t.Errorf("image %d: %v", i, m)
				}
				fetchMedia(t, s, url)
			}
		}
	}
	return []happyCase{
		js("text-to-image", `{"model_id":"SG161222/RealVisXL_V4.0_Lightning","prompt":"a cat","width":512,"height":512,"seed":7,"num_images_per_prompt":3,"guidance_scale":2.5,"safety_check":true}`,
			images("png", 3, 7)),
		mp("image-to-image", images("png", 1, 42),
			field("prompt", "make it blue"), file("image", "in.png", "image/png", pngBytes),
			field("model_id", "timbrooks/instruct-pix2pix"), field("strength", "0.5"), field("safety_check", "false")),
		mp("image-to-video", images("mp4", 1, 3),
			file("image", "in.png", "image/png", pngBytes), field("model_id", "stabilityai/stable-video-diffusion-img2vid-xt-1-1"),
			field("height", "576"), field("width", "1024"), field("fps", "8"), field("seed", "3"), field("noise_aug_strength", "0.02")),
		mp("upscale", images("png", 1, 42),
			field("prompt", "sharper"), file("image", "in.png", "image/png", pngBytes),
			field("model_id", "stabilityai/stable-diffusion-x4-upscaler"), field("seed", "0")),
		mp("audio-to-text", func(t *testing.T, s *livepeertest.Server, out map[string]any) {
			chunks, _ := out["chunks"].([]any)
			if out["text"] == "" || len(chunks) == 0 {
				t.Fatalf("audio-to-text: %v", out)
			}
			ts := chunks[0].(map[string]any)["timestamp"].([]any)
			if len(ts) != 2 || ts[0] != 0.0 || ts[1] != 1.35 {
				t.Errorf("timestamp %v", ts)
			}
		}, file("audio", "a.wav", "audio/wav", wavBytes), field("model_id", "openai/whisper-large-v3"), field("return_timestamps", "sentence")),
		mp("segment-anything-2", func(t *testing.T, s *livepeertest.Server, out map[string]any) {
			for _, k := range []string{"masks", "scores", "logits"} {
				if v, _ := out[k].(string); !strings.HasPrefix(v, "[") {
					t.Errorf("%s = %v", k, out[k])
				}
			}
		}, file("image", "in.png", "image/png", pngBytes), field("model_id", "facebook/sam2-hiera-large"),
			field("point_coords", "[[100, 200]]"), field("point_labels", "[1]"), field("multimask_output", "true")),
		js("llm", `{"model":"meta-llama/Meta-Llama-3.1-8B-Instruct","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi there"}],"max_tokens":256,"stream":false,"temperature":0.7}`,
			func(t *testing.T, s *livepeertest.Server, out map[string]any) {
				if !strings.HasPrefix(out["id"].(string), "chatcmpl-") || out["model"] != "meta-llama/Meta-Llama-3.1-8B-Instruct" || out["created"].(float64) <= 0 {
					t.Errorf("llm: %v", out)
				}
				ch := out["choices"].([]any)[0].(map[string]any)
				msg := ch["message"].(map[string]any)
				if ch["finish_reason"] != "stop" || msg["role"] != "assistant" || !strings.Contains(msg["content"].(string), "hi there") {
					t.Errorf("llm choice: %v", ch)
				}
				u := out["usage"].(map[string]any)
				if u["total_tokens"].(float64) != u["prompt_tokens"].(float64)+u["completion_tokens"].(float64) {
					t.Errorf("usage %v", u)
				}
			}),
		mp("image-to-text", func(t *testing.T, s *livepeertest.Server, out map[string]any) {
			if v, _ := out["text"].(string); v == "" {
				t.Errorf("image-to-text: %v", out)
			}
		}, file("image", "in.png", "image/png", pngBytes), field("prompt", "describe"), field("model_id", "Salesforce/blip-image-captioning-large")),
		js("text-to-speech", `{"model_id":"parler-tts/parler-tts-large-v1","text":"hello","description":"calm"}`,
			func(t *testing.T, s *livepeertest.Server, out map[string]any) {
				url, _ := out["audio"].(map[string]any)["url"].(string)
				if !strings.HasSuffix(url, ".wav") {
					t.Fatalf("audio url %q", url)
				}
				fetchMedia(t, s, url)
			}),
	}
}

func TestHappyPaths(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	for _, c := range happyCases(t) {
		t.Run(c.pipeline, func(t *testing.T) {
			r := do(t, s, http.MethodPost, c.pipeline, c.ctype, c.body)
			wantStatus(t, r, 200)
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			c.check(t, s, r.json(t))
		})
	}
	if got := len(s.Requests()); got != len(livepeertest.Pipelines) {
		t.Fatalf("recorded %d requests", got)
	}
}

// fetchMedia GETs a result URL without credentials and checks the bytes.
func fetchMedia(t *testing.T, s *livepeertest.Server, url string) {
	t.Helper()
	if strings.HasPrefix(url, "/") {
		url = s.Origin() + url
	}
	resp, err := s.Client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || len(data) == 0 {
		t.Fatalf("GET %s: %d, %d bytes", url, resp.StatusCode, len(data))
	}
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasSuffix(url, ".png"):
		if ct != "image/png" {
			t.Fatalf("png Content-Type %q", ct)
		}
		if _, err := png.Decode(bytes.NewReader(data)); err != nil {
			t.Fatalf("png: %v", err)
		}
	case strings.HasSuffix(url, ".mp4"):
		if ct != "video/mp4" || string(data[4:8]) != "ftyp" {
			t.Fatalf("mp4: %q %q", ct, data)
		}
	case strings.HasSuffix(url, ".wav"):
		if ct != "audio/wav" || string(data[:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
			t.Fatalf("wav: %q", ct)
		}
	}
}

func TestMedia(t *testing.T) {
	s := newServer(t, livepeertest.Config{RelativeURLs: true})
	r := postJSON(t, s, "text-to-image", `{"model_id":"m","prompt":"p"}`)
	wantStatus(t, r, 200)
	url := r.json(t)["images"].([]any)[0].(map[string]any)["url"].(string)
	if !strings.HasPrefix(url, "/stream/") {
		t.Fatalf("relative url %q", url)
	}
	fetchMedia(t, s, url)

	head, err := s.Client().Head(s.Origin() + url)
	if err != nil || head.StatusCode != 200 || head.ContentLength <= 0 {
		t.Fatalf("HEAD: %v %v", err, head)
	}
	head.Body.Close()
	for _, bad := range []string{"/stream/", "/stream/xyz/0.png", "/stream/0123abcd/0.gif", "/stream/0123abcd/.png", "/stream/0123ABCD/0.png", "/nothing"} {
		resp, err := s.Client().Get(s.Origin() + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d", bad, resp.StatusCode)
		}
	}
}

func TestTextToImageDefaults(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	out := postJSON(t, s, "text-to-image", `{"model_id":"m","prompt":"p"}`).json(t)
	imgs := out["images"].([]any)
	if len(imgs) != 1 || imgs[0].(map[string]any)["seed"] != 42.0 {
		t.Fatalf("defaults: %v", out)
	}
	// Deterministic apart from the id: same seeds, different URLs.
	again := postJSON(t, s, "text-to-image", `{"model_id":"m","prompt":"p"}`).json(t)["images"].([]any)[0].(map[string]any)
	if again["seed"] != 42.0 || again["url"] == imgs[0].(map[string]any)["url"] {
		t.Fatalf("second answer: %v", again)
	}
}

func TestPipelinesRestrictionAndRouting(t *testing.T) {
	s := newServer(t, livepeertest.Config{Pipelines: livepeertest.StudioPipelines})
	wantStatus(t, postJSON(t, s, "text-to-speech", `{"model_id":"m","text":"x"}`), 404, `{"errors":["not found"]}`)
	wantStatus(t, postJSON(t, s, "nope", `{}`), 404, `not found`)
	wantStatus(t, postJSON(t, s, "text-to-image/extra", `{}`), 404)
	r := do(t, s, http.MethodGet, "text-to-image", "", nil)
	wantStatus(t, r, 405)
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}

	// Gateway layout: pipelines at the root.
	g := newServer(t, livepeertest.Config{BasePath: "/"})
	if g.URL() != g.Origin() {
		t.Fatalf("URL %q, Origin %q", g.URL(), g.Origin())
	}
	wantStatus(t, postJSON(t, g, "text-to-image", `{"model_id":"m","prompt":"p"}`), 200)
}

func TestValidation(t *testing.T) {
	s := newServer(t, livepeertest.Config{MaxFileBytes: 1000})
	img := file("image", "in.png", "image/png", pngBytes)
	cases := []struct {
		name      string
		pipeline  string
		ctype     string
		body      string
		parts     []part
		status    int
		fragments []string
	}{
		{name: "unknown field", pipeline: "text-to-image", body: `{"model_id":"m","prompt":"p","colour":"red"}`,
			status: 422, fragments: []string{"must NOT have additional properties", `\"additionalProperty\":\"colour\"`}},
		{name: "missing prompt", pipeline: "text-to-image", body: `{"model_id":"m"}`,
			status: 422, fragments: []string{"must have required property 'prompt'"}},
		{name: "missing model_id", pipeline: "text-to-image", body: `{"prompt":"p"}`,
			status: 422, fragments: []string{"must have required property 'model_id'"}},
		{name: "string height", pipeline: "text-to-image", body: `{"model_id":"m","prompt":"p","height":"512"}`,
			status: 422, fragments: []string{"must be integer", `\"instancePath\":\"/height\"`}},
		{name: "fractional seed", pipeline: "text-to-image", body: `{"model_id":"m","prompt":"p","seed":1.5}`,
			status: 422, fragments: []string{"must be integer"}},
		{name: "null prompt", pipeline: "text-to-image", body: `{"model_id":"m","prompt":null}`,
			status: 422, fragments: []string{"must be string"}},
		{name: "bool guidance", pipeline: "text-to-image", body: `{"model_id":"m","prompt":"p","guidance_scale":true}`,
			status: 422, fragments: []string{"must be number"}},
		{name: "array body", pipeline: "text-to-image", body: `[1]`, status: 422, fragments: []string{"must be object"}},
		{name: "bad JSON", pipeline: "text-to-image", body: `{"model_id":`, status: 400, fragments: []string{`"errors"`}},
		{name: "empty body", pipeline: "text-to-image", body: ``, status: 422, fragments: []string{"must have required property 'prompt'"}},
		{name: "json pipeline given text", pipeline: "text-to-image", ctype: "text/plain", body: `{"model_id":"m","prompt":"p"}`,
			status: 422, fragments: []string{"Expected application/json content-type"}},
		{name: "empty prompt", pipeline: "text-to-image", body: `{"model_id":"m","prompt":""}`,
			status: 400, fragments: []string{`{"error":{"message":": Prompt must be provided."}}`}},
		{name: "empty model_id", pipeline: "text-to-image", body: `{"model_id":"","prompt":"p"}`,
			status: 500, fragments: []string{`{"errors":["Failed to generate text-to-image"]}`}},
		{name: "tts empty text", pipeline: "text-to-speech", body: `{"model_id":"m"}`,
			status: 400, fragments: []string{`{"error":{"message":"text field is required"}}`}},
		{name: "llm no messages", pipeline: "llm", body: `{"model":"m","max_tokens":10,"stream":false}`,
			status: 422, fragments: []string{"must have required property 'messages'"}},
		{name: "llm empty messages", pipeline: "llm", body: `{"model":"m","messages":[],"max_tokens":10,"stream":false}`,
			status: 400, fragments: []string{`{"error":{"message":"missing required fields"}}`}},
		{name: "llm no stream", pipeline: "llm", body: `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":10}`,
			status: 400, fragments: []string{"missing required fields"}},
		{name: "llm no max_tokens", pipeline: "llm", body: `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":false}`,
			status: 400, fragments: []string{"missing required fields"}},
		{name: "llm no model", pipeline: "llm", body: `{"messages":[{"role":"user","content":"x"}],"max_tokens":10,"stream":false}`,
			status: 400, fragments: []string{"missing required fields"}},
		{name: "llm message without content", pipeline: "llm", body: `{"model":"m","messages":[{"role":"user"}],"max_tokens":10,"stream":false}`,
			status: 422, fragments: []string{"must have required property 'content'", `\"instancePath\":\"/messages/0\"`}},
		{name: "llm messages not array", pipeline: "llm", body: `{"model":"m","messages":"hi","max_tokens":10,"stream":false}`,
			status: 422, fragments: []string{"must be array"}},
		{name: "multipart to json pipeline", pipeline: "text-to-image", parts: []part{field("prompt", "p")},
			status: 422, fragments: []string{"Expected application/json content-type"}},
		{name: "json to multipart pipeline", pipeline: "image-to-image", body: `{"model_id":"m","prompt":"p"}`,
			status: 422, fragments: []string{`{"errors":["Expected multipart/form-data content-type"]}`}},
		{name: "missing image", pipeline: "image-to-image", parts: []part{field("prompt", "p"), field("model_id", "m")},
			status: 422, fragments: []string{"must have required property 'image'"}},
		{name: "image as text field", pipeline: "image-to-image", parts: []part{field("prompt", "p"), field("model_id", "m"), field("image", "x")},
			status: 422, fragments: []string{"must have required property 'image'"}},
		{name: "unknown form field", pipeline: "image-to-image", parts: []part{field("prompt", "p"), img, field("model_id", "m"), field("colour", "red")},
			status: 422, fragments: []string{"must NOT have additional properties"}},
		{name: "unexpected file", pipeline: "image-to-image", parts: []part{field("prompt", "p"), img, field("model_id", "m"), file("mask", "m.png", "image/png", pngBytes)},
			status: 422, fragments: []string{`{"errors":["Unexpected field"]}`}},
		{name: "bad int", pipeline: "image-to-image", parts: []part{field("prompt", "p"), img, field("model_id", "m"), field("seed", "abc")},
			status: 422, fragments: []string{"must be integer"}},
		{name: "bad number", pipeline: "image-to-image", parts: []part{field("prompt", "p"), img, field("model_id", "m"), field("strength", "strong")},
			status: 422, fragments: []string{"must be number"}},
		{name: "bad bool", pipeline: "image-to-image", parts: []part{field("prompt", "p"), img, field("model_id", "m"), field("safety_check", "yes")},
			status: 422, fragments: []string{"must be boolean"}},
		{name: "file too large", pipeline: "image-to-image", parts: []part{field("prompt", "p"), file("image", "big.png", "image/png", make([]byte, 1001)), field("model_id", "m")},
			status: 422, fragments: []string{`{"errors":["File too large"]}`}},
		{name: "upscale empty prompt", pipeline: "upscale", parts: []part{field("prompt", ""), img, field("model_id", "m")},
			status: 400, fragments: []string{"Prompt must be provided."}},
		{name: "i2v height not /8", pipeline: "image-to-video", parts: []part{img, field("model_id", "m"), field("height", "577")},
			status: 400, fragments: []string{"have to be divisible by 8 but are 577 and 1024"}},
		{name: "sam2 bad json", pipeline: "segment-anything-2", parts: []part{img, field("model_id", "m"), field("point_coords", "[[1,")},
			status: 400, fragments: []string{"Error parsing JSON for point_coords"}},
		{name: "a2t bad timestamps", pipeline: "audio-to-text", parts: []part{file("audio", "a.wav", "audio/wav", wavBytes), field("model_id", "m"), field("return_timestamps", "maybe")},
			status: 400, fragments: []string{"return_timestamps"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r response
			if c.parts != nil {
				r = postForm(t, s, c.pipeline, c.parts...)
			} else {
				ct := c.ctype
				if ct == "" {
					ct = "application/json"
				}
				r = do(t, s, http.MethodPost, c.pipeline, ct, []byte(c.body))
			}
			wantStatus(t, r, c.status, c.fragments...)
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
		})
	}
	if got := len(s.Requests()); got != len(cases) {
		t.Fatalf("recorded %d of %d rejected requests", got, len(cases))
	}
}

func TestCoerceFormValues(t *testing.T) {
	s := newServer(t, livepeertest.Config{CoerceFormValues: true})
	r := postForm(t, s, "image-to-image", field("prompt", "2024"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m"))
	wantStatus(t, r, 422, "must be string", `\"instancePath\":\"/prompt\"`)
	r = postForm(t, s, "image-to-image", field("prompt", "a 2024 car"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m"))
	wantStatus(t, r, 200)
}

func TestLLMMaxTokens(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	out := postJSON(t, s, "llm", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"stream":false}`).json(t)
	ch := out["choices"].([]any)[0].(map[string]any)
	if ch["finish_reason"] != "length" || out["usage"].(map[string]any)["completion_tokens"] != 2.0 {
		t.Fatalf("max_tokens 2: %v", out)
	}
}

func TestRecording(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	jsonBody := `{"model_id":"m","prompt":"p","seed":5}`
	postJSON(t, s, "text-to-image", jsonBody)

	big := bytes.Repeat([]byte("0123456789abcdef"), 10000) // 160000 bytes
	sum := sha256.Sum256(big)
	ct, small := form(t, field("prompt", "p"), file("image", "in.png", "image/png", pngBytes), field("model_id", "m"))
	wantStatus(t, do(t, s, http.MethodPost, "image-to-image", ct, small), 200)
	wantStatus(t, postForm(t, s, "upscale", field("prompt", "p"), file("image", "big.png", "image/png", big), field("model_id", "m")), 200)

	reqs := s.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	j := reqs[0]
	if j.Pipeline != "text-to-image" || j.Method != "POST" || j.Path != "/api/generate/text-to-image" ||
		j.ContentType != "application/json" || string(j.Body) != jsonBody || j.JSON["seed"] != 5.0 || j.Form != nil {
		t.Fatalf("JSON request: %+v", j)
	}
	m := reqs[1]
	if m.ContentType != "multipart/form-data" || m.JSON != nil || m.Form["prompt"] != "p" || m.Form["model_id"] != "m" {
		t.Fatalf("multipart request: %+v", m)
	}
	if !bytes.Equal(m.Body, small) {
		t.Fatalf("small multipart body not recorded byte for byte:\n%q\n%q", m.Body, small)
	}
	if f := m.Files["image"]; f.Filename != "in.png" || f.ContentType != "image/png" || f.Size != int64(len(pngBytes)) {
		t.Fatalf("file: %+v", f)
	}
	u := reqs[2]
	f := u.Files["image"]
	if f.Size != int64(len(big)) || f.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("big file: %+v", f)
	}
	if len(u.Body) >= len(big) || len(u.Body) < livepeertest.RecordFileBytes {
		t.Fatalf("big body recorded as %d bytes", len(u.Body))
	}
	if s.Hits("image-to-image") != 1 || s.Hits("llm") != 0 {
		t.Fatal("hits")
	}
	// The copy is the caller's.
	reqs[0].Pipeline = "changed"
	if s.Requests()[0].Pipeline != "text-to-image" {
		t.Fatal("Requests returned shared storage")
	}
	s.Reset()
	if len(s.Requests()) != 0 || s.Hits("text-to-image") != 0 {
		t.Fatal("Reset kept records")
	}
}

func TestMaxRecorded(t *testing.T) {
	s := newServer(t, livepeertest.Config{MaxRecorded: 3})
	for i := range 5 {
		postJSON(t, s, "text-to-image", `{"model_id":"m","prompt":"p","seed":`+string(rune('0'+i))+`}`)
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].JSON["seed"] != 2.0 || reqs[2].JSON["seed"] != 4.0 || s.Hits("text-to-image") != 5 {
		t.Fatalf("ring: %d records, first %v", len(reqs), reqs[0].JSON)
	}
	n := newServer(t, livepeertest.Config{MaxRecorded: -1})
	postJSON(t, n, "text-to-image", `{"model_id":"m","prompt":"p"}`)
	if len(n.Requests()) != 0 || n.Hits("text-to-image") != 1 {
		t.Fatal("MaxRecorded -1")
	}
}

func TestTLS(t *testing.T) {
	s := newServer(t, livepeertest.Config{TLS: true})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || s.CertPool() == nil {
		t.Fatalf("URL %q pool %v", s.URL(), s.CertPool())
	}
	r := postJSON(t, s, "text-to-image", `{"model_id":"m","prompt":"p"}`)
	wantStatus(t, r, 200)
	url := r.json(t)["images"].([]any)[0].(map[string]any)["url"].(string)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("url %q", url)
	}
	fetchMedia(t, s, url)
	// A client that does not trust the pool fails the handshake.
	if resp, err := http.Post(s.URL()+"/text-to-image", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Fatal("untrusted client connected")
	}
	if newServer(t, livepeertest.Config{}).CertPool() != nil {
		t.Fatal("plain server has a CertPool")
	}
}

func TestConcurrentUse(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	const workers, each = 16, 20
	s.Script("", livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error")})
	ct, upscale := form(t, field("prompt", "p"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				// No t.Fatal off the test goroutine: errors go to errs.
				var req *http.Request
				if (w+i)%2 == 0 {
					req, _ = http.NewRequest(http.MethodPost, s.URL()+"/text-to-image", strings.NewReader(`{"model_id":"m","prompt":"p"}`))
					req.Header.Set("Content-Type", "application/json")
				} else {
					req, _ = http.NewRequest(http.MethodPost, s.URL()+"/upscale", bytes.NewReader(upscale))
					req.Header.Set("Content-Type", ct)
				}
				req.Header.Set("Authorization", "Bearer "+testKey)
				resp, err := s.Client().Do(req)
				if err != nil {
					errs <- err
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
				if i == each/2 {
					_ = s.Requests()
					_ = s.Disconnects()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if statuses[503] != 1 || statuses[200] != workers*each-1 {
		t.Fatalf("statuses %v", statuses)
	}
	if got := s.Hits("text-to-image") + s.Hits("upscale"); got != workers*each {
		t.Fatalf("hits %d", got)
	}
}

func TestErrorHelpers(t *testing.T) {
	for got, want := range map[string]string{
		livepeertest.StudioError("a", "b<c"):                   `{"errors":["a","b<c"]}`,
		livepeertest.StudioError():                             `{"errors":[]}`,
		livepeertest.GatewayError("Service Unavailable Error"): `{"error":{"message":"Service Unavailable Error"}}`,
		livepeertest.RunnerError("GPU out of memory."):         `{"detail":{"msg":"GPU out of memory."}}`,
		livepeertest.ValidationError(livepeertest.Violation{Loc: []any{"body", "prompt"}, Msg: "Field required", Type: "missing"}): `{"detail":[{"loc":["body","prompt"],"msg":"Field required","type":"missing"}]}`,
		livepeertest.ValidationError(): `{"detail":[]}`,
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestCloseEndsPendingDelay(t *testing.T) {
	s, err := livepeertest.New(livepeertest.Config{APIKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	s.Script("text-to-image", livepeertest.Step{Delay: time.Hour})
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/text-to-image", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for s.Hits("text-to-image") == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := <-errc; err == nil {
		t.Fatal("a request cut short by Close got a response")
	}
	if s.Disconnects() != 0 {
		t.Fatal("closing the server counted as a client disconnect")
	}
	s.Close() // idempotent
}
