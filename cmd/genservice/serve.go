package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"genservice/admin"
	"genservice/authz"
	"genservice/livepeer"
	"genservice/metrics"
	"genservice/server"
	"genservice/tracing"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// tlsFlag maps a server.FileError to the flag that named the file.
var tlsFlag = map[string]string{"cert": "--tls-cert", "key": "--tls-key", "client-ca": "--client-ca"}

// listening reports the bound addresses once serve accepts connections.
type listening struct {
	GRPC  net.Addr
	Admin net.Addr // nil when the admin listener is off
}

// serve runs the service until ctx is cancelled, then drains. ready, if non-nil, is
// called once the listeners accept connections. The demo runs exactly this function.
func serve(ctx context.Context, c *serveConfig, log *slog.Logger, ready func(listening)) error {
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
	var srv *server.Server
	m := metrics.New(func() time.Time { return srv.CertificateNotAfter() })

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
		UserAgent:      "genservice/" + version,
		Observer:       m,
		Timeouts:       c.Timeouts,
		WrapTransport:  tr.Transport,
		Logger:         log,
	})
	if err != nil {
		return fmt.Errorf("--gateway-url: %v", err)
	}
	srv, err = server.New(server.Config{
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
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.Listen, err)
	}
	var bound listening
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
		slog.String("version", version),
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
	if c.MaxConnGrace > 0 && c.MaxConnGrace < c.longestTimeout() {
		log.Warn("--max-connection-age-grace is shorter than the longest pipeline timeout: calls that long are cut when their connection ages out",
			slog.Duration("grace", c.MaxConnGrace), slog.Duration("longestTimeout", c.longestTimeout()))
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
	log.Info("shutting down (a second SIGTERM or SIGINT exits at once)", slog.Duration("drainDelay", c.DrainDelay), slog.Duration("grace", c.ShutdownGrace))
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

func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// drainTimeout is how long the demo waits for its servers on Ctrl-C.
const drainTimeout = 5 * time.Second
