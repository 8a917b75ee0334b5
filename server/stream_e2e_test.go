package server_test

// End-to-end tests of LlmStream: a gRPC client over real mTLS (TLS 1.3, certgen
// certificates) → genservice → the livepeertest simulator over loopback HTTP. They
// cover per-event delivery (no buffering), both terminations (finish_reason, [DONE]),
// truncation, error events, the idle timeout, cancellation and deadlines reaching the
// gateway, and Studio's buffered JSON answer (UPSTREAM.md §3.7).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

// stTimingAttempts is how many times a timing measurement is repeated before it counts
// as failed. The bounds hold on an idle machine every time; a loaded CI box (other test
// binaries, fuzzers) can stall a process for 100 ms now and then. A genservice that
// buffers fails every attempt.
const stTimingAttempts = 3

func stStreamRequest() *generationv1.LlmRequest {
	return &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "say hello"}}}
}

// stEvent is one LLM stream chunk as the runner emits it: a delta, cumulative usage and
// finish_reason (empty until the last chunk).
func stEvent(content, finish string, completionTokens int32) string {
	b, err := json.Marshal(livepeer.LLMResponse{
		ID: "chatcmpl-e2e", Model: "meta-llama/Meta-Llama-3.1-8B-Instruct", Created: 1735689600,
		Usage:   &livepeer.LLMTokenUsage{PromptTokens: 2, CompletionTokens: completionTokens, TotalTokens: 2 + completionTokens},
		Choices: []livepeer.LLMChoice{{FinishReason: finish, Delta: &livepeer.LLMMessage{Role: "assistant", Content: content}}},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// stRecvAll receives until an error; io.EOF means the call ended OK.
func stRecvAll(s generationv1.GenerationService_LlmStreamClient) ([]*generationv1.LlmStreamResponse, error) {
	var out []*generationv1.LlmStreamResponse
	for {
		m, err := s.Recv()
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

func stDeltas(ms []*generationv1.LlmStreamResponse) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		if len(m.GetChoices()) > 0 {
			out[i] = m.GetChoices()[0].GetDelta().GetContent()
		}
	}
	return out
}

func stWantDeltas(t *testing.T, ms []*generationv1.LlmStreamResponse, want ...string) {
	t.Helper()
	if got := stDeltas(ms); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deltas = %q, want %q", got, want)
	}
}

// stOpenStream starts an LlmStream call.
func stOpenStream(t *testing.T, ctx context.Context, h *harness) generationv1.GenerationService_LlmStreamClient {
	t.Helper()
	s, err := h.client.LlmStream(ctx, stStreamRequest())
	if err != nil {
		t.Fatalf("LlmStream: %v", err)
	}
	return s
}

// ---- a TCP tap between genservice and the simulator ----

// stTap is a loopback TCP proxy that forwards bytes unchanged and records when each
// "data: " line passed from the gateway towards genservice: the events' send times,
// measured on the wire.
type stTap struct {
	ln     net.Listener
	target atomic.Pointer[string]
	mu     sync.Mutex
	sent   []time.Time
	conns  []net.Conn
}

func stListenTap(t *testing.T) *stTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stTap{ln: ln}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// gatewayURL is the tap's URL for the simulator's default base path.
func (p *stTap) gatewayURL() string { return "http://" + p.ln.Addr().String() + "/api/beta/generate" }

func (p *stTap) setTarget(origin string) {
	hostport := strings.TrimPrefix(origin, "http://")
	p.target.Store(&hostport)
}

func (p *stTap) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *stTap) handle(down net.Conn) {
	target := p.target.Load()
	if target == nil {
		down.Close()
		return
	}
	up, err := net.Dial("tcp", *target)
	if err != nil {
		down.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, down, up)
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(up, down)
		up.Close()
		down.Close()
	}()
	pat := []byte("data: ")
	buf := make([]byte, 64<<10)
	var tail []byte
	for {
		n, err := up.Read(buf)
		if n > 0 {
			now := time.Now()
			seen := append(tail, buf[:n]...)
			if k := bytes.Count(seen, pat); k > 0 {
				p.mu.Lock()
				for range k {
					p.sent = append(p.sent, now)
				}
				p.mu.Unlock()
			}
			tail = append([]byte(nil), seen[max(0, len(seen)-len(pat)+1):]...)
			if _, err := down.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	up.Close()
	down.Close()
}

func (p *stTap) sentTimes() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.sent...)
}

func (p *stTap) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = nil
}

func (p *stTap) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// ---- 1. per-event delivery ----

// TestE2E_LlmStream_PerEventDelivery: the simulator paces 5 events 50 ms apart; the
// gRPC client receives each within 20 ms of the moment it left the simulator (measured
// on the wire by a TCP tap), successive receive gaps are ~50 ms, and the first event
// arrives long before the last is sent: genservice does not buffer. The deltas, the
// final finish_reason "stop" with usage, and the OK end arrive intact.
func TestE2E_LlmStream_PerEventDelivery(t *testing.T) {
	t.Parallel()
	tap := stListenTap(t)
	h := newHarness(t, withGatewayURL(tap.gatewayURL()))
	tap.setTarget(h.sim.Origin())

	var problems []string
	for attempt := 1; attempt <= stTimingAttempts; attempt++ {
		if problems = stPacedOnce(t, h, tap); len(problems) == 0 {
			return
		}
		t.Logf("attempt %d: %s", attempt, strings.Join(problems, "; "))
	}
	t.Errorf("events were not delivered as sent in %d attempts; last: %s", stTimingAttempts, strings.Join(problems, "; "))
}

func stPacedOnce(t *testing.T, h *harness, tap *stTap) (problems []string) {
	const interval, slack = 50 * time.Millisecond, 20 * time.Millisecond
	deltas := []string{"Hel", "lo", ",", " world", ""}
	events := make([]string, len(deltas))
	for i, d := range deltas {
		finish := ""
		if i == len(deltas)-1 {
			finish = "stop"
		}
		events[i] = stEvent(d, finish, int32(min(i+1, len(deltas)-1)))
	}
	tap.reset()
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: events, EventInterval: interval, Truncate: true})
	s := stOpenStream(t, ctxTimeout(t, 10*time.Second), h)
	var msgs []*generationv1.LlmStreamResponse
	var got []time.Time
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got = append(got, time.Now())
		msgs = append(msgs, m)
	}
	stWantDeltas(t, msgs, deltas...)
	last := msgs[len(msgs)-1]
	if fr := last.GetChoices()[0].GetFinishReason(); fr != "stop" || last.GetUsage().GetTotalTokens() != 6 || last.GetId() != "chatcmpl-e2e" {
		t.Fatalf("last message = %v, want finish_reason stop with usage", last)
	}
	for _, m := range msgs[:len(msgs)-1] {
		if fr := m.GetChoices()[0].GetFinishReason(); fr != "" {
			t.Fatalf("intermediate message has finish_reason %q", fr)
		}
	}

	sent := tap.sentTimes()
	if len(sent) != len(events) {
		t.Fatalf("tap saw %d events, want %d", len(sent), len(events))
	}
	for i := range got {
		if lag := got[i].Sub(sent[i]); lag > slack {
			problems = append(problems, fmt.Sprintf("event %d received %v after it left the simulator", i, lag))
		}
		if i > 0 {
			gap := got[i].Sub(got[i-1])
			if gap < interval-slack || gap > interval+slack {
				problems = append(problems, fmt.Sprintf("receive gap before event %d = %v, want %v ± %v", i, gap, interval, slack))
			}
		}
	}
	n := len(events) - 1
	if ahead := sent[n].Sub(got[0]); ahead < time.Duration(n)*interval-slack {
		problems = append(problems, fmt.Sprintf("first event received only %v before the last was sent", ahead))
	}
	return problems
}

// TestE2E_LlmStream_EachEventForwardedBeforeNextIsSent: a gateway that sends event i+1
// only after the gRPC client has received event i. Any buffering in genservice (or in
// its HTTP client or gRPC transport) deadlocks this; no timing is involved.
func TestE2E_LlmStream_EachEventForwardedBeforeNextIsSent(t *testing.T) {
	t.Parallel()
	const n = 5
	received := make(chan int, n)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range n {
			finish := ""
			if i == n-1 {
				finish = "stop"
			}
			_, _ = io.WriteString(w, "data: "+stEvent(fmt.Sprint(i), finish, int32(i+1))+"\n\n")
			_ = rc.Flush()
			if i == n-1 {
				return
			}
			select {
			case got := <-received:
				if got != i {
					return
				}
			case <-time.After(5 * time.Second): // genservice held the event back
				return
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(gw.Close)
	h := newHarness(t, withGatewayURL(gw.URL))
	s := stOpenStream(t, ctxTimeout(t, 10*time.Second), h)
	for i := range n {
		type result struct {
			m   *generationv1.LlmStreamResponse
			err error
		}
		ch := make(chan result, 1)
		go func() { m, err := s.Recv(); ch <- result{m, err} }()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("event %d: %v", i, r.err)
			}
			if d := stDeltas([]*generationv1.LlmStreamResponse{r.m}); d[0] != fmt.Sprint(i) {
				t.Fatalf("event %d has delta %q", i, d[0])
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("event %d not received while the gateway waits for it to be: genservice buffers", i)
		}
		received <- i
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want OK", err)
	}
}

// ---- 2. termination ----

// TestE2E_LlmStream_EndsOnFinishReasonWithoutDone (gateway style): the event with a
// finish_reason ends the call OK at once; the simulator's later (garbage) event is
// never read and the upstream request is closed.
func TestE2E_LlmStream_EndsOnFinishReasonWithoutDone(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{
		Events:        []string{stEvent("Hi", "", 1), stEvent(" there", "", 2), stEvent("", "stop", 2), "not json: must never be read"},
		EventInterval: 30 * time.Millisecond, Truncate: true,
	})
	msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want OK", err)
	}
	stWantDeltas(t, msgs, "Hi", " there", "")
	if fr := msgs[2].GetChoices()[0].GetFinishReason(); fr != "stop" {
		t.Errorf("finish_reason = %q", fr)
	}
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Error("upstream stream not closed after the final event")
	}
}

// TestE2E_LlmStream_EndsOnDoneRunnerStyle (runner style): `data: [DONE]` ends the call
// OK although no event had a finish_reason; what follows is never read.
func TestE2E_LlmStream_EndsOnDoneRunnerStyle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{
		Events:        []string{stEvent("Hi", "", 1), stEvent(" there", "", 2), "[DONE]", "not json: must never be read"},
		EventInterval: 30 * time.Millisecond, Truncate: true,
	})
	msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want OK", err)
	}
	stWantDeltas(t, msgs, "Hi", " there")
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Error("upstream stream not closed after [DONE]")
	}
}

// TestE2E_LlmStream_SimulatorDefaultStream: the simulator's own (unscripted) stream,
// as the go-livepeer gateway relays it, comes through whole and ends OK.
func TestE2E_LlmStream_SimulatorDefaultStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want OK", err)
	}
	text := strings.Join(stDeltas(msgs), "")
	if !strings.HasPrefix(text, "Hello! This is a simulated reply") || !strings.HasSuffix(text, "You said: say hello") {
		t.Errorf("text = %q", text)
	}
	if fr := msgs[len(msgs)-1].GetChoices()[0].GetFinishReason(); fr != "stop" {
		t.Errorf("final finish_reason = %q", fr)
	}
	reqs := h.sim.Requests()
	if len(reqs) != 1 || reqs[0].JSON["stream"] != true {
		t.Errorf("upstream request = %v", reqs)
	}
}

// ---- 3. truncation ----

// TestE2E_LlmStream_TruncatedIsUnavailable: the stream ends before its final event
// (cleanly, or by the connection being cut): the caller first receives the earlier
// events, then UNAVAILABLE / UPSTREAM_STREAM_TRUNCATED. Not retried (one request).
func TestE2E_LlmStream_TruncatedIsUnavailable(t *testing.T) {
	t.Parallel()
	for name, step := range map[string]livepeertest.Step{
		"EOF before final": {Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: 10 * time.Millisecond, Truncate: true},
		"AbortStream":      {Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: 10 * time.Millisecond, AbortStream: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.sim.Script(livepeer.PipelineLLM, step)
			msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
			st := requireStatus(t, err, codes.Unavailable, "UPSTREAM_STREAM_TRUNCATED")
			requireMeta(t, st, map[string]string{"pipeline": "llm", "events": "2"})
			stWantDeltas(t, msgs, "a", "b")
			if n := h.sim.Hits(livepeer.PipelineLLM); n != 1 {
				t.Errorf("hits = %d, want 1", n)
			}
		})
	}
}

// ---- 4. error event ----

// TestE2E_LlmStream_ErrorEventIsInternal: the runner's `data: {"error": "GPU out of
// memory."}` mid-stream ends the call with INTERNAL / UPSTREAM_INTERNAL_ERROR whose
// upstreamMessage carries the text, after the earlier events were delivered.
func TestE2E_LlmStream_ErrorEventIsInternal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{
		Events: []string{stEvent("Once upon", "", 1), `{"error": "GPU out of memory."}`}, Truncate: true,
	})
	msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
	st := requireStatus(t, err, codes.Internal, "UPSTREAM_INTERNAL_ERROR")
	if um := errorInfo(t, st).GetMetadata()["upstreamMessage"]; !strings.Contains(um, "GPU out of memory.") {
		t.Errorf("upstreamMessage = %q, want the runner's text", um)
	}
	if !strings.Contains(st.Message(), "GPU out of memory.") {
		t.Errorf("message = %q", st.Message())
	}
	stWantDeltas(t, msgs, "Once upon")
}

// ---- 5. idle timeout ----

// TestE2E_LlmStream_IdleTimeout: StreamIdleTimeout 150 ms and a 1 s silence after the
// first event: UNAVAILABLE / UPSTREAM_TIMEOUT well before the next event would come
// (< 600 ms after the first), and the upstream request is closed.
func TestE2E_LlmStream_IdleTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.StreamIdleTimeout = 150 * time.Millisecond }))
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: time.Second})
	s := stOpenStream(t, ctxTimeout(t, 10*time.Second), h)
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	_, err := s.Recv()
	waited := time.Since(first)
	st := requireStatus(t, err, codes.Unavailable, "UPSTREAM_TIMEOUT")
	requireMeta(t, st, map[string]string{"pipeline": "llm", "idleTimeout": "150ms"})
	if waited < 140*time.Millisecond || waited >= 600*time.Millisecond {
		t.Errorf("idle timeout reported %v after the first event, want 150ms..600ms", waited)
	}
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Error("upstream request not closed after the idle timeout")
	}
}

// TestE2E_LlmStream_IdleTimeoutNotBeforeFirstEvent: a slow start (or Studio's whole
// buffered stream arriving late) is bounded by the deadline, not the idle timeout.
func TestE2E_LlmStream_IdleTimeoutNotBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.StreamIdleTimeout = 100 * time.Millisecond }))
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Delay: 400 * time.Millisecond, Events: []string{stEvent("late", "", 1)}})
	msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want OK", err)
	}
	stWantDeltas(t, msgs, "late", "")
}

// ---- 6. cancellation ----

// TestE2E_LlmStream_CancelReachesUpstream: the caller cancels mid-stream; the
// simulator sees its request go away within 100 ms, and the call is logged CANCELLED.
func TestE2E_LlmStream_CancelReachesUpstream(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	events := make([]string, 40)
	for i := range events {
		events[i] = stEvent("w", "", int32(i+1))
	}
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: events, EventInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := rid(t, "cancel")
	s := stOpenStream(t, withRequestID(ctx, id), h)
	for range 2 {
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	cancelled := time.Now()
	cancel()
	if _, err := stRecvAll(s); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel = %v, want CANCELLED", err)
	}
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Fatal("the simulator never saw the request go away")
	}
	if lag := h.sim.LastDisconnect().Sub(cancelled); lag > 100*time.Millisecond {
		t.Errorf("simulator saw the disconnect %v after the cancel, want ≤ 100ms", lag)
	}
	if code := h.waitCallLine(t, id).str("code"); code != codes.Canceled.String() {
		t.Errorf("logged code = %q, want %s", code, codes.Canceled)
	}
}

// ---- 7. Studio-style buffered answer ----

// TestE2E_LlmStream_BufferedJSONAnswer: a stream request answered with one
// application/json completion (Studio buffers the upstream body) yields one message
// whose delta is the whole content with finish_reason set, then OK.
func TestE2E_LlmStream_BufferedJSONAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Body: `{"id":"chatcmpl-buf","model":"meta-llama/Meta-Llama-3.1-8B-Instruct","created":1735689600,` +
		`"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7},` +
		`"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hello there, the whole answer."}}]}`})
	msgs, err := stRecvAll(stOpenStream(t, ctxTimeout(t, 10*time.Second), h))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want OK", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	ch := m.GetChoices()[0]
	if ch.GetDelta().GetContent() != "Hello there, the whole answer." || ch.GetDelta().GetRole() != generationv1.LlmRole_LLM_ROLE_ASSISTANT || ch.GetFinishReason() != "stop" || ch.GetMessage() != nil {
		t.Errorf("choice = %v", ch)
	}
	if m.GetId() != "chatcmpl-buf" || m.GetUsage().GetTotalTokens() != 7 {
		t.Errorf("message = %v", m)
	}
}

// ---- 9. deadlines on a stream ----

// TestE2E_LlmStream_CallerDeadlineMidStream: the caller's deadline passing mid-stream
// ends the call DEADLINE_EXCEEDED and the upstream request is cancelled.
func TestE2E_LlmStream_CallerDeadlineMidStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	msgs, err := stRecvAll(stOpenStream(t, ctx, h))
	requireStatus(t, err, codes.DeadlineExceeded, "")
	stWantDeltas(t, msgs, "a")
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Error("upstream request not cancelled at the deadline")
	}
}

// TestE2E_LlmStream_PipelineTimeoutMidStream: without a caller deadline the llm
// per-pipeline timeout bounds the stream; when it expires mid-stream the caller gets
// UNAVAILABLE / UPSTREAM_TIMEOUT (DESIGN §7 "our per-attempt timeout"), not
// UPSTREAM_STREAM_TRUNCATED, which would blame the gateway.
func TestE2E_LlmStream_PipelineTimeoutMidStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withUpstream(func(c *livepeer.Config) {
		c.Timeouts = map[string]time.Duration{livepeer.PipelineLLM: 250 * time.Millisecond}
	}))
	events := make([]string, 20)
	for i := range events {
		events[i] = stEvent("w", "", int32(i+1))
	}
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: events, EventInterval: 50 * time.Millisecond})
	ctx, cancel := stNoDeadline(t, 10*time.Second)
	defer cancel()
	msgs, err := stRecvAll(stOpenStream(t, ctx, h))
	if len(msgs) == 0 || len(msgs) >= len(events) {
		t.Errorf("%d messages before the timeout", len(msgs))
	}
	requireStatus(t, err, codes.Unavailable, "UPSTREAM_TIMEOUT")
}

// stNoDeadline is a context without a deadline (so genservice's per-pipeline timeout
// applies) that is still cancelled after limit, so a hung test cannot hang forever.
func stNoDeadline(t *testing.T, limit time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(limit, cancel)
	t.Cleanup(func() { timer.Stop(); cancel() })
	return ctx, cancel
}
