package livepeer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// This file is one request's way to the gateway: the attempts, the retry decision (which
// reads the failure's Kind), backoff, and decoding of the answer.

// post sends one pipeline request, retrying where safe, and decodes a 2xx JSON answer
// into out (which must have a check method).
func (c *Client) post(ctx context.Context, pipeline string, b *body, out checker) error {
	resp, ctx, cancel, err := c.send(ctx, pipeline, b, "application/json")
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	// Reading the body is upstream time too: the gateway may send it slowly.
	start := time.Now()
	err = c.decode(ctx, pipeline, resp, out)
	TraceFrom(ctx).addUpstream(time.Since(start))
	return err
}

type checker interface{ check() error }

// send performs the attempts of one request and returns the first usable (2xx) response,
// the context its body must be read under (it carries the per-pipeline timeout) and a
// cancel func that releases it, or an error. The retry loop lives here and only here.
func (c *Client) send(ctx context.Context, pipeline string, b *body, accept string) (*http.Response, context.Context, context.CancelFunc, error) {
	ci := TraceFrom(ctx)
	if ci != nil {
		ci.Pipeline = pipeline
	}
	// Without a caller deadline, bound the call by the pipeline's timeout, and report
	// its expiry as an upstream timeout rather than the caller's deadline.
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeoutCause(ctx, c.timeouts[pipeline], errPipelineTimeout)
	}
	endpoint := c.baseStr + "/" + pipeline
	refreshed := false
	for attempt := 1; ; attempt++ {
		key := c.keys.Key()
		resp, wrote, err := c.attempt(ctx, pipeline, attempt, endpoint, key, b, accept, ci)
		if err != nil {
			if ctx.Err() != nil {
				cancel()
				return nil, nil, nil, ctxCause(ctx, pipeline)
			}
			// net/http quotes what a broken gateway sent (a malformed status or header
			// line) in its errors, so the error's text is redacted like a body.
			terr := &TransportError{Pipeline: pipeline, Err: err, AfterRequest: wrote, redactor: newKeyRedactor(key, c.keys.Key())}
			if attempt < c.maxAttempts && isConnectError(err) && c.backoff(ctx, pipeline, attempt, 0, "connect error: "+terr.detail()) {
				continue
			}
			cancel()
			return nil, nil, nil, terr
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, ctx, cancel, nil
		}
		serr := c.statusError(pipeline, resp, key)
		serr.KeyFingerprint = key.Fingerprint()
		if serr.StatusCode == http.StatusUnauthorized && !refreshed {
			// The key may have been rotated while this request was out (the watch
			// already swapped it) or before the watch noticed (re-read the file): if
			// the current key differs from the one rejected, retry once with it. The
			// retry is not counted as an attempt.
			refreshed = true
			current := c.keys.Key()
			if r, ok := c.keys.(Refresher); ok && current.Equal(key) {
				current = r.Refresh()
			}
			if !current.Equal(key) && !current.IsZero() {
				attempt--
				continue
			}
		}
		if attempt < c.maxAttempts && serr.retryable() && fitsDeadline(ctx, serr.RetryAfter) && c.backoff(ctx, pipeline, attempt, serr.RetryAfter, statusText(serr.StatusCode)) {
			continue
		}
		cancel()
		return nil, nil, nil, serr
	}
}

var errPipelineTimeout = errors.New("pipeline timeout")

// attempt sends one request. wrote reports whether the whole request was written before
// a failure: a gateway that then closes the connection without answering did receive it
// (UPSTREAM §12.2), which is not the same as not reaching it.
func (c *Client) attempt(ctx context.Context, pipeline string, n int, endpoint string, key APIKey, b *body, accept string, ci *Trace) (resp *http.Response, wrote bool, err error) {
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { written.Store(info.Err == nil) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, b.open())
	if err != nil {
		return nil, false, err
	}
	req.ContentLength = b.size
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(b.open()), nil }
	req.Header["Content-Type"] = []string{b.contentType}
	req.Header["Accept"] = []string{accept}
	req.Header["User-Agent"] = []string{c.userAgent}
	req.Header["Authorization"] = []string{key.authorization()}
	start := time.Now()
	c.obs.AttemptStarted()
	resp, err = c.http.Do(req)
	elapsed := time.Since(start)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	c.obs.AttemptDone(pipeline, n, status, elapsed)
	if ci != nil {
		ci.Attempts++
		ci.KeyFingerprint = key.Fingerprint()
		ci.upstream.Add(int64(elapsed))
		if resp != nil {
			ci.Status = resp.StatusCode
		}
	}
	return resp, written.Load(), err
}

func fitsDeadline(ctx context.Context, wait time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > wait
}

// backoff sleeps before the next attempt: at least retryAfter, else jittered exponential
// from 100 ms. It returns false if the context ends first.
// Each retry is logged with what failed; the call's own log line has the total.
func (c *Client) backoff(ctx context.Context, pipeline string, attempt int, retryAfter time.Duration, outcome string) bool {
	d := retryAfter
	if d <= 0 {
		base := 100 * time.Millisecond << (attempt - 1)
		base = min(base, 2*time.Second)
		d = base/2 + rand.N(base/2+1)
	}
	if !fitsDeadline(ctx, d) {
		return false
	}
	requestID := ""
	if ci := TraceFrom(ctx); ci != nil {
		requestID = ci.RequestID
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "upstream attempt failed; retrying",
		slog.String("requestId", requestID), slog.String("pipeline", pipeline),
		slog.Int("attempt", attempt), slog.String("outcome", outcome),
		slog.Float64("backoffMs", float64(d.Microseconds())/1000))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isConnectError reports errors where the request certainly never reached the gateway,
// so retrying cannot run a generation twice.
func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// ctxCause reports why ctx ended: genservice's own per-pipeline timeout becomes a
// TransportError{Timeout: true}; the caller's deadline or cancellation its context error.
func ctxCause(ctx context.Context, pipeline string) error {
	if errors.Is(context.Cause(ctx), errPipelineTimeout) {
		return &TransportError{Pipeline: pipeline, Timeout: true, Err: errPipelineTimeout}
	}
	return ctxError(ctx)
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	// A gRPC client resets the stream when its own deadline passes, a moment before the
	// server's copy of the deadline fires; the server then sees a cancellation. Call it
	// what it is, so logs and metrics count deadlines as deadlines.
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 20*time.Millisecond {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

func (c *Client) statusError(pipeline string, resp *http.Response, key APIKey) *StatusError {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// A gateway or proxy may echo the Authorization header back, escaped or cut: the key
	// (and any long fragment of it) is scrubbed from the decoded, sanitized text before
	// anything of the body reaches a status or a log. The current key is scrubbed too, in
	// case it changed while this request was out.
	msg, violations := parseErrorBody(raw, key, c.keys.Key())
	e := NewStatusError(pipeline, resp.StatusCode, msg, violations)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.RetryAfter, e.HasRetryAfter = ParseRetryAfter(ra, time.Now())
	}
	return e
}

func (c *Client) decode(ctx context.Context, pipeline string, resp *http.Response, out checker) error {
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		if mt == "" {
			mt = "no content type"
		}
		return &BadResponseError{Pipeline: pipeline, Reason: "expected application/json, got " + mt}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		if ctx.Err() != nil {
			return ctxCause(ctx, pipeline)
		}
		return &TransportError{Pipeline: pipeline, Err: err, AfterRequest: true}
	}
	switch {
	case int64(len(data)) > c.maxResp:
		return &BadResponseError{Pipeline: pipeline, Reason: fmt.Sprintf("body larger than %d bytes", c.maxResp)}
	case len(bytes.TrimSpace(data)) == 0:
		return &BadResponseError{Pipeline: pipeline, Reason: "empty body"}
	}
	if err := json.Unmarshal(data, out); err != nil {
		// encoding/json quotes number literals of the body in its errors.
		return &BadResponseError{Pipeline: pipeline, Reason: "invalid JSON: " + newKeyRedactor(c.keys.Key()).text(Sanitize(err.Error()))}
	}
	if err := out.check(); err != nil {
		return &BadResponseError{Pipeline: pipeline, Reason: err.Error()}
	}
	return nil
}
