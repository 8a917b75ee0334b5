package server

import (
	"context"
	"log/slog"
	"runtime/debug"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
)

// recovered turns a panic into INTERNAL with nothing of the panic in the status; the
// log line carries the panic value and stack under the request id. Values that hold the
// API key print as [REDACTED] (livepeer.APIKey implements every formatter).
func (s *Server) recovered(ctx context.Context, p any) error {
	rid := RequestIDFrom(ctx)
	s.log.LogAttrs(ctx, slog.LevelError, "panic in handler",
		slog.String("requestId", rid),
		slog.Any("panic", p),
		slog.String("stack", string(debug.Stack())),
	)
	return s.errs.Internal(rid)
}

// interceptors is the chain, outermost first: the call scope (call state, principal,
// request id; callscope.go), the gRPC metrics, recovery, then admission and the
// handler-side limits (admission.go). The per-call log line is written by the call log
// (calllog.go), a stats handler that sees the status the caller really got.
func (s *Server) interceptors() []grpc.ServerOption {
	rec := recovery.WithRecoveryHandlerContext(s.recovered)
	unary := []grpc.UnaryServerInterceptor{s.unaryCallScope}
	stream := []grpc.StreamServerInterceptor{s.streamCallScope}
	if s.metrics != nil {
		unary = append(unary, s.metrics.Server.UnaryServerInterceptor())
		stream = append(stream, s.metrics.Server.StreamServerInterceptor())
	}
	unary = append(unary, recovery.UnaryServerInterceptor(rec), s.unaryAdmit)
	stream = append(stream, recovery.StreamServerInterceptor(rec), s.streamAdmit)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}
