package livepeer

import (
	"context"
	"sync/atomic"
	"time"
)

// Trace collects what happened upstream during one call to the client (one incoming
// call of whatever serves genservice), for that call's log line and metrics. Attach
// one with WithTrace; the client fills it in.
type Trace struct {
	// RequestID is the call's id, set by the caller, for log lines about the call.
	RequestID string
	Pipeline  string
	// Attempts made (0 when nothing was sent).
	Attempts int
	// Status is the last HTTP status received (0 when none).
	Status int
	// Upstream is the total time spent waiting on the gateway, in nanoseconds.
	upstream atomic.Int64
	// KeyFingerprint identifies the key the last attempt used.
	KeyFingerprint string
}

func (t *Trace) addUpstream(d time.Duration) {
	if t != nil {
		t.upstream.Add(int64(d))
	}
}

// UpstreamDuration returns the time spent in upstream requests.
func (t *Trace) UpstreamDuration() time.Duration { return time.Duration(t.upstream.Load()) }

type traceKey struct{}

// WithTrace returns a context whose upstream requests record into t.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFrom returns the Trace attached to ctx, or nil.
func TraceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	return t
}
