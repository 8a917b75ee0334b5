// Package app assembles genservice from its configuration: the one place that wires
// tracing, the key source, the policy, the upstream client, metrics, the gRPC server and
// the listeners. `genservice serve`, `genservice demo` and the benchmark all run it.
package app

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"genservice/admin"
	"genservice/authz"
	"genservice/livepeer"
	"genservice/metrics"
	"genservice/server"
	"genservice/tracing"
)

// tlsFlag maps a server.FileError to the flag that named the file.
var tlsFlag = map[string]string{"cert": "--tls-cert", "key": "--tls-key", "client-ca": "--client-ca"}

// envName is the variable of a serve flag (GENSERVICE_ and the name in upper snake case).
func envName(flagName string) string {
	return "GENSERVICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Listening reports the bound addresses once the service accepts connections.
type Listening struct {
	GRPC  net.Addr
	Admin net.Addr // nil when the admin listener is off
}

// Run builds the service from c and runs it until ctx is cancelled, then drains: the one
// wiring of tracing, key source, policy, upstream client, metrics, gRPC server and
// listeners, used by serve, demo and the benchmark. ready, if non-nil, is called once
// the listeners accept connections.
func Run(ctx context.Context, c *Config, log *slog.Logger, ready func(Listening)) error {
	var roots *x509.CertPool
	if c.GatewayCA != "" {
		pem, err := os.ReadFile(c.GatewayCA)
		if err != nil {
			return fmt.Errorf("--gateway-ca: %v", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--gateway-ca %s: no PEM certificates found", c.GatewayCA)
		}
	}
	tr, err := tracing.Setup(ctx)
	if err != nil {
		return fmt.Errorf("OpenTelemetry (OTEL_* variables): %v", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Shutdown(sctx)
	}()
	m := metrics.New()
	m.SetBuildInfo(c.Version)

	var keys livepeer.KeySource = livepeer.StaticKey(c.Key)
	if c.KeyFile != "" {
		fk, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: c.KeyFile, Logger: log, OnReload: m.Reloaded("key")})
		if err != nil {
			return fmt.Errorf("LIVEPEER_API_KEY_FILE (%s): %v", c.KeyFile, err)
		}
		go fk.Watch(ctx)
		keys = fk
	}
	var policy *authz.Enforcer
	if c.PolicyFile != "" {
		var err error
		policy, err = authz.New(authz.Config{Path: c.PolicyFile, KnownMethods: server.MethodNames(), Logger: log, OnReload: m.Reloaded("policy")})
		if err != nil {
			return fmt.Errorf("--policy (GENSERVICE_POLICY) %s: %v", c.PolicyFile, err)
		}
		go policy.Watch(ctx)
	}
	up, err := livepeer.New(livepeer.Config{
		GatewayURL:     c.GatewayURL,
		Keys:           keys,
		RootCAs:        roots,
		MaxAttempts:    c.MaxAttempts,
		ConnectTimeout: c.ConnectTimeout,
		UserAgent:      "genservice/" + c.Version,
		Observer:       m,
		Timeouts:       c.Timeouts,
		WrapTransport:  tr.Transport,
		Logger:         log,
	})
	if err != nil {
		return fmt.Errorf("--gateway-url: %v", err)
	}
	srv, err := server.New(server.Config{
		TLS:                        c.TLS,
		Upstream:                   up,
		Logger:                     log,
		ErrorDomain:                c.ErrorDomain,
		MaxMessageSize:             c.MaxMessageSize,
		MaxSendMessageSize:         c.MaxSendSize,
		MaxConnsWithoutCert:        c.MaxCertless,
		MaxWatchersWithoutIdentity: c.MaxWatchers,
		MaxConnectionIdle:          c.MaxConnIdle,
		StreamIdleTimeout:          c.StreamIdle,
		Policy:                     policy,
		MaxInFlight:                c.MaxInFlight,
		Mesh:                       c.Mesh,
		MaxConnectionAge:           c.MaxConnAge,
		MaxConnectionAgeGrace:      c.MaxConnGrace,
		Metrics:                    m,
		OnTLSReload:                m.Reloaded("tls"),
		MediaAllowHosts:            c.MediaAllow,
		MaxMediaBytes:              int64(c.MaxMediaBytes),
		StatsHandler:               tr.StatsHandler(),
	})
	if err != nil {
		var fe *server.FileError
		if errors.As(err, &fe) {
			return fmt.Errorf("%s (%s): %v", tlsFlag[fe.Which], envName(tlsFlag[fe.Which][2:]), err)
		}
		return err
	}
	m.TrackCertificateExpiry(srv.CertificateNotAfter)
	lis := c.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", c.Listen); err != nil {
			return fmt.Errorf("--listen %s: %w", c.Listen, err)
		}
	}
	var bound Listening
	bound.GRPC = lis.Addr()
	adminCtx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	// adminDone stays nil (never ready in the select below) when the admin listener is off.
	var adminDone chan error
	if c.AdminListen != "" {
		adminDone = make(chan error, 1)
		alis, err := net.Listen("tcp", c.AdminListen)
		if err != nil {
			lis.Close()
			return fmt.Errorf("--admin-listen %s: %w", c.AdminListen, err)
		}
		bound.Admin = alis.Addr()
		go func() {
			adminDone <- admin.Serve(adminCtx, alis, admin.Config{Metrics: m.Handler(), Ready: srv.Ready, Logger: log})
		}()
	}
	attrs := []any{
		slog.String("version", c.Version),
		slog.String("listen", bound.GRPC.String()),
		slog.String("gatewayUrl", up.GatewayURL()),
		slog.String("keyFingerprint", c.Key.Fingerprint()),
		slog.String("keySource", c.KeyOrigin),
		slog.Int("maxMessageSize", c.MaxMessageSize),
		slog.Bool("tracing", tr.On()),
	}
	if bound.Admin != nil {
		attrs = append(attrs, slog.String("adminListen", bound.Admin.String()))
	}
	log.Info("genservice serving", attrs...)
	if policy == nil {
		log.Warn("no authorization policy (--policy): every caller with a certificate from the client CA may call every RPC")
	}
	if c.MaxConnGrace > 0 && c.MaxConnGrace < c.LongestTimeout() {
		log.Warn("--max-connection-age-grace is shorter than the longest pipeline timeout: calls that long are cut when their connection ages out",
			slog.Int64("graceMs", c.MaxConnGrace.Milliseconds()), slog.Int64("longestTimeoutMs", c.LongestTimeout().Milliseconds()))
	}
	if c.Mesh != "" {
		log.Warn("mesh mode: plaintext listener; caller identity taken from the sidecar's header", slog.String("mesh", c.Mesh))
	}
	go srv.WatchTLS(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	if ready != nil {
		ready(bound)
	}
	select {
	case err := <-errc:
		stopAdmin()
		waitAdmin(adminDone)
		return err
	case err := <-adminDone:
		srv.Shutdown(context.Background(), 0)
		<-errc
		return fmt.Errorf("admin listener: %v", err)
	case <-ctx.Done():
	}
	log.Info("shutting down (a second SIGTERM or SIGINT exits at once)", slog.Int64("drainDelayMs", c.DrainDelay.Milliseconds()), slog.Int64("graceMs", c.ShutdownGrace.Milliseconds()))
	sctx, cancel := context.WithTimeout(context.Background(), c.DrainDelay+c.ShutdownGrace)
	defer cancel()
	srv.Shutdown(sctx, c.DrainDelay)
	stopAdmin()
	waitAdmin(adminDone)
	log.Info("stopped")
	return <-errc
}

func waitAdmin(done chan error) {
	if done != nil {
		<-done
	}
}
