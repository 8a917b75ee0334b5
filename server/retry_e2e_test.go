package server_test

// End-to-end tests of retries and deadlines: which upstream failures genservice
// retries and how often (counted by the simulator and by the call's JSON log line),
// the RetryInfo callers get from Retry-After, backoff jitter, no retry once a stream
// started, and deadlines (the caller's, or the per-pipeline default) cancelling the
// upstream request.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

func stT2I() *generationv1.TextToImageRequest {
	return &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"}
}

// stFail is a scripted upstream failure, with a Retry-After header if retryAfter != "".
func stFail(status int, retryAfter string) livepeertest.Step {
	st := livepeertest.Step{Status: status, Body: livepeertest.StudioError("failure " + strconv.Itoa(status))}
	if retryAfter != "" {
		st.Header = http.Header{"Retry-After": {retryAfter}}
	}
	return st
}

// stAttempts returns the attempts field of the call's log line.
func stAttempts(t *testing.T, h *harness, id string) int {
	t.Helper()
	line := h.waitCallLine(t, id)
	a, ok := line.num("attempts")
	if !ok {
		t.Fatalf("call line has no attempts: %v", line)
	}
	return int(a)
}

// stRetryDelay returns the RetryInfo delay of the status, failing if there is none.
func stRetryDelay(t *testing.T, err error, code codes.Code, reason string) time.Duration {
	t.Helper()
	st := requireStatus(t, err, code, reason)
	ri, ok := detail[*errdetails.RetryInfo](st)
	if !ok {
		t.Fatalf("status %v/%s has no RetryInfo (details %v)", code, reason, st.Details())
	}
	return ri.GetRetryDelay().AsDuration()
}

// stObserver records upstream attempts with their times.
type stObserver struct {
	mu     sync.Mutex
	starts []time.Time
	dones  []time.Time
}

func (o *stObserver) AttemptStarted() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.starts = append(o.starts, time.Now())
}

func (o *stObserver) AttemptDone(string, int, int, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dones = append(o.dones, time.Now())
}

// waits returns, for each retry, the time from the failed attempt's end to the next
// attempt's start, and resets.
func (o *stObserver) waits() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(o.starts) && i <= len(o.dones); i++ {
		out = append(out, o.starts[i].Sub(o.dones[i-1]))
	}
	o.starts, o.dones = nil, nil
	return out
}

// ---- retryable failures ----

// TestE2E_Retry_RetryableStatuses: 502, 503, 504 and 429 with Retry-After: 1 are
// retried; with the default MaxAttempts (2) the simulator sees exactly 2 requests, the
// caller gets the mapped status of the last one, and the call's log line says
// attempts=2. The 429 retry waits the Retry-After second, and its final status still
// carries RetryInfo.
func TestE2E_Retry_RetryableStatuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status     int
		retryAfter string
		code       codes.Code
		reason     string
		minElapsed time.Duration
	}{
		{502, "", codes.Unavailable, "UPSTREAM_UNAVAILABLE", 50 * time.Millisecond},
		{503, "", codes.Unavailable, "UPSTREAM_UNAVAILABLE", 50 * time.Millisecond},
		{504, "", codes.Unavailable, "UPSTREAM_TIMEOUT", 50 * time.Millisecond},
		{429, "1", codes.ResourceExhausted, "UPSTREAM_RATE_LIMITED", time.Second},
	} {
		t.Run(fmt.Sprintf("%d%s", tc.status, tc.retryAfter), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.sim.Script(livepeer.PipelineTextToImage, stFail(tc.status, tc.retryAfter), stFail(tc.status, tc.retryAfter), stFail(tc.status, tc.retryAfter))
			id := rid(t, "r")
			start := time.Now()
			_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), stT2I())
			elapsed := time.Since(start)
			st := requireStatus(t, err, tc.code, tc.reason)
			requireMeta(t, st, map[string]string{"upstreamStatus": strconv.Itoa(tc.status)})
			if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 2 {
				t.Errorf("hits = %d, want 2", n)
			}
			if a := stAttempts(t, h, id); a != 2 {
				t.Errorf("log attempts = %d, want 2", a)
			}
			if elapsed < tc.minElapsed {
				t.Errorf("call took %v, want at least the %v wait before the retry", elapsed, tc.minElapsed)
			}
			if tc.retryAfter != "" {
				if d := stRetryDelay(t, err, tc.code, tc.reason); d != time.Second {
					t.Errorf("RetryInfo delay = %v, want 1s", d)
				}
			}
		})
	}
}

// TestE2E_Retry_ConnectError: a gateway port nobody listens on is retried: the log
// line's attempts is 2 by default, 3 with MaxAttempts 3, 1 with MaxAttempts 1; the
// caller gets UNAVAILABLE / UPSTREAM_UNREACHABLE.
func TestE2E_Retry_ConnectError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ max, want int }{{0, 2}, {3, 3}, {1, 1}} {
		t.Run("MaxAttempts"+strconv.Itoa(tc.max), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withGatewayURL(closedPortURL(t)), withUpstream(func(c *livepeer.Config) { c.MaxAttempts = tc.max }))
			id := rid(t, "c")
			_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), stT2I())
			requireStatus(t, err, codes.Unavailable, "UPSTREAM_UNREACHABLE")
			if a := stAttempts(t, h, id); a != tc.want {
				t.Errorf("log attempts = %d, want %d", a, tc.want)
			}
		})
	}
}

// TestE2E_Retry_MaxAttempts: with MaxAttempts 3 a persistent 503 costs 3 requests;
// with MaxAttempts 1, one.
func TestE2E_Retry_MaxAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ max, want int }{{3, 3}, {1, 1}} {
		t.Run("MaxAttempts"+strconv.Itoa(tc.max), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withUpstream(func(c *livepeer.Config) { c.MaxAttempts = tc.max }))
			f := stFail(503, "")
			h.sim.Script(livepeer.PipelineTextToImage, f, f, f, f)
			id := rid(t, "m")
			_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), stT2I())
			requireStatus(t, err, codes.Unavailable, "UPSTREAM_UNAVAILABLE")
			if n := h.sim.Hits(livepeer.PipelineTextToImage); n != tc.want {
				t.Errorf("hits = %d, want %d", n, tc.want)
			}
			if a := stAttempts(t, h, id); a != tc.want {
				t.Errorf("log attempts = %d, want %d", a, tc.want)
			}
		})
	}
}

// ---- non-retryable failures ----

// TestE2E_Retry_NonRetryableStatuses: 500 (the generation may have run and been paid
// for), 400, 401, 403, 404, 422 and a 429 without Retry-After cost exactly one request.
func TestE2E_Retry_NonRetryableStatuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		status int
		code   codes.Code
		reason string
	}{
		{500, codes.Internal, "UPSTREAM_INTERNAL_ERROR"},
		{400, codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
		{401, codes.Unauthenticated, "UPSTREAM_API_KEY_REJECTED"},
		{403, codes.PermissionDenied, "UPSTREAM_API_KEY_FORBIDDEN"},
		{404, codes.Unimplemented, "UPSTREAM_PIPELINE_UNSUPPORTED"},
		{422, codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
		{429, codes.ResourceExhausted, "UPSTREAM_RATE_LIMITED"},
	} {
		t.Run(strconv.Itoa(tc.status), func(t *testing.T) {
			h.sim.Reset()
			h.sim.Script(livepeer.PipelineTextToImage, stFail(tc.status, ""), stFail(tc.status, ""))
			id := rid(t, "n")
			_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), stT2I())
			st := requireStatus(t, err, tc.code, tc.reason)
			if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
				t.Errorf("hits = %d, want 1", n)
			}
			if a := stAttempts(t, h, id); a != 1 {
				t.Errorf("log attempts = %d, want 1", a)
			}
			if _, ok := detail[*errdetails.RetryInfo](st); ok {
				t.Errorf("RetryInfo on a %d without Retry-After", tc.status)
			}
		})
	}
}

// ---- Retry-After ----

// TestE2E_Retry_RetryAfterGivesRetryInfo: a final 429's Retry-After, in seconds or as
// an HTTP date a couple of seconds ahead, becomes RetryInfo.retry_delay.
func TestE2E_Retry_RetryAfterGivesRetryInfo(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withUpstream(func(c *livepeer.Config) { c.MaxAttempts = 1 }))
	for _, tc := range []struct {
		name   string
		header func() string
		lo, hi time.Duration
	}{
		{"seconds", func() string { return "2" }, 2 * time.Second, 2 * time.Second},
		{"HTTP date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.sim.Reset()
			h.sim.Script(livepeer.PipelineTextToImage, stFail(429, tc.header()))
			_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stT2I())
			if d := stRetryDelay(t, err, codes.ResourceExhausted, "UPSTREAM_RATE_LIMITED"); d < tc.lo || d > tc.hi {
				t.Errorf("RetryInfo delay = %v, want in [%v, %v]", d, tc.lo, tc.hi)
			}
			if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
				t.Errorf("hits = %d, want 1", n)
			}
		})
	}
}

// TestE2E_Retry_RetryAfterBeyondDeadline: the caller's deadline (500 ms) is shorter
// than Retry-After (1 s): no retry, no waiting, RESOURCE_EXHAUSTED with RetryInfo at
// once, one request.
func TestE2E_Retry_RetryAfterBeyondDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withUpstream(func(c *livepeer.Config) { c.MaxAttempts = 3 }))
	h.sim.Script(livepeer.PipelineTextToImage, stFail(429, "1"), stFail(429, "1"))
	start := time.Now()
	_, err := h.client.TextToImage(ctxTimeout(t, 500*time.Millisecond), stT2I())
	elapsed := time.Since(start)
	if d := stRetryDelay(t, err, codes.ResourceExhausted, "UPSTREAM_RATE_LIMITED"); d != time.Second {
		t.Errorf("RetryInfo delay = %v, want 1s", d)
	}
	if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
	if elapsed > 400*time.Millisecond {
		t.Errorf("call took %v: it waited for a retry that could not fit", elapsed)
	}
}

// ---- backoff ----

// TestE2E_Retry_BackoffJittered: the wait before the first retry is > 0 and < 250 ms
// (50-100 ms by design) and varies between calls (jitter).
func TestE2E_Retry_BackoffJittered(t *testing.T) {
	t.Parallel()
	obs := &stObserver{}
	h := newHarness(t, withUpstream(func(c *livepeer.Config) { c.Observer = obs }))
	var all []time.Duration
	for i := range 6 {
		h.sim.Script(livepeer.PipelineTextToImage, stFail(503, ""))
		if _, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stT2I()); err != nil {
			t.Fatalf("call %d: want success on the retry, got %v", i, err)
		}
		w := obs.waits()
		if len(w) != 1 {
			t.Fatalf("call %d: waits %v, want one retry", i, w)
		}
		all = append(all, w[0])
	}
	lo, hi := all[0], all[0]
	for _, w := range all {
		if w <= 0 || w >= 250*time.Millisecond {
			t.Errorf("wait before the first retry = %v, want in (0, 250ms)", w)
		}
		lo, hi = min(lo, w), max(hi, w)
	}
	if hi-lo < 2*time.Millisecond {
		t.Errorf("waits %v are all the same: no jitter", all)
	}
}

// ---- streams ----

// TestE2E_Retry_NeverAfterStreamStarted: once the gateway answered 200 and started
// the stream, a truncation or cut connection is never retried (one request; events
// may already have reached the caller). A 503 before the stream is retried.
func TestE2E_Retry_NeverAfterStreamStarted(t *testing.T) {
	t.Parallel()
	for name, step := range map[string]livepeertest.Step{
		"truncated": {Events: []string{stEvent("a", "", 1)}, Truncate: true},
		"aborted":   {Events: []string{stEvent("a", "", 1)}, AbortStream: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withUpstream(func(c *livepeer.Config) { c.MaxAttempts = 3 }))
			h.sim.Script(livepeer.PipelineLLM, step, step)
			id := rid(t, "s")
			_, err := stRecvAll(stOpenStream(t, withRequestID(ctxTimeout(t, 10*time.Second), id), h))
			requireStatus(t, err, codes.Unavailable, "UPSTREAM_STREAM_TRUNCATED")
			if n := h.sim.Hits(livepeer.PipelineLLM); n != 1 {
				t.Errorf("hits = %d, want 1", n)
			}
			if a := stAttempts(t, h, id); a != 1 {
				t.Errorf("log attempts = %d, want 1", a)
			}
		})
	}
	t.Run("503 before the stream", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		h.sim.Script(livepeer.PipelineLLM, stFail(503, ""))
		id := rid(t, "s")
		msgs, err := stRecvAll(stOpenStream(t, withRequestID(ctxTimeout(t, 10*time.Second), id), h))
		if !errors.Is(err, io.EOF) || len(msgs) == 0 {
			t.Fatalf("%d messages, end %v; want the retried stream", len(msgs), err)
		}
		if n := h.sim.Hits(livepeer.PipelineLLM); n != 2 {
			t.Errorf("hits = %d, want 2", n)
		}
		if a := stAttempts(t, h, id); a != 2 {
			t.Errorf("log attempts = %d, want 2", a)
		}
	})
}

// ---- 9. deadlines ----

// TestE2E_Deadline_CallerDeadlineCancelsUpstream: the caller's deadline (200 ms) is
// shorter than the gateway's delay: DEADLINE_EXCEEDED, one request, and the simulator
// sees that request cancelled soon after the deadline.
func TestE2E_Deadline_CallerDeadlineCancelsUpstream(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: 5 * time.Second})
	start := time.Now()
	_, err := h.client.TextToImage(ctxTimeout(t, 200*time.Millisecond), stT2I())
	requireStatus(t, err, codes.DeadlineExceeded, "")
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Fatal("the upstream request was not cancelled")
	}
	if at := h.sim.LastDisconnect().Sub(start); at > time.Second {
		t.Errorf("upstream cancelled %v after the call started (deadline 200ms)", at)
	}
	if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}

// TestE2E_Deadline_PipelineTimeoutWithoutCallerDeadline: no caller deadline and
// livepeer.Config.Timeouts{"text-to-image": 200ms}: UNAVAILABLE / UPSTREAM_TIMEOUT
// after about 200 ms, the upstream request cancelled, not retried.
func TestE2E_Deadline_PipelineTimeoutWithoutCallerDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withUpstream(func(c *livepeer.Config) {
		c.Timeouts = map[string]time.Duration{livepeer.PipelineTextToImage: 200 * time.Millisecond}
	}))
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: 5 * time.Second}, livepeertest.Step{Delay: 5 * time.Second})
	ctx, cancel := stNoDeadline(t, 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := h.client.TextToImage(ctx, stT2I())
	elapsed := time.Since(start)
	requireStatus(t, err, codes.Unavailable, "UPSTREAM_TIMEOUT")
	if elapsed < 200*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("call took %v, want about the 200ms pipeline timeout", elapsed)
	}
	if !h.sim.WaitDisconnects(1, 2*time.Second) {
		t.Error("the upstream request was not cancelled")
	}
	if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}
