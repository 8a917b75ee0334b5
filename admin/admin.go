// Package admin serves the plain-HTTP admin endpoints: Prometheus metrics and the
// liveness and readiness probes. It is separate from the mTLS gRPC listener because
// Kubernetes probes and Prometheus scrapers cannot present client certificates; bind it
// to loopback or a pod-internal port.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Config configures the admin server.
type Config struct {
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Ready reports readiness for /readyz (certificates and key loaded, not draining).
	Ready  func() bool
	Logger *slog.Logger
}

// Handler returns the admin mux.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	// /healthz: the process is up and serving HTTP. Never depends on the gateway: a
	// gateway outage must not get every replica restarted.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	// /readyz: take traffic only when ready; fails as soon as shutdown starts so the
	// endpoint is removed before the listener stops.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cfg.Ready != nil && !cfg.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Serve runs the admin server on lis until ctx ends.
func Serve(ctx context.Context, lis net.Listener, cfg Config) error {
	srv := &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
