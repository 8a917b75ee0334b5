package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"genservice/metrics"
)

// tap runs on each new stream as soon as its headers arrive, before grpc reads,
// decompresses or decodes any message. A caller without a verified identity may only
// check health; everything else is refused here, so that such a caller cannot make
// genservice decompress and decode (say) a 30 MiB gzip bomb before the identity check.
// GenerationService calls are also admitted here (policy, rate and in-flight limits),
// so that a caller over its limits cannot make genservice read its messages either.
// A refusal is the same status with details the interceptors would give (grpc writes
// the details into the trailers).
func (s *Server) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if isHealthMethod(info.FullMethodName) {
		return ctx, nil
	}
	p, err := s.identify(ctx)
	if err != nil {
		refusal := s.errs.Unidentified(err, info.FullMethodName, s.mesh)
		// A peer that presented a CA-verified certificate is accountable and rare: its
		// refusal is always logged. Anonymous refusals are rate-limited.
		var ie *IdentityError
		s.refusals.record(ctx, info.FullMethodName, refusal, "", !errors.As(err, &ie))
		return ctx, refusal
	}
	if !strings.HasPrefix(info.FullMethodName, generationServicePrefix) {
		return ctx, nil
	}
	// Admission too happens here, before the message is read (admission.go takeSlots).
	release, err := s.takeSlots(p, info.FullMethodName)
	if err != nil {
		s.refusals.record(ctx, info.FullMethodName, err, p.Name, false)
		return ctx, err
	}
	a := &admitted{free: release}
	ctx = context.WithValue(ctx, admittedKey{}, a)
	// The stream's context ends when the stream does, whatever happened to the call.
	context.AfterFunc(ctx, a.release)
	return ctx, nil
}

// refusalLog logs and counts calls the tap refuses. Anonymous ones are the cheapest
// calls an attacker can make, so their log lines are rate-limited (the metric is not).
type refusalLog struct {
	log        *slog.Logger
	metrics    *metrics.Metrics
	limiter    *rate.Limiter
	suppressed atomic.Int64
}

func newRefusalLog(log *slog.Logger, m *metrics.Metrics) *refusalLog {
	return &refusalLog{log: log, metrics: m, limiter: rate.NewLimiter(5, 20)}
}

// record is called on the transport's reader goroutine: it must not block.
func (r *refusalLog) record(ctx context.Context, method string, err error, principal string, anonymous bool) {
	st, _ := status.FromError(err)
	reason := reasonOf(st)
	if r.metrics != nil {
		label := principal
		if label == "" {
			label = "none"
		}
		r.metrics.CallDone(method[strings.LastIndexByte(method, '/')+1:], label, st.Code().String(), reason, 0, true)
	}
	if anonymous && !r.limiter.Allow() {
		r.suppressed.Add(1)
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", st.Code().String()),
		slog.String("reason", reason),
		slog.Float64("durationMs", 0),
		slog.String("requestId", requestID(ctx)),
		slog.String("principal", principal),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	attrs = append(attrs,
		slog.String("error", st.Message()),
		slog.String("refusedBy", "tap"),
		slog.Int64("suppressedSinceLast", r.suppressed.Swap(0)),
	)
	r.log.LogAttrs(ctx, slog.LevelWarn, "call", attrs...)
}
