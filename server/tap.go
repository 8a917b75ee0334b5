package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/tap"
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
		s.refused(ctx, info.FullMethodName, refusal, "", !errors.As(err, &ie))
		return ctx, refusal
	}
	if !strings.HasPrefix(info.FullMethodName, generationServicePrefix) {
		return ctx, nil
	}
	// Admission too happens here, before the message is read (admission.go takeSlots).
	release, err := s.takeSlots(p, info.FullMethodName)
	if err != nil {
		s.refused(ctx, info.FullMethodName, err, p.Name, false)
		return ctx, err
	}
	a := &admitted{free: release}
	ctx = context.WithValue(ctx, admittedKey{}, a)
	// The stream's context ends when the stream does, whatever happened to the call.
	context.AfterFunc(ctx, a.release)
	return ctx, nil
}

// refusalLog rate-limits the log lines of calls the tap refuses anonymously: they are
// the cheapest calls an attacker can make. They are still counted, and written through
// the one call log (logCall) like every other call.
type refusalLog struct {
	limiter    *rate.Limiter
	suppressed atomic.Int64
}

func newRefusalLog() *refusalLog {
	return &refusalLog{limiter: rate.NewLimiter(5, 20)}
}

// refused logs and counts a call the tap refused. It runs on the transport's reader
// goroutine, so it must not block.
func (s *Server) refused(ctx context.Context, method string, err error, principal string, anonymous bool) {
	c := newCall(ctx, method)
	c.principal.Name = principal
	c.refusedBy = "tap"
	if anonymous && !s.refusals.limiter.Allow() {
		s.refusals.suppressed.Add(1)
		c.unlogged = true
	} else {
		c.suppressedBefore = s.refusals.suppressed.Swap(0)
	}
	s.logCall(ctx, c, err)
}
