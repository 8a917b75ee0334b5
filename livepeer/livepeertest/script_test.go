package livepeertest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

const t2i = `{"model_id":"m","prompt":"p"}`

func TestScriptStatusAndBody(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	s.Script("text-to-image",
		livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error")},
		livepeertest.Step{Status: 429, Body: livepeertest.StudioError("Too many AI requests"), Header: http.Header{"Retry-After": {"7"}}},
		livepeertest.Step{Status: 502, Body: "<html>bad gateway</html>"},
		livepeertest.Step{Body: "not json at all"},
	)
	s.Script("llm", livepeertest.Step{Status: 500, Body: livepeertest.RunnerError("GPU out of memory.")})
	if s.Pending() != 5 {
		t.Fatalf("pending %d", s.Pending())
	}

	r := postJSON(t, s, "text-to-image", t2i)
	wantStatus(t, r, 503, `{"error":{"message":"Service Unavailable Error"}}`)
	if r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	r = postJSON(t, s, "text-to-image", t2i)
	wantStatus(t, r, 429, "Too many AI requests")
	if r.header.Get("Retry-After") != "7" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	r = postJSON(t, s, "text-to-image", t2i)
	wantStatus(t, r, 502, "<html>")
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	// Body without Status: a 200 with garbage.
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 200, "not json at all")
	// Queue for text-to-image is empty: normal behaviour again.
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 200, `"images"`)
	// The llm step waited for an llm request; scripts override validation.
	wantStatus(t, postJSON(t, s, "llm", `{}`), 500, `{"detail":{"msg":"GPU out of memory."}}`)
	if s.Pending() != 0 || len(s.Requests()) != 6 {
		t.Fatalf("pending %d, recorded %d", s.Pending(), len(s.Requests()))
	}
}

func TestScriptAnyPipelineFIFO(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	s.Script("", livepeertest.Step{Status: 500, Body: `{"n":1}`})
	s.Script("text-to-speech", livepeertest.Step{Status: 500, Body: `{"n":2}`})
	s.Script("", livepeertest.Step{Status: 500, Body: `{"n":3}`})
	wantStatus(t, postJSON(t, s, "text-to-speech", `{}`), 500, `{"n":1}`)
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 500, `{"n":3}`)
	wantStatus(t, postJSON(t, s, "text-to-speech", `{}`), 500, `{"n":2}`)
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 200)

	s.Script("text-to-image", livepeertest.Step{Status: 500})
	s.Reset()
	if s.Pending() != 0 {
		t.Fatal("Reset kept scripts")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Script with an unknown pipeline did not panic")
		}
	}()
	s.Script("text-to-imag", livepeertest.Step{})
}

func TestScriptHeaderOnNormalAnswer(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	s.Script("text-to-image", livepeertest.Step{Header: http.Header{"X-Extra": {"1"}}, Delay: 20 * time.Millisecond})
	start := time.Now()
	r := postJSON(t, s, "text-to-image", t2i)
	wantStatus(t, r, 200, `"images"`)
	if r.header.Get("X-Extra") != "1" || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("header %q after %v", r.header.Get("X-Extra"), time.Since(start))
	}
}

func newPost(ctx context.Context, t *testing.T, s *livepeertest.Server, pipeline, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/"+pipeline, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	return req
}

func TestScriptDelayClientCancels(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	s.Script("text-to-image", livepeertest.Step{Delay: time.Minute, Status: 200, Body: `{}`})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Client().Do(newPost(ctx, t, s, "text-to-image", t2i))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if !s.WaitDisconnects(1, 5*time.Second) {
		t.Fatal("server did not notice the client going away")
	}
	last := s.LastDisconnect()
	if last.Before(start.Add(90*time.Millisecond)) || time.Since(start) > 5*time.Second {
		t.Fatalf("disconnect at +%v", last.Sub(start))
	}
	// The server is still usable and the step was used up.
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 200, `"images"`)
	if s.Disconnects() != 1 {
		t.Fatalf("disconnects %d", s.Disconnects())
	}
}

func TestScriptDropConnection(t *testing.T) {
	s := newServer(t, livepeertest.Config{TLS: true})
	s.Script("text-to-image", livepeertest.Step{DropConnection: true})
	resp, err := s.Client().Do(newPost(context.Background(), t, s, "text-to-image", t2i))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a response: %d", resp.StatusCode)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("err = %v", err)
	}
	if s.Hits("text-to-image") != 1 {
		t.Fatal("dropped request not recorded")
	}
	wantStatus(t, postJSON(t, s, "text-to-image", t2i), 200)
}

// event is one SSE "data:" payload and when it arrived.
type event struct {
	data string
	at   time.Time
}

// readEvents reads SSE events until EOF or an error, which it returns.
func readEvents(body io.Reader) ([]event, error) {
	var out []event
	br := bufio.NewReader(body)
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "data: ") && strings.HasSuffix(line, "\n") {
			out = append(out, event{strings.TrimSuffix(strings.TrimPrefix(line, "data: "), "\n"), time.Now()})
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

type llmChunk struct {
	ID    string
	Model string
	Usage struct {
		CompletionTokens int `json:"completion_tokens"`
	}
	Choices []struct {
		FinishReason string `json:"finish_reason"`
		Delta        struct{ Role, Content string }
	}
}

func TestLLMStream(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	body := `{"model":"m","messages":[{"role":"user","content":"tell me"}],"max_tokens":256,"stream":true}`
	resp, err := s.Client().Do(newPost(context.Background(), t, s, "llm", body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	events, err := readEvents(resp.Body)
	if err != nil || len(events) < 3 {
		t.Fatalf("events %d, err %v", len(events), err)
	}
	var text strings.Builder
	for i, ev := range events {
		if ev.data == "[DONE]" {
			t.Fatal("gateway streams never carry [DONE]")
		}
		var c llmChunk
		if err := json.Unmarshal([]byte(ev.data), &c); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		last := i == len(events)-1
		if (c.Choices[0].FinishReason == "stop") != last || c.Model != "m" || !strings.HasPrefix(c.ID, "chatcmpl-") {
			t.Fatalf("event %d: %s", i, ev.data)
		}
		text.WriteString(c.Choices[0].Delta.Content)
	}
	// The streamed text equals the non-streamed answer.
	whole := postJSON(t, s, "llm", strings.Replace(body, `"stream":true`, `"stream":false`, 1)).json(t)
	want := whole["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]
	if text.String() != want {
		t.Fatalf("streamed %q, whole %q", text.String(), want)
	}
}

func TestScriptedEventsPacing(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	const gap = 100 * time.Millisecond
	s.Script("llm", livepeertest.Step{Events: []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}, EventInterval: gap})
	start := time.Now()
	resp, err := s.Client().Do(newPost(context.Background(), t, s, "llm", `{"model":"m"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, err := readEvents(resp.Body)
	if err != nil || len(events) != 4 {
		t.Fatalf("events %v, err %v", events, err)
	}
	for i, want := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		if events[i].data != want {
			t.Fatalf("event %d = %s", i, events[i].data)
		}
	}
	// Bounds that a slow client cannot break: the last event cannot come
	// before three gaps have passed, and the first, flushed on its own,
	// comes well before the last.
	if d := events[3].at.Sub(start); d < 3*gap {
		t.Fatalf("last event after %v, want >= %v", d, 3*gap)
	}
	if d := events[3].at.Sub(events[0].at); d < gap {
		t.Fatalf("events not paced: first and last %v apart", d)
	}
	var final llmChunk
	if err := json.Unmarshal([]byte(events[3].data), &final); err != nil || final.Choices[0].FinishReason != "stop" || final.Model != "m" {
		t.Fatalf("final event %s", events[3].data)
	}
}

func TestStreamTruncation(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	llm := `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":256,"stream":true}`

	// Truncate on the normal stream: all deltas, no finish_reason, clean end.
	s.Script("llm", livepeertest.Step{Truncate: true})
	resp, err := s.Client().Do(newPost(context.Background(), t, s, "llm", llm))
	if err != nil {
		t.Fatal(err)
	}
	events, err := readEvents(resp.Body)
	resp.Body.Close()
	if err != nil || len(events) == 0 {
		t.Fatalf("events %d err %v", len(events), err)
	}
	for _, ev := range events {
		if strings.Contains(ev.data, `"finish_reason":"stop"`) {
			t.Fatalf("truncated stream has a final chunk: %s", ev.data)
		}
	}

	// AbortStream: the connection dies after the events.
	s.Script("llm", livepeertest.Step{Events: []string{`{"a":1}`, `{"a":2}`}, AbortStream: true})
	resp, err = s.Client().Do(newPost(context.Background(), t, s, "llm", llm))
	if err != nil {
		t.Fatal(err)
	}
	events, err = readEvents(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(events) != 2 {
		t.Fatalf("aborted stream: %d events, err %v", len(events), err)
	}
}

func TestStreamClientGoesAway(t *testing.T) {
	s := newServer(t, livepeertest.Config{})
	s.Script("llm", livepeertest.Step{Events: strings.Split(strings.Repeat(`{"x":1},`, 50), ",")[:50], EventInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := s.Client().Do(newPost(ctx, t, s, "llm", `{}`))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for range 2 {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()
	start := time.Now()
	if !s.WaitDisconnects(1, 5*time.Second) {
		t.Fatal("mid-stream disconnect not seen")
	}
	if d := s.LastDisconnect().Sub(start); d > time.Second {
		t.Fatalf("noticed %v after the client left", d)
	}
}
