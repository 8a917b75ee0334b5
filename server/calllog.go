package server

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// callLog is a gRPC stats handler that writes the one log line per call and records
// the call's metrics when the call has really ended, with the status the caller got.
// Interceptors cannot: a message that fails before them (too large once decompressed)
// never reaches them, and a response that fails to send fails after them. Calls the tap
// refuses never get this far; the tap logs those itself (tap.go).
type callLog struct{ s *Server }

func (l callLog) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, callKey{}, newCall(ctx, info.FullMethodName))
}

func (l callLog) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if end, ok := st.(*stats.End); ok {
		if c := callFrom(ctx); c != nil {
			l.s.logCall(ctx, c, end.Error)
		}
	}
}

func (callLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (callLog) HandleConn(context.Context, stats.ConnStats)                       {}

// logCall writes the one line per call. It never logs payloads or the key; the status
// message is ours and upstream text in it is sanitized and truncated.
func (s *Server) logCall(ctx context.Context, c *call, err error) {
	method := c.method
	total := time.Since(c.start)
	st := status.Convert(err)
	overhead := max(0, total-c.upstream.UpstreamDuration()-time.Duration(c.sendWait.Load()))
	reason := ""
	if err != nil {
		reason = reasonOf(st)
	}
	if s.metrics != nil {
		principal := c.principal.Name
		if principal == "" {
			principal = "none"
		}
		short := method[strings.LastIndexByte(method, '/')+1:]
		s.metrics.CallDone(short, principal, st.Code().String(), reason, overhead, err != nil)
		if c.tokens.reported {
			s.metrics.LLMTokens(principal, int(c.tokens.prompt), int(c.tokens.completion))
		}
	}
	level := slog.LevelInfo
	switch {
	case err != nil:
		level = slog.LevelWarn
	case isHealthMethod(method) || isReflectionMethod(method):
		// Probes and grpcurl's schema reads are frequent and say nothing about use.
		level = slog.LevelDebug
	}
	if c.unlogged || !s.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("method", method),
		slog.String("code", st.Code().String()),
		slog.Float64("durationMs", ms(total)),
		slog.String("requestId", c.requestID),
		slog.String("principal", c.principal.Name),
	)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("traceId", sc.TraceID().String()), slog.String("spanId", sc.SpanID().String()))
	}
	if c.tokens.reported {
		attrs = append(attrs, slog.Int64("promptTokens", int64(c.tokens.prompt)), slog.Int64("completionTokens", int64(c.tokens.completion)))
	}
	if c.upstream.Attempts > 0 {
		up := c.upstream.UpstreamDuration()
		attrs = append(attrs,
			slog.String("pipeline", c.upstream.Pipeline),
			slog.Int("upstreamStatus", c.upstream.Status),
			slog.Int("attempts", c.upstream.Attempts),
			slog.Float64("upstreamMs", ms(up)),
			slog.Float64("overheadMs", ms(overhead)),
			slog.String("keyFingerprint", c.upstream.KeyFingerprint),
		)
	}
	if err != nil {
		attrs = append(attrs, slog.String("reason", reason), slog.String("error", st.Message()))
	}
	if c.refusedBy != "" {
		attrs = append(attrs, slog.String("refusedBy", c.refusedBy), slog.Int64("suppressedSinceLast", c.suppressedBefore))
	}
	s.log.LogAttrs(ctx, level, "call", attrs...)
}

// reasonOf returns the ErrorInfo reason of a status ("" for OK or none).
func reasonOf(st *status.Status) string {
	for _, d := range st.Proto().GetDetails() {
		var info errdetails.ErrorInfo
		if d.MessageIs(&info) && d.UnmarshalTo(&info) == nil {
			return info.GetReason()
		}
	}
	return ""
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// isReflectionMethod reports grpcurl's schema reads.
func isReflectionMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.reflection.")
}
