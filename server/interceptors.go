package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"time"

	grpcmw "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

// call is the per-call state the outermost interceptor creates and the inner layers
// fill in, so that the one log line per call can report all of it.
type call struct {
	requestID string
	principal Principal
	// identityErr is why the caller has no principal (errNoIdentity or *IdentityError).
	identityErr error
	upstream    livepeer.CallInfo
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// RequestIDFrom returns the call's request id ("" outside a call).
func RequestIDFrom(ctx context.Context) string {
	if c := callFrom(ctx); c != nil {
		return c.requestID
	}
	return ""
}

const requestIDHeader = "x-request-id"

// requestID takes the caller's x-request-id when it is a sane token (so a trace across
// services keeps one id), else makes a new one.
func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(requestIDHeader); len(v) > 0 && validRequestID(v[0]) {
			return v[0]
		}
	}
	// Request ids need to be unique, not secret: math/rand/v2's runtime generator
	// (ChaCha8, seeded per thread) is enough and costs no system call.
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint32(b[8:], rand.Uint32())
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// begin sets up the call state: request id (echoed in the response header), principal
// from the verified client certificate, and the upstream CallInfo.
func (s *Server) begin(ctx context.Context) (context.Context, *call) {
	c := &call{requestID: requestID(ctx)}
	c.upstream.RequestID = c.requestID
	if p, err := s.identify(ctx); err == nil {
		c.principal = p
		ctx = WithPrincipal(ctx, p)
	} else {
		c.identityErr = err
	}
	ctx = context.WithValue(ctx, callKey{}, c)
	ctx = livepeer.WithCallInfo(ctx, &c.upstream)
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, c.requestID))
	return ctx, c
}

// logCall writes the one line per call. It never logs payloads or the key; the status
// message is ours and upstream text in it is sanitized and truncated.
func (s *Server) logCall(ctx context.Context, method string, start time.Time, c *call, err error) {
	total := time.Since(start)
	st := status.Convert(err)
	overhead := total - c.upstream.UpstreamDuration()
	if s.metrics != nil {
		principal := c.principal.Name
		if principal == "" {
			principal = "none"
		}
		short := method[strings.LastIndexByte(method, '/')+1:]
		s.metrics.CallDone(short, principal, st.Code().String(), reasonOf(st), overhead, err != nil)
	}
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(ctx, level) {
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
		attrs = append(attrs, slog.String("error", st.Message()))
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

func (s *Server) unaryFront(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx, c := s.begin(ctx)
	resp, err := handler(ctx, req)
	s.logCall(ctx, info.FullMethod, start, c, err)
	return resp, err
}

func (s *Server) streamFront(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, c := s.begin(ss.Context())
	w := grpcmw.WrapServerStream(ss)
	w.WrappedContext = ctx
	err := handler(srv, w)
	s.logCall(ctx, info.FullMethod, start, c, err)
	return err
}

// admit rejects calls that must not reach a handler and takes the call's share of
// the limits: anything but health without a principal, new calls while draining,
// GenerationService calls the policy does not allow or that exceed the caller's limits,
// and calls beyond the global cap on upstream work. On success the caller must call
// release when the call ends.
func (s *Server) admit(ctx context.Context, method string) (release func(), err error) {
	if isHealthMethod(method) {
		return noRelease, nil
	}
	if s.draining.Load() {
		return nil, s.errs.ShuttingDown()
	}
	p, ok := PrincipalFrom(ctx)
	if !ok {
		var why error = errNoIdentity
		if c := callFrom(ctx); c != nil && c.identityErr != nil {
			why = c.identityErr
		}
		return nil, s.errs.Unidentified(why, method, s.mesh)
	}
	rpc, ok := strings.CutPrefix(method, generationServicePrefix)
	if !ok {
		return noRelease, nil // reflection: any authenticated caller may read the schema
	}
	releasePolicy := noRelease
	if s.policy != nil {
		r, d := s.policy.Admit(p.Name, rpc)
		if d != nil {
			return nil, s.errs.Denied(d, p.Name, rpc)
		}
		releasePolicy = r
	}
	if s.maxInFlight > 0 {
		if s.inFlight.Add(1) > s.maxInFlight {
			s.inFlight.Add(-1)
			releasePolicy()
			return nil, s.errs.Overloaded(int(s.maxInFlight))
		}
		return func() { s.inFlight.Add(-1); releasePolicy() }, nil
	}
	return releasePolicy, nil
}

var generationServicePrefix = "/" + generationv1.GenerationService_ServiceDesc.ServiceName + "/"

func noRelease() {}

func (s *Server) unaryAdmit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	release, err := s.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer release()
	return handler(ctx, req)
}

func (s *Server) streamAdmit(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	release, err := s.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer release()
	return handler(srv, ss)
}

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

func (s *Server) interceptors() []grpc.ServerOption {
	rec := recovery.WithRecoveryHandlerContext(s.recovered)
	unary := []grpc.UnaryServerInterceptor{s.unaryFront}
	stream := []grpc.StreamServerInterceptor{s.streamFront}
	if s.metrics != nil {
		unary = append(unary, s.metrics.Server.UnaryServerInterceptor())
		stream = append(stream, s.metrics.Server.StreamServerInterceptor())
	}
	unary = append(unary, recovery.UnaryServerInterceptor(rec), s.unaryAdmit)
	stream = append(stream, recovery.StreamServerInterceptor(rec), s.streamAdmit)
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}
}
