package server

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// boundedHealth is grpc's health service with two limits on Watch, the one call a peer
// without a certificate may hold open: such peers share a small number of watchers, and
// every watcher ends once shutdown has told it NOT_SERVING, so open watches never hold
// GracefulStop for the whole grace period.
type boundedHealth struct {
	*health.Server
	srv *Server
}

func (h *boundedHealth) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if _, err := h.srv.identify(stream.Context()); err != nil {
		if !h.srv.watchers.acquire() {
			return h.srv.errs.TooManyWatchers(h.srv.watchers.limit)
		}
		defer h.srv.watchers.release()
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	token, ok := h.srv.watchers.track(cancel)
	if !ok {
		return h.srv.errs.ShuttingDown()
	}
	defer h.srv.watchers.untrack(token)
	err := h.Server.Watch(req, &watchStream{ServerStreamingServer: stream, ctx: ctx})
	if h.srv.watchers.ended() && stream.Context().Err() == nil {
		// Shutdown ended the watch. The health server has queued NOT_SERVING for it,
		// but may have seen the cancellation first: say it once more (a repeat is
		// harmless to a watcher) before the stream ends.
		_ = stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
		return h.srv.errs.ShuttingDown()
	}
	return err
}

type watchStream struct {
	grpc.ServerStreamingServer[healthpb.HealthCheckResponse]
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }

// watcherCap counts unidentified watchers and keeps every watcher's cancel function so
// shutdown can end them all.
type watcherCap struct {
	limit int
	mu    sync.Mutex
	n     int
	open  map[*watcher]struct{}
	done  bool
}

type watcher struct{ cancel context.CancelFunc }

func newWatcherCap(limit int) *watcherCap {
	return &watcherCap{limit: limit, open: map[*watcher]struct{}{}}
}

func (w *watcherCap) acquire() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n >= w.limit {
		return false
	}
	w.n++
	return true
}

func (w *watcherCap) release() {
	w.mu.Lock()
	w.n--
	w.mu.Unlock()
}

// track registers a running watcher; false once shutdown has ended them all.
func (w *watcherCap) track(cancel context.CancelFunc) (*watcher, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, false
	}
	t := &watcher{cancel: cancel}
	w.open[t] = struct{}{}
	return t, true
}

func (w *watcherCap) untrack(t *watcher) {
	w.mu.Lock()
	delete(w.open, t)
	w.mu.Unlock()
}

// endAll ends every running watcher and refuses new ones. The health server has sent
// them NOT_SERVING already (health.Server.Shutdown) and grpc delivers messages in order,
// so the status reaches them before the stream ends.
func (w *watcherCap) endAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	for t := range w.open {
		t.cancel()
	}
}

func (w *watcherCap) ended() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}
