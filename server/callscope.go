package server

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync/atomic"
	"time"

	grpcmw "github.com/grpc-ecosystem/go-grpc-middleware/v2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"genservice/livepeer"
)

// This file is the call scope: the per-call state every layer shares, the request id,
// and the outermost interceptors that establish the caller's identity for the rest.

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
	upstream livepeer.Trace
	// tokens is the LLM usage the gateway reported (Llm and LlmStream).
	tokens tokenUsage
	// refusedBy is "tap" for a call refused from its headers; suppressedBefore counts the
	// anonymous refusals whose lines were rate-limited away since the last one logged,
	// and unlogged marks this one as such (it is still counted).
	refusedBy        string
	suppressedBefore int64
	unlogged         bool
}

// tokenUsage is what an LLM call cost, for the per-principal token counter.
type tokenUsage struct {
	prompt, completion int32
	reported           bool
}

// recordTokens keeps the latest usage the gateway reported for the call (stream events
// carry running totals).
func recordTokens(ctx context.Context, prompt, completion int32) {
	if c := callFrom(ctx); c != nil {
		c.tokens = tokenUsage{prompt: prompt, completion: completion, reported: true}
	}
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
// Trace. The call log made the call state; without it (a server without the call
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
	ctx = livepeer.WithTrace(ctx, &c.upstream)
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
