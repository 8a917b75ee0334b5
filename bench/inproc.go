package main

// -cpuprofile: genservice in this process, wired by app.Run as serve wires it,
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
	"sync/atomic"
	"time"

	"genservice/app"
	"genservice/livepeer"
	"genservice/server"
)

// newInProcessGenservice builds genservice through app.Run, the wiring serve uses, with
// the log at info going to io.Discard and no admin listener. It returns the serve and
// stop functions.
func newInProcessGenservice(certs *certFiles, gatewayURL, rawKey string) (serve func(net.Listener) error, stop func(), err error) {
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	key, err := livepeer.ParseKey(rawKey)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var started atomic.Bool
	serve = func(lis net.Listener) error {
		started.Store(true)
		defer close(done)
		c := &app.Config{
			Listener:       lis,
			TLS:            server.TLSFiles{CertFile: certs.serverCert, KeyFile: certs.serverKey, ClientCAFile: certs.ca},
			GatewayURL:     gatewayURL,
			Key:            key,
			KeyOrigin:      "bench",
			Version:        "bench",
			PolicyFile:     certs.policy,
			ErrorDomain:    server.DefaultErrorDomain,
			MaxMessageSize: server.DefaultMaxMessageSize,
			MaxSendSize:    server.DefaultMaxSendMessageSize,
			StreamIdle:     livepeer.DefaultStreamIdleTimeout,
			MaxAttempts:    2,
			ConnectTimeout: 10 * time.Second,
			MaxInFlight:    512,
			MaxConnAge:     30 * time.Minute,
			MaxConnGrace:   server.DefaultMaxConnectionAgeGrace,
			MaxMediaBytes:  livepeer.DefaultMaxMediaBytes,
			ShutdownGrace:  2 * time.Second,
		}
		return app.Run(ctx, c, log, nil)
	}
	stop = func() {
		cancel()
		if started.Load() {
			<-done
		}
	}
	return serve, stop, nil
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
