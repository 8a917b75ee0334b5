package livepeer

// Tests of LLMStream: the SSE parser (fed raw bytes by an httptest server) and the
// stream's behaviour against the livepeertest simulator over loopback HTTP (pacing,
// termination, truncation, error events, idle timeout, cancellation, a buffered JSON
// answer). Helpers are prefixed with st to stay clear of the package's other tests.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

// stKey is the backend key of this file's simulators and clients.
const stKey = "sk-stream-test-4d2c9e71"

func stSim(t *testing.T, cfg livepeertest.Config) *livepeertest.Server {
	t.Helper()
	cfg.APIKey = stKey
	s, err := livepeertest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func stClient(t *testing.T, gatewayURL string, edit func(*Config)) *Client {
	t.Helper()
	k, err := ParseKey(stKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{GatewayURL: gatewayURL, Keys: StaticKey(k)}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stLLMRequest() *LLMRequest {
	return &LLMRequest{Model: DefaultModels[PipelineLLM], MaxTokens: 64, Messages: []LLMMessage{{Role: "user", Content: "hi"}}}
}

// stEvent is one LLM stream chunk as the runner emits it: a delta, cumulative usage
// and finish_reason (empty until the last chunk).
func stEvent(content, finish string, completionTokens int32) string {
	b, err := json.Marshal(LLMResponse{
		ID: "chatcmpl-st", Model: "meta-llama/Meta-Llama-3.1-8B-Instruct", Created: 1735689600,
		Usage:   &LLMTokenUsage{PromptTokens: 3, CompletionTokens: completionTokens, TotalTokens: 3 + completionTokens},
		Choices: []LLMChoice{{FinishReason: finish, Delta: &LLMMessage{Role: "assistant", Content: content}}},
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// stRawClient starts an httptest gateway whose /llm answers with handler and returns a
// client for it.
func stRawClient(t *testing.T, handler http.HandlerFunc, edit func(*Config)) *Client {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return stClient(t, srv.URL, edit)
}

// stSSE answers with body verbatim as a text/event-stream.
func stSSE(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
	}
}

// stOpen opens a stream with the given idle timeout and closes it at cleanup.
func stOpen(t *testing.T, ctx context.Context, c *Client, idle time.Duration) *LLMStream {
	t.Helper()
	s, err := c.LLMStream(ctx, stLLMRequest(), idle)
	if err != nil {
		t.Fatalf("LLMStream: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// stDrain reads events until an error and returns them with that error.
func stDrain(s *LLMStream) ([]*LLMResponse, error) {
	var out []*LLMResponse
	for {
		ev, err := s.Next()
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// stContents joins the first choice's delta contents.
func stContents(evs []*LLMResponse) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		if len(ev.Choices) > 0 && ev.Choices[0].Delta != nil {
			out[i] = ev.Choices[0].Delta.Content
		}
	}
	return out
}

func stWantContents(t *testing.T, evs []*LLMResponse, want ...string) {
	t.Helper()
	got := stContents(evs)
	if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
		t.Fatalf("event contents = %q, want %q", got, want)
	}
}

// ---- the SSE parser ----

// TestLLMStreamParser_MultiLineData: an event's data lines are joined with "\n" (a JSON
// object split over several data lines is one event).
func TestLLMStreamParser_MultiLineData(t *testing.T) {
	t.Parallel()
	// Split between two members: a newline inside a string literal would not be JSON.
	first := stEvent("Hel", "", 1)
	mid := strings.Index(first, `,"model"`) + 1
	body := "data: " + first[:mid] + "\ndata: " + first[mid:] + "\n\n" +
		"data: {\"id\":\"x\",\n" +
		"data:  \"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{\"role\":\"assistant\",\"content\":\"lo\"}}]}\n\n"
	c := stRawClient(t, stSSE(body), nil)
	evs, err := stDrain(stOpen(t, context.Background(), c, 0))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	stWantContents(t, evs, "Hel", "lo")
	if evs[0].Usage == nil || evs[0].Usage.CompletionTokens != 1 || evs[1].Choices[0].FinishReason != "stop" {
		t.Errorf("events decoded wrongly: %+v %+v", evs[0], evs[1])
	}
}

// TestLLMStreamParser_CommentsIgnored: lines starting with ':' (keep-alives) are not
// events and do not end or corrupt the event they appear in.
func TestLLMStreamParser_CommentsIgnored(t *testing.T) {
	t.Parallel()
	body := ": keep-alive\n\n" +
		":\n" +
		"data: " + stEvent("a", "", 1) + "\n: a comment inside an event\n\n" +
		": another\n\n" +
		"data: " + stEvent("b", "stop", 2) + "\n\n"
	c := stRawClient(t, stSSE(body), nil)
	evs, err := stDrain(stOpen(t, context.Background(), c, 0))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	stWantContents(t, evs, "a", "b")
}

// TestLLMStreamParser_CRLFLineEndings: "\r\n" line endings parse like "\n".
func TestLLMStreamParser_CRLFLineEndings(t *testing.T) {
	t.Parallel()
	body := ": hello\r\n\r\n" +
		"data: " + stEvent("one", "", 1) + "\r\n\r\n" +
		"event: message\r\ndata: " + stEvent("two", "", 2) + "\r\n\r\n" +
		"data: " + stEvent("", "stop", 2) + "\r\n\r\n"
	c := stRawClient(t, stSSE(body), nil)
	evs, err := stDrain(stOpen(t, context.Background(), c, 0))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	stWantContents(t, evs, "one", "two", "")
}

// TestLLMStreamParser_EventWithoutDataSkipped: events carrying only event/id/retry
// fields (or nothing) are skipped; "data:" without the optional space works.
func TestLLMStreamParser_EventWithoutDataSkipped(t *testing.T) {
	t.Parallel()
	body := "event: ping\n\n" +
		"id: 7\nretry: 1000\n\n" +
		"\n\n" +
		"data:" + stEvent("x", "", 1) + "\n\n" +
		"event: ping\nid: 8\n\n" +
		"data: " + stEvent("y", "length", 2) + "\n\n"
	c := stRawClient(t, stSSE(body), nil)
	evs, err := stDrain(stOpen(t, context.Background(), c, 0))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	stWantContents(t, evs, "x", "y")
	if evs[1].Choices[0].FinishReason != "length" {
		t.Errorf("finish_reason = %q, want length", evs[1].Choices[0].FinishReason)
	}
}

// TestLLMStreamParser_OversizedEvent: an event over 1 MiB, in one line or summed over
// several data lines, is a BadResponseError, after the earlier events were delivered.
func TestLLMStreamParser_OversizedEvent(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", maxEventBytes+10)
	half := strings.Repeat("y", maxEventBytes/2+10)
	for name, body := range map[string]string{
		"one line":   "data: " + stEvent("ok", "", 1) + "\n\ndata: " + big + "\n\n",
		"many lines": "data: " + stEvent("ok", "", 1) + "\n\ndata: " + half + "\ndata: " + half + "\n\n",
		"no newline": "data: " + stEvent("ok", "", 1) + "\n\ndata: " + big,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := stRawClient(t, stSSE(body), nil)
			evs, err := stDrain(stOpen(t, context.Background(), c, 0))
			var bre *BadResponseError
			if !errors.As(err, &bre) || bre.Pipeline != PipelineLLM {
				t.Fatalf("end = %T %v, want *BadResponseError", err, err)
			}
			if !strings.Contains(bre.Reason, "1 MiB") {
				t.Errorf("reason = %q", bre.Reason)
			}
			stWantContents(t, evs, "ok")
		})
	}
}

// TestLLMStreamParser_EventNotJSON: a data payload that is neither JSON nor [DONE] is a
// BadResponseError whose reason is sanitized.
func TestLLMStreamParser_EventNotJSON(t *testing.T) {
	t.Parallel()
	c := stRawClient(t, stSSE("data: <html>\x1b[31mboom</html>\n\n"), nil)
	_, err := stDrain(stOpen(t, context.Background(), c, 0))
	var bre *BadResponseError
	if !errors.As(err, &bre) {
		t.Fatalf("end = %T %v, want *BadResponseError", err, err)
	}
	if strings.ContainsRune(bre.Reason, 0x1b) {
		t.Errorf("reason carries control characters: %q", bre.Reason)
	}
}

// ---- termination ----

// stHold is a handler that writes body, flushes, then holds the response open until
// the client goes away (or the test ends): a stream that has not ended on the wire.
func stHold(t *testing.T, body string) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

// TestLLMStream_EndsOnFinishReason (gateway style): the event with a finish_reason is
// the last; Next returns io.EOF at once without waiting for the connection to end
// (the go-livepeer gateway never sends [DONE]).
func TestLLMStream_EndsOnFinishReason(t *testing.T) {
	t.Parallel()
	c := stRawClient(t, stHold(t, "data: "+stEvent("Hi", "", 1)+"\n\ndata: "+stEvent("", "stop", 1)+"\n\n"), nil)
	s := stOpen(t, context.Background(), c, 0)
	start := time.Now()
	evs, err := stDrain(s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("ending took %v: Next waited for more after finish_reason", d)
	}
	stWantContents(t, evs, "Hi", "")
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("Next after the end = %v, want io.EOF again", err)
	}
}

// TestLLMStream_EndsOnDone (runner style): "data: [DONE]" ends the stream even though
// no event had a finish_reason and the connection stays open.
func TestLLMStream_EndsOnDone(t *testing.T) {
	t.Parallel()
	c := stRawClient(t, stHold(t, "data: "+stEvent("A", "", 1)+"\n\ndata: "+stEvent("B", "", 2)+"\n\ndata: [DONE]\n\ndata: not json\n\n"), nil)
	start := time.Now()
	evs, err := stDrain(stOpen(t, context.Background(), c, 0))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("ending took %v", d)
	}
	stWantContents(t, evs, "A", "B")
}

// TestLLMStream_SimulatorGatewayAndRunnerStyles: both terminations against the
// simulator; the garbage after the terminating event is never read.
func TestLLMStream_SimulatorGatewayAndRunnerStyles(t *testing.T) {
	t.Parallel()
	for name, events := range map[string][]string{
		"finish_reason": {stEvent("A", "", 1), stEvent("", "stop", 1), "not json"},
		"[DONE]":        {stEvent("A", "", 1), stEvent("B", "", 2), "[DONE]", "not json"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			sim.Script(PipelineLLM, livepeertest.Step{Events: events, EventInterval: 20 * time.Millisecond, Truncate: true})
			c := stClient(t, sim.URL(), nil)
			s := stOpen(t, context.Background(), c, 0)
			evs, err := stDrain(s)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("end = %v, want io.EOF", err)
			}
			if len(evs) != len(events)-1-stBtoi(name == "[DONE]") {
				t.Fatalf("%d events: %q", len(evs), stContents(evs))
			}
			s.Close()
			if !sim.WaitDisconnects(1, 2*time.Second) {
				t.Error("the simulator did not see the stream closed before its trailing event")
			}
		})
	}
}

func stBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLLMStream_Truncated: the stream ends (cleanly, or by a cut connection) before
// the final event: the earlier events are delivered, then StreamTruncatedError with
// their count.
func TestLLMStream_Truncated(t *testing.T) {
	t.Parallel()
	for name, step := range map[string]livepeertest.Step{
		"clean EOF":    {Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, Truncate: true},
		"AbortStream":  {Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, AbortStream: true},
		"no events":    {Events: []string{}, Truncate: true},
		"AbortNoEvent": {Events: []string{}, AbortStream: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			sim.Script(PipelineLLM, step)
			c := stClient(t, sim.URL(), nil)
			evs, err := stDrain(stOpen(t, context.Background(), c, 0))
			var ste *StreamTruncatedError
			if !errors.As(err, &ste) || ste.Pipeline != PipelineLLM {
				t.Fatalf("end = %T %v, want *StreamTruncatedError", err, err)
			}
			if ste.Events != len(step.Events) || len(evs) != len(step.Events) {
				t.Errorf("delivered %d events, error counts %d, want %d", len(evs), ste.Events, len(step.Events))
			}
		})
	}
}

// TestLLMStream_ErrorEvent: the runner's mid-stream `data: {"error": ...}` (either
// shape) ends the stream with StreamEventError carrying the text.
func TestLLMStream_ErrorEvent(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ event, want string }{
		"runner string":  {`{"error": "GPU out of memory."}`, "GPU out of memory."},
		"gateway object": {`{"error": {"message": "Out of memory error. Try reducing max_tokens."}}`, "Out of memory error. Try reducing max_tokens."},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			sim.Script(PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), tc.event}, Truncate: true})
			c := stClient(t, sim.URL(), nil)
			evs, err := stDrain(stOpen(t, context.Background(), c, 0))
			var see *StreamEventError
			if !errors.As(err, &see) {
				t.Fatalf("end = %T %v, want *StreamEventError", err, err)
			}
			if see.Message != tc.want || see.Pipeline != PipelineLLM {
				t.Errorf("StreamEventError = %+v, want message %q", see, tc.want)
			}
			stWantContents(t, evs, "a")
		})
	}
}

// ---- timing ----

// stTimingAttempts is how many times a timing measurement is repeated before it counts
// as failed: the assertion holds on an idle machine every time, and a loaded CI box
// (other test binaries, fuzzers) can stall any process for 100 ms now and then. A
// client that buffers fails every attempt.
const stTimingAttempts = 3

// TestLLMStream_PacedEventsDeliveredAsSent: a gateway pacing 5 events 50 ms apart (it
// records when each left it); each event comes out of Next within 20 ms of being sent,
// the gaps between them are the gateway's, and the first is out long before the last
// is sent: the client does not buffer.
func TestLLMStream_PacedEventsDeliveredAsSent(t *testing.T) {
	t.Parallel()
	var problems []string
	for attempt := 1; attempt <= stTimingAttempts; attempt++ {
		if problems = stPacedOnce(t); len(problems) == 0 {
			return
		}
		t.Logf("attempt %d: %s", attempt, strings.Join(problems, "; "))
	}
	t.Errorf("events were not delivered as sent in %d attempts; last: %s", stTimingAttempts, strings.Join(problems, "; "))
}

func stPacedOnce(t *testing.T) (problems []string) {
	const interval, slack = 50 * time.Millisecond, 20 * time.Millisecond
	events := []string{stEvent("Hel", "", 1), stEvent("lo", "", 2), stEvent(",", "", 3), stEvent(" world", "", 4), stEvent("", "stop", 4)}
	var mu sync.Mutex
	var sent []time.Time
	c := stRawClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i, ev := range events {
			if i > 0 {
				select {
				case <-time.After(interval):
				case <-r.Context().Done():
					return
				}
			}
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			_, _ = io.WriteString(w, "data: "+ev+"\n\n")
			_ = rc.Flush()
		}
	}, nil)
	s, err := c.LLMStream(context.Background(), stLLMRequest(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []time.Time
	for {
		_, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, time.Now())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(events) || len(sent) != len(events) {
		t.Fatalf("received %d events, sent %d, want %d", len(got), len(sent), len(events))
	}
	for i := range got {
		if lag := got[i].Sub(sent[i]); lag > slack {
			problems = append(problems, fmt.Sprintf("event %d out of Next %v after it was sent", i, lag))
		}
		if i > 0 {
			if gap := got[i].Sub(got[i-1]); gap < interval-slack || gap > interval+slack {
				problems = append(problems, fmt.Sprintf("gap before event %d = %v, want %v ± %v", i, gap, interval, slack))
			}
		}
	}
	last := len(events) - 1
	if ahead := sent[last].Sub(got[0]); ahead < time.Duration(last)*interval-slack {
		problems = append(problems, fmt.Sprintf("first event out only %v before the last was sent", ahead))
	}
	return problems
}

// TestLLMStream_IdleTimeout: a gap after the first event longer than the idle timeout
// ends the stream promptly with StreamIdleError and closes the upstream connection.
func TestLLMStream_IdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 100 * time.Millisecond
	sim := stSim(t, livepeertest.Config{})
	sim.Script(PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: 2 * time.Second})
	c := stClient(t, sim.URL(), nil)
	s := stOpen(t, context.Background(), c, idle)
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	_, err := s.Next()
	waited := time.Since(first)
	var sie *StreamIdleError
	if !errors.As(err, &sie) || sie.Idle != idle || sie.Pipeline != PipelineLLM {
		t.Fatalf("err = %T %v, want *StreamIdleError{Idle: %v}", err, err, idle)
	}
	if waited < idle || waited > idle+300*time.Millisecond {
		t.Errorf("idle error after %v, want about %v", waited, idle)
	}
	s.Close()
	if !sim.WaitDisconnects(1, time.Second) {
		t.Error("upstream request not closed after the idle timeout")
	}
}

// TestLLMStream_IdleTimeoutNotBeforeFirstEvent: before the first event only the call's
// deadline applies (a model warming up; Studio buffers the whole stream and sends it at
// the end, UPSTREAM.md §3.7).
func TestLLMStream_IdleTimeoutNotBeforeFirstEvent(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	sim.Script(PipelineLLM, livepeertest.Step{Delay: 300 * time.Millisecond, Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}})
	c := stClient(t, sim.URL(), nil)
	evs, err := stDrain(stOpen(t, context.Background(), c, 50*time.Millisecond))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end = %v, want io.EOF", err)
	}
	stWantContents(t, evs, "a", "b", "")

	// Same, with the delay after the headers (first event late, the rest in a burst).
	c2 := stRawClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-time.After(300 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: "+stEvent("late", "", 1)+"\n\ndata: "+stEvent("", "stop", 1)+"\n\n")
	}, nil)
	evs, err = stDrain(stOpen(t, context.Background(), c2, 50*time.Millisecond))
	if !errors.Is(err, io.EOF) {
		t.Fatalf("late first event: end = %v, want io.EOF", err)
	}
	stWantContents(t, evs, "late", "")
}

// TestLLMStream_CallerCancelReachesUpstream: cancelling the caller's context mid-stream
// ends Next with context.Canceled and the simulator sees the disconnect within 100 ms.
func TestLLMStream_CallerCancelReachesUpstream(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	events := make([]string, 20)
	for i := range events {
		events[i] = stEvent("w", "", int32(i+1))
	}
	sim.Script(PipelineLLM, livepeertest.Step{Events: events, EventInterval: 50 * time.Millisecond})
	c := stClient(t, sim.URL(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := stOpen(t, ctx, c, 0)
	for range 2 {
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
	}
	cancelled := time.Now()
	cancel()
	if _, err := stDrain(s); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel = %T %v, want context.Canceled", err, err)
	}
	if !sim.WaitDisconnects(1, 2*time.Second) {
		t.Fatal("simulator never saw the client go away")
	}
	if lag := sim.LastDisconnect().Sub(cancelled); lag > 100*time.Millisecond {
		t.Errorf("simulator saw the disconnect %v after the cancel, want ≤ 100ms", lag)
	}
}

// TestLLMStream_CallerDeadlineMidStream: the caller's deadline passing mid-stream ends
// Next with context.DeadlineExceeded (not a truncation) and cuts the upstream request.
func TestLLMStream_CallerDeadlineMidStream(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	sim.Script(PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: 2 * time.Second})
	c := stClient(t, sim.URL(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	evs, err := stDrain(stOpen(t, ctx, c, time.Minute))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("end = %T %v, want context.DeadlineExceeded", err, err)
	}
	stWantContents(t, evs, "a")
	if !sim.WaitDisconnects(1, time.Second) {
		t.Error("upstream request not cut at the deadline")
	}
}

// TestLLMStream_PipelineTimeoutMidStream: without a caller deadline the per-pipeline
// timeout bounds the whole stream; when it expires mid-stream that is an upstream
// timeout (TransportError{Timeout: true} → UPSTREAM_TIMEOUT), not a truncated stream.
func TestLLMStream_PipelineTimeoutMidStream(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	events := make([]string, 10)
	for i := range events {
		events[i] = stEvent("w", "", int32(i+1))
	}
	sim.Script(PipelineLLM, livepeertest.Step{Events: events, EventInterval: 60 * time.Millisecond})
	c := stClient(t, sim.URL(), func(c *Config) { c.Timeouts = map[string]time.Duration{PipelineLLM: 200 * time.Millisecond} })
	start := time.Now()
	evs, err := stDrain(stOpen(t, context.Background(), c, time.Minute))
	if d := time.Since(start); d > time.Second {
		t.Errorf("stream ran %v past a 200ms pipeline timeout", d)
	}
	if len(evs) == 0 || len(evs) >= len(events) {
		t.Errorf("%d events before the timeout", len(evs))
	}
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout {
		t.Fatalf("end = %T %v, want *TransportError{Timeout: true}", err, err)
	}
}

// TestLLMStream_CloseCutsUpstream: Close mid-stream closes the connection at once.
func TestLLMStream_CloseCutsUpstream(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	sim.Script(PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), stEvent("b", "", 2)}, EventInterval: 5 * time.Second})
	c := stClient(t, sim.URL(), nil)
	s, err := c.LLMStream(context.Background(), stLLMRequest(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	s.Close()
	if !sim.WaitDisconnects(1, 2*time.Second) {
		t.Fatal("no disconnect after Close")
	}
	if lag := sim.LastDisconnect().Sub(closed); lag > 100*time.Millisecond {
		t.Errorf("disconnect seen %v after Close", lag)
	}
}

// ---- non-SSE answers ----

// TestLLMStream_JSONAnswerIsOneFinalEvent: a stream request answered with
// application/json (Studio buffers, or a gateway ignoring stream=true) yields one event
// whose delta is the whole message and whose finish_reason is set, then io.EOF.
func TestLLMStream_JSONAnswerIsOneFinalEvent(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ finish, want string }{
		"with finish_reason":    {"length", "length"},
		"without finish_reason": {"", "stop"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			body := `{"id":"chatcmpl-1","model":"m","created":1735689600,"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7},` +
				`"choices":[{"index":0,"finish_reason":"` + tc.finish + `","message":{"role":"assistant","content":"The whole answer."}}]}`
			sim.Script(PipelineLLM, livepeertest.Step{Body: body})
			c := stClient(t, sim.URL(), nil)
			s := stOpen(t, context.Background(), c, 0)
			evs, err := stDrain(s)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("end = %v, want io.EOF", err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			ch := evs[0].Choices[0]
			if ch.Delta == nil || ch.Delta.Content != "The whole answer." || ch.Message != nil || ch.FinishReason != tc.want {
				t.Errorf("choice = %+v (delta %+v), want delta with the whole content and finish_reason %q", ch, ch.Delta, tc.want)
			}
			if evs[0].ID != "chatcmpl-1" || evs[0].Usage == nil || evs[0].Usage.TotalTokens != 7 {
				t.Errorf("event = %+v", evs[0])
			}
		})
	}
}

// TestLLMStream_UnexpectedContentType: a 2xx that is neither SSE nor JSON fails at
// once with BadResponseError.
func TestLLMStream_UnexpectedContentType(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	sim.Script(PipelineLLM, livepeertest.Step{Body: "<html>hello</html>", ContentType: "text/html"})
	c := stClient(t, sim.URL(), nil)
	s, err := c.LLMStream(context.Background(), stLLMRequest(), 0)
	var bre *BadResponseError
	if !errors.As(err, &bre) || !strings.Contains(bre.Reason, "text/html") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("err = %T %v, want *BadResponseError naming text/html", err, err)
	}
}

// TestLLMStream_SendsStreamTrue: the request says stream=true and accepts
// text/event-stream, whatever the caller's struct said.
func TestLLMStream_SendsStreamTrue(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	c := stClient(t, sim.URL(), nil)
	evs, err := stDrain(stOpen(t, context.Background(), c, 0))
	if !errors.Is(err, io.EOF) || len(evs) < 2 {
		t.Fatalf("normal stream: %d events, end %v", len(evs), err)
	}
	reqs := sim.Requests()
	if len(reqs) != 1 || reqs[0].JSON["stream"] != true || reqs[0].Header.Get("Accept") != "text/event-stream" {
		t.Fatalf("request = %+v", reqs)
	}
}
