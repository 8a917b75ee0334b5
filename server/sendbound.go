package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
)

// boundedStream is the handler's view of a server stream. Its SendMsg gives up when
// the caller has not taken the message within the send timeout (the stream idle
// timeout): grpc's own SendMsg blocks for as long as the caller's flow-control window
// stays shut, so a caller that never reads would otherwise hold the call, its upstream
// stream and its admission slots until the connection ages out. Time spent waiting on
// the caller is recorded so it does not count as genservice's overhead. RecvMsg reports
// messages that did not decode (codec.go).
type boundedStream struct {
	grpc.ServerStream
	ctx     context.Context
	s       *Server
	c       *call
	timeout time.Duration
	timer   *time.Timer
	// done receives each send's result. A send abandoned on timeout finishes when grpc
	// ends the stream after the handler returns; the buffer of one lets it exit then.
	done chan error
	busy bool // a send is in progress (possibly abandoned)
}

func newBoundedStream(ss grpc.ServerStream, ctx context.Context, s *Server) *boundedStream {
	return &boundedStream{ServerStream: ss, ctx: ctx, s: s, c: callFrom(ctx), timeout: s.sendTimeout, done: make(chan error, 1)}
}

func (b *boundedStream) Context() context.Context { return b.ctx }

func (b *boundedStream) SendMsg(m any) error {
	if b.busy {
		// The previous send was abandoned and the call is over.
		return b.s.errs.CallerNotReading(b.timeout)
	}
	start := time.Now()
	b.busy = true
	go func() { b.done <- b.ServerStream.SendMsg(m) }()
	if b.timer == nil {
		b.timer = time.NewTimer(b.timeout)
	} else {
		b.timer.Reset(b.timeout)
	}
	defer func() {
		if b.c != nil {
			b.c.sendWait.Add(int64(time.Since(start)))
		}
	}()
	select {
	case err := <-b.done:
		b.busy = false
		b.timer.Stop()
		return err
	case <-b.timer.C:
		return b.s.errs.CallerNotReading(b.timeout)
	case <-b.ctx.Done():
		b.timer.Stop()
		return b.ctx.Err()
	}
}

func (b *boundedStream) RecvMsg(m any) error {
	if err := b.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := takeDecodeError(m); err != nil {
		return b.s.errs.Undecodable(err)
	}
	return nil
}

// close stops the timer; an abandoned send's goroutine exits on its own.
func (b *boundedStream) close() {
	if b.timer != nil {
		b.timer.Stop()
	}
}
