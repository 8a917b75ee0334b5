package main

// -cpuprofile: genservice in this process, wired as cmd/genservice/serve.go wires it,
// then the reference proxy, each under 16 callers, in one CPU profile. Each gRPC server
// runs under a pprof label (role=genservice, role=refproxy) that every goroutine it
// starts inherits (connections, handlers, and the upstream HTTP transport's dial and
// read/write loops), so
//
//	go tool pprof -top -tagfocus=role=genservice FILE
//
// shows genservice alone, without the simulator and the benchmark's own clients, and
// role=refproxy the floor to compare it with.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"genservice/authz"
	"genservice/livepeer"
	"genservice/metrics"
	"genservice/server"
)

// newInProcessGenservice builds genservice as serve does, with the log at info going to
// io.Discard. It returns the serve and stop functions.
func newInProcessGenservice(certs *certFiles, gatewayURL, rawKey string) (serve func(net.Listener) error, stop func(), err error) {
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	// Tracing is off, as serve runs it without OTEL_* variables: tracing.Transport then
	// returns the transport unchanged and StatsHandler nil, so neither is set here (which
	// keeps OpenTelemetry's exporters out of this binary).
	var srv *server.Server
	m := metrics.New(func() time.Time { return srv.CertificateNotAfter() })
	key, err := livepeer.ParseKey(rawKey)
	if err != nil {
		return nil, nil, err
	}
	policy, err := authz.New(authz.Config{Path: certs.policy, KnownMethods: server.MethodNames(), Logger: log, OnReload: m.Reloaded("policy")})
	if err != nil {
		return nil, nil, err
	}
	up, err := livepeer.New(livepeer.Config{
		GatewayURL:     gatewayURL,
		Keys:           livepeer.StaticKey(key),
		MaxAttempts:    2,
		ConnectTimeout: 10 * time.Second,
		UserAgent:      "genservice/bench",
		Observer:       m,
	})
	if err != nil {
		return nil, nil, err
	}
	srv, err = server.New(server.Config{
		TLS:                   server.TLSFiles{CertFile: certs.serverCert, KeyFile: certs.serverKey, ClientCAFile: certs.ca},
		Upstream:              up,
		Logger:                log,
		ErrorDomain:           server.DefaultErrorDomain,
		MaxMessageSize:        server.DefaultMaxMessageSize,
		StreamIdleTimeout:     livepeer.DefaultStreamIdleTimeout,
		Policy:                policy,
		MaxInFlight:           512,
		MaxConnectionAge:      30 * time.Minute,
		MaxConnectionAgeGrace: server.DefaultMaxConnectionAgeGrace,
		Metrics:               m,
		OnTLSReload:           m.Reloaded("tls"),
		MaxMediaBytes:         16 << 20,
	})
	if err != nil {
		return nil, nil, err
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx, 0)
	}
	return srv.Serve, stop, nil
}

// inProcess is one profiled in-process server.
type inProcess struct {
	role  string
	phase phase
}

// profileInProcess runs genservice and then the reference proxy in this process under
// 16 callers each while the CPU profile records.
func profileInProcess(ctx context.Context, opt options, d time.Duration, certs *certFiles, gatewayURL, key string) ([]inProcess, error) {
	genServe, genStop, err := newInProcessGenservice(certs, gatewayURL, key)
	if err != nil {
		return nil, err
	}
	refServer, err := newRefProxy(gatewayURL, certs.dir, key)
	if err != nil {
		genStop()
		return nil, err
	}
	servers := []struct {
		role  string
		serve func(net.Listener) error
		stop  func()
	}{
		{"genservice", genServe, genStop},
		{"refproxy", refServer.Serve, refServer.Stop},
	}
	f, err := os.Create(opt.cpuProfile)
	if err != nil {
		genStop()
		refServer.Stop()
		return nil, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		genStop()
		refServer.Stop()
		return nil, err
	}
	var out []inProcess
	for i, s := range servers {
		p, err := profileOne(ctx, opt, d, certs, s.role, s.serve, s.stop)
		if err != nil {
			for _, rest := range servers[i+1:] {
				rest.stop()
			}
			pprof.StopCPUProfile()
			return out, fmt.Errorf("%s: %v", s.role, err)
		}
		out = append(out, inProcess{s.role, p})
	}
	pprof.StopCPUProfile()
	return out, f.Close()
}

func profileOne(ctx context.Context, opt options, d time.Duration, certs *certFiles, role string, serve func(net.Listener) error, stop func()) (phase, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return phase{}, err
	}
	served := make(chan struct{})
	go pprof.Do(context.Background(), pprof.Labels("role", role), func(context.Context) {
		defer close(served)
		_ = serve(lis)
	})
	defer func() { stop(); <-served }()
	conns, clients, err := dialAll(ctx, lis.Addr().String(), certs.clientTLS)
	if err != nil {
		return phase{}, err
	}
	defer closeAll(conns)
	t := &target{name: role + " (in-process)", call: grpcTextToImage(clients)}
	const conc = 16
	if w := runLoad(ctx, t.call, conc, opt.warmup+100*time.Millisecond, 0); w.errs > 0 {
		return phase{errs: w.errs, firstErr: w.firstErr}, nil
	}
	return measure(ctx, t, conc, d, 0)
}

// profileUploads runs 10 MiB uploads through an in-process genservice, 8 in flight,
// and writes the allocation profile: where the bytes of an upload are copied. The
// profile has every allocation of this process since it started; the server's are the
// ones under google.golang.org/grpc.(*Server) and genservice/server.
func profileUploads(ctx context.Context, opt options, certs *certFiles, gatewayURL, key string) error {
	serve, stop, err := newInProcessGenservice(certs, gatewayURL, key)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return err
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = serve(lis) }()
	defer func() { stop(); <-served }()
	conns, clients, err := dialAll(ctx, lis.Addr().String(), certs.clientTLS)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	r := runLoad(ctx, grpcImageToImage(clients, uploadPayload()), 8, 0, opt.uploadCalls)
	if r.errs > 0 {
		return fmt.Errorf("%d uploads failed: %v", r.errs, r.firstErr)
	}
	f, err := os.Create(opt.memProfile)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC() // the profile is as of the last collection
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		return err
	}
	return f.Close()
}
