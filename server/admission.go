package server

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
)

// This file is admission, the innermost interceptors: who may call what, the
// per-principal and global limits, undecodable messages, the shutdown cut, bounded
// stream sends and the send-size check, all before and around the handler.

// admit rejects calls that must not reach a handler and takes the call's share of
// the limits: anything but health without a principal, new calls while draining,
// GenerationService calls the policy does not allow or that exceed the caller's limits,
// and calls beyond the global cap on upstream work. On success the caller must call
// release when the call ends. For GenerationService calls the tap has normally taken
// the slots already, before the message was read (admitted); admit then hands back
// their release.
func (s *Server) admit(ctx context.Context, method string) (release func(), err error) {
	if isHealthMethod(method) {
		return noRelease, nil
	}
	p, ok := PrincipalFrom(ctx)
	if !ok {
		var why error = errNoIdentity
		if c := callFrom(ctx); c != nil && c.identityErr != nil {
			why = c.identityErr
		}
		return nil, s.errs.Unidentified(why, method, s.mesh)
	}
	if a := admittedFrom(ctx); a != nil {
		return a.release, nil
	}
	return s.takeSlots(p, method)
}

// takeSlots is admission proper: draining, the policy (authorization, the principal's
// rate and in-flight limits) and the global in-flight cap. It runs in the tap, so that a
// caller over its limits is refused before its message is read or decompressed: an
// authenticated caller with max_in_flight 4 cannot make genservice decompress a thousand
// 12 MiB messages at once.
func (s *Server) takeSlots(p Principal, method string) (release func(), err error) {
	if s.draining.Load() {
		return nil, s.errs.ShuttingDown()
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

// admitted holds the slots the tap took for a call. They are released once: when the
// handler returns (the interceptor's defer), or else when the stream ends (a call that
// never reached its handler, for example one whose message was too large).
type admitted struct {
	once sync.Once
	free func()
}

func (a *admitted) release() { a.once.Do(a.free) }

type admittedKey struct{}

func admittedFrom(ctx context.Context) *admitted {
	a, _ := ctx.Value(admittedKey{}).(*admitted)
	return a
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
