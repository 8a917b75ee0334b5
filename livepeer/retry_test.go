package livepeer

// Tests of the one retry loop (Client.send): which failures are retried, how often,
// how long it waits, and that nothing is retried once a stream has started. Attempts
// are counted twice: by the simulator (Hits) and by an Observer.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

// stObserver records attempts with their times.
type stObserver struct {
	mu     sync.Mutex
	starts []time.Time
	dones  []stAttempt
}

type stAttempt struct {
	n, status int
	at        time.Time
}

func (o *stObserver) AttemptStarted() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.starts = append(o.starts, time.Now())
}

func (o *stObserver) AttemptDone(_ string, n, status int, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dones = append(o.dones, stAttempt{n, status, time.Now()})
}

func (o *stObserver) attempts() []stAttempt {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]stAttempt(nil), o.dones...)
}

// gaps returns the wait before each retry: from an attempt's end to the next start.
func (o *stObserver) gaps() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(o.starts) && i <= len(o.dones); i++ {
		out = append(out, o.starts[i].Sub(o.dones[i-1].at))
	}
	return out
}

func (o *stObserver) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.starts, o.dones = nil, nil
}

func stFail(status int, retryAfter string) livepeertest.Step {
	st := livepeertest.Step{Status: status, Body: livepeertest.GatewayError("busy " + strconv.Itoa(status))}
	if retryAfter != "" {
		st.Header = http.Header{"Retry-After": {retryAfter}}
	}
	return st
}

func stT2I() *TextToImageParams {
	return &TextToImageParams{ModelID: DefaultModels[PipelineTextToImage], Prompt: "a lighthouse"}
}

// TestRetry_RetryableStatusesRetriedOnce: 502, 503, 504 and 429 with a Retry-After
// that fits are retried, with the default MaxAttempts 2 exactly once; a 429's
// Retry-After is honoured as the wait.
func TestRetry_RetryableStatusesRetriedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status     int
		retryAfter string
		minGap     time.Duration
	}{
		{http.StatusBadGateway, "", 50 * time.Millisecond},
		{http.StatusServiceUnavailable, "", 50 * time.Millisecond},
		{http.StatusGatewayTimeout, "", 50 * time.Millisecond},
		{http.StatusTooManyRequests, "1", time.Second},
	} {
		t.Run(fmt.Sprintf("%d%s", tc.status, tc.retryAfter), func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			obs := &stObserver{}
			c := stClient(t, sim.URL(), func(c *Config) { c.Observer = obs })
			sim.Script(PipelineTextToImage, stFail(tc.status, tc.retryAfter), stFail(tc.status, tc.retryAfter), stFail(tc.status, tc.retryAfter))
			ci := &Trace{}
			_, err := c.TextToImage(WithTrace(context.Background(), ci), stT2I())
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status {
				t.Fatalf("err = %T %v, want StatusError %d", err, err, tc.status)
			}
			if n := sim.Hits(PipelineTextToImage); n != 2 {
				t.Errorf("hits = %d, want 2", n)
			}
			if ci.Attempts != 2 || ci.Status != tc.status {
				t.Errorf("CallInfo attempts %d status %d", ci.Attempts, ci.Status)
			}
			gaps := obs.gaps()
			if len(gaps) != 1 || gaps[0] < tc.minGap {
				t.Errorf("waits between attempts = %v, want one of at least %v", gaps, tc.minGap)
			}
		})
	}
}

// TestRetry_MaxAttempts: MaxAttempts 3 makes 3 attempts with exponentially growing
// jittered waits (50-100 ms, then 100-200 ms); MaxAttempts 1 makes one.
func TestRetry_MaxAttempts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ max, want int }{{0, 2}, {1, 1}, {2, 2}, {3, 3}} {
		t.Run("MaxAttempts"+strconv.Itoa(tc.max), func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			obs := &stObserver{}
			c := stClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = tc.max; c.Observer = obs })
			fail := stFail(http.StatusServiceUnavailable, "")
			sim.Script(PipelineTextToImage, fail, fail, fail, fail)
			if _, err := c.TextToImage(context.Background(), stT2I()); err == nil {
				t.Fatal("want an error")
			}
			if n := sim.Hits(PipelineTextToImage); n != tc.want {
				t.Errorf("hits = %d, want %d", n, tc.want)
			}
			if n := len(obs.attempts()); n != tc.want {
				t.Errorf("observed %d attempts, want %d", n, tc.want)
			}
			for i, g := range obs.gaps() {
				lo := 50 * time.Millisecond << i
				if g < lo-time.Millisecond || g > 2*lo+200*time.Millisecond {
					t.Errorf("wait before retry %d = %v, want in [%v, %v] plus scheduling", i+1, g, lo, 2*lo)
				}
			}
		})
	}
}

// TestRetry_ConnectErrorRetried: a refused connection (the request certainly never
// reached the gateway) is retried up to MaxAttempts.
func TestRetry_ConnectErrorRetried(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ max, want int }{{0, 2}, {1, 1}, {3, 3}} {
		obs := &stObserver{}
		c := stClient(t, "http://"+addr+"/api/beta/generate", func(c *Config) { c.MaxAttempts = tc.max; c.Observer = obs })
		ci := &Trace{}
		_, err := c.TextToImage(WithTrace(context.Background(), ci), stT2I())
		var te *TransportError
		if !errors.As(err, &te) || te.Timeout {
			t.Fatalf("MaxAttempts %d: err = %T %v, want a connect TransportError", tc.max, err, err)
		}
		got := obs.attempts()
		if len(got) != tc.want || ci.Attempts != tc.want {
			t.Errorf("MaxAttempts %d: %d attempts observed, CallInfo %d; want %d", tc.max, len(got), ci.Attempts, tc.want)
		}
		for _, a := range got {
			if a.status != 0 {
				t.Errorf("attempt %d has status %d, want 0 (no response)", a.n, a.status)
			}
		}
	}
}

// TestRetry_NonRetryableStatusesOneAttempt: 500 (the generation may have run and been
// paid for), other 5xx, 4xx, and a 429 without a usable Retry-After are not retried.
func TestRetry_NonRetryableStatusesOneAttempt(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	obs := &stObserver{}
	c := stClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 3; c.Observer = obs })
	for _, tc := range []struct {
		status     int
		retryAfter string
	}{
		{500, ""}, {501, ""}, {505, ""}, {400, ""}, {401, ""}, {403, ""}, {404, ""}, {408, ""}, {413, ""}, {415, ""}, {422, ""},
		{429, ""}, {429, "soon"}, {429, "-1"}, {500, "1"},
	} {
		sim.Reset()
		obs.reset()
		sim.Script(PipelineTextToImage, stFail(tc.status, tc.retryAfter), stFail(tc.status, tc.retryAfter))
		_, err := c.TextToImage(context.Background(), stT2I())
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != tc.status {
			t.Errorf("%d %q: err = %T %v", tc.status, tc.retryAfter, err, err)
		}
		if n := sim.Hits(PipelineTextToImage); n != 1 || len(obs.attempts()) != 1 {
			t.Errorf("%d Retry-After %q: %d hits, %d attempts; want 1", tc.status, tc.retryAfter, n, len(obs.attempts()))
		}
	}
}

// TestRetry_DroppedConnectionNotRetried: a connection dropped after the request was
// sent is not a connect error: the gateway may be generating, so no retry.
func TestRetry_DroppedConnectionNotRetried(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	c := stClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 3 })
	sim.Script(PipelineTextToImage, livepeertest.Step{DropConnection: true}, livepeertest.Step{DropConnection: true})
	_, err := c.TextToImage(context.Background(), stT2I())
	var te *TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %T %v, want TransportError", err, err)
	}
	if n := sim.Hits(PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
}

// TestRetry_RetryAfterSecondsAndDate: Retry-After as delta-seconds and as an HTTP date
// a couple of seconds ahead both reach the StatusError.
func TestRetry_RetryAfterSecondsAndDate(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	c := stClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 1 })
	for _, tc := range []struct {
		header string
		lo, hi time.Duration
	}{
		{"2", 2 * time.Second, 2 * time.Second},
		{"120", 2 * time.Minute, 2 * time.Minute},
		{time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat), time.Second, 4 * time.Second},
		{time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat), 0, 0},
	} {
		sim.Script(PipelineTextToImage, stFail(http.StatusTooManyRequests, tc.header))
		_, err := c.TextToImage(context.Background(), stT2I())
		var se *StatusError
		if !errors.As(err, &se) || se.StatusCode != 429 {
			t.Fatalf("Retry-After %q: err = %v", tc.header, err)
		}
		if !se.HasRetryAfter || se.RetryAfter < tc.lo || se.RetryAfter > tc.hi {
			t.Errorf("Retry-After %q: RetryAfter = %v (has %v), want in [%v, %v]", tc.header, se.RetryAfter, se.HasRetryAfter, tc.lo, tc.hi)
		}
	}
}

// TestRetry_RetryAfterBeyondDeadlineNotRetried: when the wait the gateway asks for
// does not fit in the caller's deadline there is no retry and no waiting: the error
// comes back at once with the Retry-After for the caller.
func TestRetry_RetryAfterBeyondDeadlineNotRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status     int
		retryAfter string
		deadline   time.Duration
	}{
		{http.StatusTooManyRequests, "1", 500 * time.Millisecond},
		{http.StatusTooManyRequests, time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat), 2 * time.Second},
		{http.StatusServiceUnavailable, "5", 2 * time.Second},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.retryAfter), func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			c := stClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 3 })
			sim.Script(PipelineTextToImage, stFail(tc.status, tc.retryAfter), stFail(tc.status, tc.retryAfter))
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			start := time.Now()
			_, err := c.TextToImage(ctx, stT2I())
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.status || !se.HasRetryAfter {
				t.Fatalf("err = %T %v, want StatusError %d with Retry-After", err, err, tc.status)
			}
			if d := time.Since(start); d > tc.deadline*4/5 {
				t.Errorf("took %v: waited although the retry could not fit", d)
			}
			if n := sim.Hits(PipelineTextToImage); n != 1 {
				t.Errorf("hits = %d, want 1", n)
			}
		})
	}
}

// TestRetry_BackoffJittered: the first retry waits a jittered 50-100 ms: every wait is
// in range and they are not all the same.
func TestRetry_BackoffJittered(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	obs := &stObserver{}
	c := stClient(t, sim.URL(), func(c *Config) { c.Observer = obs })
	var gaps []time.Duration
	for range 8 {
		obs.reset()
		sim.Script(PipelineTextToImage, stFail(http.StatusServiceUnavailable, ""))
		if _, err := c.TextToImage(context.Background(), stT2I()); err != nil {
			t.Fatalf("retry should succeed: %v", err)
		}
		g := obs.gaps()
		if len(g) != 1 {
			t.Fatalf("gaps = %v, want one retry", g)
		}
		gaps = append(gaps, g[0])
	}
	lo, hi := gaps[0], gaps[0]
	for _, g := range gaps {
		if g <= 0 || g < 50*time.Millisecond-time.Millisecond || g >= 250*time.Millisecond {
			t.Errorf("first-retry wait %v, want in [50ms, 250ms)", g)
		}
		lo, hi = min(lo, g), max(hi, g)
	}
	if hi-lo < 2*time.Millisecond {
		t.Errorf("first-retry waits %v are all the same: no jitter", gaps)
	}
}

// TestRetry_NeverAfterStreamStarted: once the gateway answered 200 to a stream, a
// truncation, cut connection or error event ends the call: exactly one request. A 503
// before the stream started is retried like any call.
func TestRetry_NeverAfterStreamStarted(t *testing.T) {
	t.Parallel()
	ev := stEvent("a", "", 1)
	for name, step := range map[string]livepeertest.Step{
		"truncated":   {Events: []string{ev}, Truncate: true},
		"aborted":     {Events: []string{ev}, AbortStream: true},
		"error event": {Events: []string{ev, `{"error":"GPU out of memory."}`}, Truncate: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := stSim(t, livepeertest.Config{})
			c := stClient(t, sim.URL(), func(c *Config) { c.MaxAttempts = 3 })
			sim.Script(PipelineLLM, step, step)
			s, err := c.LLMStream(context.Background(), stLLMRequest(), 0)
			if err == nil {
				_, err = stDrain(s)
				s.Close()
			}
			if errors.Is(err, io.EOF) || err == nil {
				t.Fatalf("stream ended cleanly; want a failure")
			}
			if n := sim.Hits(PipelineLLM); n != 1 {
				t.Errorf("hits = %d, want 1 (err %v)", n, err)
			}
		})
	}

	t.Run("503 before the stream", func(t *testing.T) {
		t.Parallel()
		sim := stSim(t, livepeertest.Config{})
		c := stClient(t, sim.URL(), nil)
		sim.Script(PipelineLLM, stFail(http.StatusServiceUnavailable, ""))
		s := stOpen(t, context.Background(), c, 0)
		if _, err := stDrain(s); !errors.Is(err, io.EOF) {
			t.Fatalf("end = %v", err)
		}
		if n := sim.Hits(PipelineLLM); n != 2 {
			t.Errorf("hits = %d, want 2", n)
		}
	})
}

// TestRetry_TimeoutNotRetried: an attempt cut by the per-pipeline timeout is not
// retried (the time is spent) and is reported as a timeout.
func TestRetry_TimeoutNotRetried(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	c := stClient(t, sim.URL(), func(c *Config) {
		c.MaxAttempts = 3
		c.Timeouts = map[string]time.Duration{PipelineTextToImage: 150 * time.Millisecond}
	})
	sim.Script(PipelineTextToImage, livepeertest.Step{Delay: 5 * time.Second}, livepeertest.Step{Delay: 5 * time.Second})
	_, err := c.TextToImage(context.Background(), stT2I())
	var te *TransportError
	if !errors.As(err, &te) || !te.Timeout {
		t.Fatalf("err = %T %v, want TransportError{Timeout: true}", err, err)
	}
	if n := sim.Hits(PipelineTextToImage); n != 1 {
		t.Errorf("hits = %d, want 1", n)
	}
	if !sim.WaitDisconnects(1, time.Second) {
		t.Error("the timed-out request was not cancelled upstream")
	}
}
