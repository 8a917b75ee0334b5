package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	grpcmw "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

// call is the per-call state the call log (a stats handler) creates when the call
// starts and the interceptors fill in, so that the one log line per call can report
// all of it.
type call struct {
	method    string
	start     time.Time
	requestID string
	principal Principal
	// identityErr is why the caller has no principal (errNoIdentity or *IdentityError).
	identityErr error
	// decodeErr is set when the request message did not decode (see codec.go).
	decodeErr error
	// sendWait is the time spent waiting for the caller to take stream messages (ns):
	// not genservice's own overhead.
	sendWait atomic.Int64
	upstream livepeer.CallInfo
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

// begin completes the call state: principal from the verified client certificate (or
// mesh header), the request id echoed in the response header, and the upstream
// CallInfo. The call log made the call state; without it (a server without the call
// log, in narrow tests) begin makes one.
func (s *Server) begin(ctx context.Context, method string) (context.Context, *call) {
	c := callFrom(ctx)
	if c == nil {
		c = newCall(ctx, method)
		ctx = context.WithValue(ctx, callKey{}, c)
	}
	if p, err := s.identify(ctx); err == nil {
		c.principal = p
		ctx = WithPrincipal(ctx, p)
	} else {
		c.identityErr = err
	}
	ctx = livepeer.WithCallInfo(ctx, &c.upstream)
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, c.requestID))
	return ctx, c
}

func newCall(ctx context.Context, method string) *call {
	c := &call{method: method, start: time.Now(), requestID: requestID(ctx)}
	c.upstream.RequestID = c.requestID
	return c
}

// unaryCallScope and streamCallScope open the call's scope for the inner layers.
func (s *Server) unaryCallScope(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, c := s.begin(ctx, info.FullMethod)
	// The codec let an undecodable message through with its error on the side; the
	// innermost layer reports it once the caller is admitted.
	c.decodeErr = takeDecodeError(req)
	return handler(ctx, req)
}

func (s *Server) streamCallScope(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, _ := s.begin(ss.Context(), info.FullMethod)
	w := grpcmw.WrapServerStream(ss)
	w.WrappedContext = ctx
	return handler(srv, w)
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
	if c := callFrom(ctx); c != nil && c.decodeErr != nil {
		return nil, s.errs.Undecodable(c.decodeErr)
	}
	ctx, done := s.cuttable(ctx)
	resp, err := handler(ctx, req)
	err = done(err)
	if err == nil {
		// A response over the send limit would fail in grpc after every layer had
		// counted it as OK; say so here, where every layer sees it.
		if m, ok := resp.(proto.Message); ok {
			if n := proto.Size(m); n > s.maxSend {
				return nil, s.errs.ResponseTooLarge(n, s.maxSend)
			}
		}
	}
	return resp, err
}

func (s *Server) streamAdmit(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	release, err := s.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer release()
	ctx, done := s.cuttable(ss.Context())
	bs := newBoundedStream(ss, ctx, s)
	defer bs.close()
	return done(handler(srv, bs))
}

// cuttable derives the handler's context so that the end of the shutdown grace
// cancels it; done turns the resulting error into SHUTTING_DOWN.
func (s *Server) cuttable(ctx context.Context) (context.Context, func(error) error) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.cut, func() { cancel(errShutdownCut) })
	return ctx, func(err error) error {
		stop()
		cut := context.Cause(ctx) == errShutdownCut
		cancel(nil)
		if err != nil && cut {
			return s.errs.ShutdownCut()
		}
		return err
	}
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
