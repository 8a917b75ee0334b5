package livepeertest_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

// Tests of the real upstreams' quirks (UPSTREAM §12): Studio's multipart
// coercion, Studio mode, go-livepeer mode.

// i2i posts an image-to-image request with one text field set to value.
func i2i(t *testing.T, s *livepeertest.Server, name, value string) response {
	t.Helper()
	parts := []part{field("prompt", "a cat"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m")}
	if name == "prompt" {
		parts[0] = field("prompt", value)
	} else {
		parts = append(parts, field(name, value))
	}
	return postForm(t, s, "image-to-image", parts...)
}

// UPSTREAM §12.1, every example through a real multipart request, in both
// Studio mode and the default mode with CoerceFormValues.
func TestStudioCoercion(t *testing.T) {
	const (
		mustString  = `must be string`
		mustInteger = `must be integer`
		mustNumber  = `must be number`
		mustBool    = `must be boolean`
		binding     = `{"error":{"message":"error binding string parameter: `
	)
	cases := []struct {
		field, value string
		status       int
		fragment     string
	}{
		// A string field fails whenever parseFloat finds a leading number.
		{"prompt", "4k photo", 422, mustString},
		{"prompt", "3D render", 422, mustString},
		{"prompt", " .5 x", 422, mustString},
		{"prompt", "1e3 cats", 422, mustString},
		{"prompt", "Infinity", 422, mustString},
		{"prompt", "true", 422, mustString},
		{"prompt", "-", 200, ""},
		{"prompt", "e5", 200, ""},
		{"prompt", ".x", 200, ""},
		{"prompt", "True", 200, ""},
		{"prompt", "a 2024 car", 200, ""},
		// An integer field takes any text whose leading number is an
		// integer; the gateway then parses the original text and rejects
		// what Go's strconv does not accept, a 400 Studio passes through.
		{"seed", "7", 200, ""},
		{"seed", "7abc", 400, binding + `strconv.ParseInt: parsing \"7abc\": invalid syntax"}}`},
		{"seed", "1e3 cats", 400, binding + `strconv.ParseInt: parsing \"1e3 cats\"`},
		{"seed", "7.0", 400, binding + `strconv.ParseInt: parsing \"7.0\"`},
		{"seed", "7.5", 422, mustInteger},
		{"seed", "Infinity", 422, mustInteger},
		{"seed", "-", 422, mustInteger},
		{"seed", "true", 422, mustInteger},
		// A number field: ajv 8's strictNumbers rejects Infinity.
		{"strength", "0.5", 200, ""},
		{"strength", " .5 x", 400, binding + `strconv.ParseFloat: parsing \" .5 x\"`},
		{"strength", "4k photo", 400, binding},
		{"strength", "Infinity", 422, mustNumber},
		{"strength", ".x", 422, mustNumber},
		// A boolean field takes exactly "true" and "false".
		{"safety_check", "false", 200, ""},
		{"safety_check", "1", 422, mustBool},
		{"safety_check", "True", 422, mustBool},
	}
	for _, cfg := range []livepeertest.Config{{Studio: true}, {CoerceFormValues: true}} {
		s := newServer(t, cfg)
		for _, c := range cases {
			r := i2i(t, s, c.field, c.value)
			if r.status != c.status || !strings.Contains(r.body, c.fragment) {
				t.Errorf("studio=%v %s=%q: %d %s; want %d with %s", cfg.Studio, c.field, c.value, r.status, r.body, c.status, c.fragment)
			}
			if c.status == 422 && !strings.Contains(r.body, `\"instancePath\":\"/`+c.field+`\"`) {
				t.Errorf("%s=%q: 422 names another field: %s", c.field, c.value, r.body)
			}
		}
	}
}

// UPSTREAM §12.1: return_timestamps values that coerce fail; the
// capitalised ones the runner lowercases pass.
func TestStudioCoercionReturnTimestamps(t *testing.T) {
	s := newServer(t, livepeertest.Config{Studio: true})
	for value, status := range map[string]int{"true": 422, "false": 422, "1": 422, "0": 422, "True": 200, "False": 200, "Sentence": 200, "word": 200} {
		r := postForm(t, s, "audio-to-text", file("audio", "a.wav", "audio/wav", wavBytes), field("model_id", "m"), field("return_timestamps", value))
		if r.status != status {
			t.Errorf("return_timestamps=%q: %d %s, want %d", value, r.status, r.body, status)
		}
	}
}

// rawPost posts JSON to an absolute URL.
func rawPost(t *testing.T, s *livepeertest.Server, url, body string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// UPSTREAM §12.6, §2.1: both Studio paths by default and in Studio mode;
// the root with BasePath "/" and in go-livepeer mode.
func TestBasePaths(t *testing.T) {
	for _, cfg := range []livepeertest.Config{{}, {Studio: true}} {
		s := newServer(t, cfg)
		if s.URL() != s.Origin()+"/api/generate" || s.BetaURL() != s.Origin()+"/api/beta/generate" {
			t.Fatalf("URL %q BetaURL %q", s.URL(), s.BetaURL())
		}
		for _, base := range []string{"/api/generate", "/api/beta/generate"} {
			wantStatus(t, rawPost(t, s, s.Origin()+base+"/text-to-image", t2i), 200)
		}
		wantStatus(t, rawPost(t, s, s.Origin()+"/text-to-image", t2i), 404)
		wantStatus(t, rawPost(t, s, s.Origin()+"/api/generatex/text-to-image", t2i), 404)
		if paths := []string{s.Requests()[0].Path, s.Requests()[1].Path}; paths[0] != "/api/generate/text-to-image" || paths[1] != "/api/beta/generate/text-to-image" {
			t.Fatalf("recorded paths %q", paths)
		}
	}
	for _, cfg := range []livepeertest.Config{{BasePath: "/"}, {GoLivepeer: true}} {
		s := newServer(t, cfg)
		if s.URL() != s.Origin() || s.BetaURL() != s.URL() {
			t.Fatalf("URL %q BetaURL %q", s.URL(), s.BetaURL())
		}
		wantStatus(t, rawPost(t, s, s.Origin()+"/text-to-image", t2i), 200)
		wantStatus(t, rawPost(t, s, s.Origin()+"/api/generate/text-to-image", t2i), 404)
	}
	s := newServer(t, livepeertest.Config{BasePath: "/api/beta/generate"})
	wantStatus(t, rawPost(t, s, s.URL()+"/text-to-image", t2i), 200)
	wantStatus(t, rawPost(t, s, s.Origin()+"/api/generate/text-to-image", t2i), 404)
}

// UPSTREAM §2.2: Studio has no image-to-text or text-to-speech.
func TestStudioPipelines(t *testing.T) {
	s := newServer(t, livepeertest.Config{Studio: true})
	wantStatus(t, postJSON(t, s, "text-to-speech", `{"model_id":"m","text":"hi"}`), 404)
	wantStatus(t, postForm(t, s, "image-to-text", file("image", "i.png", "image/png", pngBytes), field("model_id", "m")), 404)
	s = newServer(t, livepeertest.Config{Studio: true, Pipelines: []string{livepeertest.TextToSpeech}})
	wantStatus(t, postJSON(t, s, "text-to-speech", `{"model_id":"m","text":"hi"}`), 200)
}

// UPSTREAM §3, §6: Studio injects its default model when model_id is
// absent; an explicit "" overrides it, reaches the gateway, finds no
// orchestrator (§12.2) and Studio's fetch fails (§12.3).
func TestStudioModelID(t *testing.T) {
	s := newServer(t, livepeertest.Config{Studio: true})
	wantStatus(t, postJSON(t, s, "text-to-image", `{"prompt":"p"}`), 200)
	wantStatus(t, postForm(t, s, "upscale", field("prompt", "p"), file("image", "i.png", "image/png", pngBytes)), 200)
	r := postJSON(t, s, "text-to-image", `{"model_id":"","prompt":"p"}`)
	if r.status != 500 || r.body != livepeertest.StudioFetchErrorBody {
		t.Fatalf("empty model: %d %s", r.status, r.body)
	}
	// The default mode keeps requiring model_id and keeps its answer.
	d := newServer(t, livepeertest.Config{})
	wantStatus(t, postJSON(t, d, "text-to-image", `{"prompt":"p"}`), 422, "must have required property 'model_id'")
	r = postJSON(t, d, "text-to-image", `{"model_id":"","prompt":"p"}`)
	if r.status != 500 || r.body != livepeertest.StudioFailedBody("text-to-image") {
		t.Fatalf("default mode, empty model: %d %s", r.status, r.body)
	}
}

// UPSTREAM §12.3, §4.2: what Studio makes of the gateway's answers.
func TestStudioRelaysGateway(t *testing.T) {
	s := newServer(t, livepeertest.Config{Studio: true, StudioGatewayTimeout: 50 * time.Millisecond})
	gw503 := livepeertest.GatewayError("Service Unavailable Error")
	for _, c := range []struct {
		name     string
		pipeline string
		step     livepeertest.Step
		status   int
		body     string
	}{
		{"gateway 503", "text-to-image", livepeertest.Step{Status: 503, Body: gw503}, 500, `{"errors":["Failed to generate text-to-image"]}`},
		{"gateway 500", "upscale", livepeertest.Step{Status: 500, Body: "oops"}, 500, `{"errors":["Failed to generate upscale"]}`},
		{"gateway 502 stream", "text-to-image", livepeertest.Step{Status: 502, Events: []string{"{}"}}, 500, `{"errors":["Failed to generate text-to-image"]}`},
		{"gateway 400 verbatim", "text-to-image", livepeertest.Step{Status: 400, Body: livepeertest.GatewayError(": Prompt must be provided.")}, 400, livepeertest.GatewayError(": Prompt must be provided.")},
		{"Studio 429", "text-to-image", livepeertest.Step{Status: 429, Body: livepeertest.StudioError("Too many AI requests"), Header: http.Header{"Retry-After": {"7"}}}, 429, `{"errors":["Too many AI requests"]}`},
		{"dropped", "text-to-image", livepeertest.Step{DropConnection: true}, 500, livepeertest.StudioFetchErrorBody},
		{"no orchestrator", "text-to-image", livepeertest.Step{NoOrchestrator: true}, 500, livepeertest.StudioFetchErrorBody},
		{"timeout", "text-to-image", livepeertest.Step{Delay: time.Minute}, 500, livepeertest.StudioTimeoutBody},
		{"Studio's own 500", "text-to-image", livepeertest.Step{Status: 500, Body: livepeertest.StudioError("AI Gateway URL is not set"), StudioOwn: true}, 500, `{"errors":["AI Gateway URL is not set"]}`},
		{"slow but in time", "text-to-image", livepeertest.Step{Delay: 10 * time.Millisecond}, 200, `{"images":[`},
	} {
		s.Script(c.pipeline, c.step)
		var r response
		if c.pipeline == "upscale" {
			r = postForm(t, s, "upscale", field("prompt", "p"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m"))
		} else {
			r = postJSON(t, s, c.pipeline, t2i)
		}
		if r.status != c.status || !strings.HasPrefix(r.body, c.body) {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.body)
		}
		if c.name == "Studio 429" && r.header.Get("Retry-After") != "7" {
			t.Errorf("429 lost Retry-After: %v", r.header)
		}
	}
	// NoOrchestrator comes after validation: an invalid request still
	// gets its 4xx.
	s.Script("text-to-image", livepeertest.Step{NoOrchestrator: true})
	wantStatus(t, postJSON(t, s, "text-to-image", `{"model_id":"m"}`), 422, "must have required property 'prompt'")
	// StudioOwn drop: Studio itself goes away, a transport error.
	s.Script("text-to-image", livepeertest.Step{DropConnection: true, StudioOwn: true})
	if resp, err := s.Client().Do(newPost(context.Background(), t, s, "text-to-image", t2i)); err == nil {
		resp.Body.Close()
		t.Fatalf("StudioOwn drop answered %d", resp.StatusCode)
	}
}

// UPSTREAM §3.7: Studio buffers the gateway's event stream; a stream cut
// mid-way is a failed fetch.
func TestStudioBuffersStream(t *testing.T) {
	s := newServer(t, livepeertest.Config{Studio: true})
	s.Script("llm", livepeertest.Step{Events: []string{`{"a":1}`, `{"a":2}`}, EventInterval: 20 * time.Millisecond, Truncate: true})
	// Studio's llm route is multipart; scripted steps answer before
	// validation, so the body does not matter here.
	r := postForm(t, s, "llm", field("prompt", "hi"))
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" || r.body != "data: {\"a\":1}\n\ndata: {\"a\":2}\n\n" ||
		r.header.Get("Content-Length") == "" || r.header.Get("Cache-Control") != "" {
		t.Fatalf("buffered stream: %d %v %q", r.status, r.header, r.body)
	}
	s.Script("llm", livepeertest.Step{Events: []string{`{"a":1}`}, AbortStream: true})
	r = postForm(t, s, "llm", field("prompt", "hi"))
	if r.status != 500 || r.body != livepeertest.StudioFetchErrorBody {
		t.Fatalf("aborted stream: %d %s", r.status, r.body)
	}
}

// UPSTREAM §3.7: Studio's llm route is multipart with a stale schema, and
// the gateway JSON-decodes what Studio forwards.
func TestStudioLLM(t *testing.T) {
	s := newServer(t, livepeertest.Config{Studio: true})
	wantStatus(t, postJSON(t, s, "llm", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":false}`),
		422, `{"errors":["Expected multipart/form-data content-type"]}`)
	wantStatus(t, postForm(t, s, "llm", field("model_id", "m")), 422, "must have required property 'prompt'")
	wantStatus(t, postForm(t, s, "llm", field("prompt", "hi"), field("max_tokens", "8")),
		400, `{"error":{"message":"invalid character '-' in numeric literal"}}`)
}

// UPSTREAM §12.2: the gateway reads the request, then closes the
// connection without a response.
func TestGoLivepeerNoOrchestrator(t *testing.T) {
	s := newServer(t, livepeertest.Config{GoLivepeer: true})
	post := func(body string) error {
		resp, err := s.Client().Do(newPost(context.Background(), t, s, "text-to-image", body))
		if err == nil {
			resp.Body.Close()
			return errors.New("got a response: " + resp.Status)
		}
		return nil
	}
	s.Script("text-to-image", livepeertest.Step{NoOrchestrator: true})
	if err := post(t2i); err != nil {
		t.Fatal(err)
	}
	// The empty model id is the unscripted way there.
	if err := post(`{"model_id":"","prompt":"p"}`); err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || string(reqs[0].Body) != t2i || reqs[0].JSON["prompt"] != "p" {
		t.Fatalf("the body was not read before the drop: %+v", reqs)
	}
	// Validation first: an invalid request gets its answer.
	s.Script("text-to-image", livepeertest.Step{NoOrchestrator: true})
	wantStatus(t, postJSON(t, s, "text-to-image", `{"prompt":"p","model_id":"m","height":"x"}`), 422, "must be integer")
	if s.Pending() != 0 {
		t.Fatal("step not used")
	}
	// The default mode: a scripted NoOrchestrator drops too.
	d := newServer(t, livepeertest.Config{})
	d.Script("text-to-image", livepeertest.Step{NoOrchestrator: true})
	if resp, err := d.Client().Do(newPost(context.Background(), t, d, "text-to-image", t2i)); err == nil {
		resp.Body.Close()
		t.Fatalf("default mode NoOrchestrator answered %d", resp.StatusCode)
	}
}

// UPSTREAM §12.4, §4.1: a runner 400 on llm reaches the client as 500.
func TestGoLivepeerLLMBadRequest(t *testing.T) {
	s := newServer(t, livepeertest.Config{GoLivepeer: true})
	s.Script("llm", livepeertest.Step{Status: 400, Body: livepeertest.GatewayError(": pipeline configured with a but called with b")})
	r := postJSON(t, s, "llm", llmBody(false))
	if r.status != 500 || r.body != `{"error":{"message":"Internal Server Error"}}` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v %s", r.status, r.header, r.body)
	}
	// Other pipelines relay the runner's 400.
	s.Script("text-to-image", livepeertest.Step{Status: 400, Body: livepeertest.GatewayError(": Prompt must be provided.")})
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 400, "Prompt must be provided.")
	// Not in the default mode.
	d := newServer(t, livepeertest.Config{})
	d.Script("llm", livepeertest.Step{Status: 400, Body: livepeertest.GatewayError("x")})
	wantStatus(t, postJSON(t, d, "llm", llmBody(false)), 400)
}

func llmBody(stream bool) string {
	s := "false"
	if stream {
		s = "true"
	}
	return `{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":16,"stream":` + s + `}`
}

// UPSTREAM §12.4: the runner's mid-stream error is not forwarded; the
// stream ends cleanly after the events before it.
func TestRunnerErrorMidStream(t *testing.T) {
	for _, cfg := range []livepeertest.Config{{GoLivepeer: true}, {}} {
		s := newServer(t, cfg)
		s.Script("llm", livepeertest.Step{RunnerErrorMidStream: "CUDA out of memory", RunnerErrorAfter: 2})
		events, err := readSSE(t, s, llmBody(true))
		if err != nil {
			t.Fatalf("the stream did not end cleanly: %v", err)
		}
		if len(events) != 2 {
			t.Fatalf("%d events, want 2: %q", len(events), events)
		}
		for _, ev := range events {
			if strings.Contains(ev, "error") || strings.Contains(ev, `"finish_reason":"stop"`) || strings.Contains(ev, "[DONE]") {
				t.Fatalf("event %s", ev)
			}
		}
		// With Events.
		s.Script("llm", livepeertest.Step{Events: []string{`{"x":1}`}, RunnerErrorMidStream: "boom"})
		events, err = readSSE(t, s, llmBody(true))
		if err != nil || len(events) != 1 || events[0] != `{"x":1}` {
			t.Fatalf("with Events: %q %v", events, err)
		}
		// A non-streaming request is answered normally.
		s.Script("llm", livepeertest.Step{RunnerErrorMidStream: "boom"})
		wantStatus(t, postJSON(t, s, "llm", llmBody(false)), 200, `"finish_reason":"stop"`)
	}
}

// readSSE reads an SSE response to the end; err is a transport error
// (not io.EOF).
func readSSE(t *testing.T, s *livepeertest.Server, body string) ([]string, error) {
	t.Helper()
	req := newPost(context.Background(), t, s, "llm", body)
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, ev)
		}
	}
	return events, sc.Err()
}
