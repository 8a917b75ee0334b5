// Package server is the gRPC side of genservice: the GenerationService handlers, the
// interceptors (identity, recovery, logging), mTLS and the status table.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/stats"

	"genservice/authz"
	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/contract"
	"genservice/livepeer"
	"genservice/metrics"
)

// Config configures a Server.
type Config struct {
	// TLS names the listener's certificate, key and client-CA files. Required.
	TLS TLSFiles
	// Upstream is the gateway client. Required.
	Upstream *livepeer.Client
	// Logger receives one line per call and operational events. Default: slog.Default().
	Logger *slog.Logger
	// ErrorDomain is ErrorInfo.domain on every status. Default DefaultErrorDomain.
	ErrorDomain string
	// MaxMessageSize caps a received message in bytes, after decompression. Default
	// DefaultMaxMessageSize: gRPC's 4 MiB default is too small for image and audio
	// uploads, and Studio accepts at most 10 MiB per file anyway.
	MaxMessageSize int
	// MaxSendMessageSize caps a sent message in bytes (inline media makes responses
	// large). Default DefaultMaxSendMessageSize.
	MaxSendMessageSize int
	// MaxConnsWithoutCert caps connections whose peer presented no client certificate
	// (they may only check health). Default DefaultMaxConnsWithoutCert; mesh mode has no
	// such cap (every connection comes from the sidecar).
	MaxConnsWithoutCert int
	// MaxWatchersWithoutIdentity caps health Watch streams from peers without a verified
	// identity. Default DefaultMaxWatchersWithoutIdentity.
	MaxWatchersWithoutIdentity int
	// MaxConnectionIdle closes connections that had no call for this long. Default
	// DefaultMaxConnectionIdle.
	MaxConnectionIdle time.Duration
	// MaxConcurrentStreams per connection. Default DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// Policy, if set, authorizes GenerationService calls by principal; nil allows every
	// authenticated caller.
	Policy *authz.Enforcer
	// MaxInFlight caps concurrent GenerationService calls (all of which go upstream);
	// beyond it calls fail fast with OVERLOADED. 0: no cap (the binary's default is
	// DefaultMaxInFlight).
	MaxInFlight int
	// Mesh is MeshIstio or MeshLinkerd when a sidecar terminates mTLS: the listener is
	// plaintext, TLS is ignored, and the principal comes from the sidecar's header.
	Mesh string
	// MaxConnectionAge makes clients reconnect periodically, so rotated certificates and
	// new replicas are picked up (default DefaultMaxConnectionAge). MaxConnectionAgeGrace
	// is how long calls in flight on an aged connection may still run; it must cover the
	// longest call, or a paid-for generation is cut (default
	// DefaultMaxConnectionAgeGrace).
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	// Metrics, if set, receives the gRPC server metrics and per-call overhead and errors.
	Metrics *metrics.Metrics
	// StatsHandler, if set, is installed on the gRPC server (tracing).
	StatsHandler stats.Handler
	// OnTLSReload, if set, is called after each reload attempt of the TLS files.
	OnTLSReload func(err error)
	// MediaAllowHosts are hosts besides the gateway's that inline_media may fetch from.
	MediaAllowHosts []string
	// MaxMediaBytes caps one inline media file. Default livepeer.DefaultMaxMediaBytes.
	MaxMediaBytes int64
	// StreamIdleTimeout is the longest gap between two LlmStream events before the call
	// fails with UPSTREAM_TIMEOUT. Default livepeer.DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration
}

// Server is a configured gRPC server. Create it with New, run it with Serve, stop it
// with Shutdown.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	log    *slog.Logger
	errs   Errors
	// certs is the reloading certificate store; nil in mesh mode.
	certs    *certStore
	draining atomic.Bool
	// shuttingDown is set when Shutdown starts (readiness fails at once), draining
	// when the server stops taking calls.
	shuttingDown atomic.Bool

	metrics     *metrics.Metrics
	policy      *authz.Enforcer
	mesh        string
	maxInFlight int64
	inFlight    atomic.Int64
	maxSend     int
	// sendTimeout bounds one stream send to a caller that does not read.
	sendTimeout time.Duration
	refusals    *refusalLog
	watchers    *watcherCap
	// cut is cancelled when the shutdown grace ends: calls still running end with
	// SHUTTING_DOWN, and health watchers end.
	cut      context.Context
	cutCalls context.CancelCauseFunc
}

// DefaultMaxConnectionAgeGrace covers the longest default per-pipeline timeout
// (image-to-video, 10 minutes) with a margin.
const DefaultMaxConnectionAgeGrace = 11 * time.Minute

// Defaults of the limits in Config.
const (
	// DefaultMaxMessageSize fits Studio's 10 MiB file limit plus the request's other
	// fields. Larger messages, compressed or not, are refused before they are decoded.
	DefaultMaxMessageSize = 12 << 20
	// DefaultMaxSendMessageSize leaves room for inline media (a short video).
	DefaultMaxSendMessageSize = 32 << 20
	// DefaultMaxConnsWithoutCert is plenty for load balancers' health checks.
	DefaultMaxConnsWithoutCert = 100
	// DefaultMaxWatchersWithoutIdentity bounds health Watch streams from unidentified
	// peers; callers with a certificate are bounded by MaxConcurrentStreams instead.
	DefaultMaxWatchersWithoutIdentity = 100
	// DefaultMaxConnectionIdle closes idle connections so they hold nothing for long;
	// a client reconnects on its next call.
	DefaultMaxConnectionIdle = 10 * time.Minute
	// DefaultMaxConnectionAge makes clients reconnect twice an hour: often enough to
	// pick up a rotated certificate well before the old one expires.
	DefaultMaxConnectionAge = 30 * time.Minute
	// DefaultMaxConcurrentStreams per connection: far above what one client needs,
	// low enough that one connection cannot hold unbounded streams.
	DefaultMaxConcurrentStreams = 1000
	// DefaultMaxInFlight is the cap on concurrent GenerationService calls that the
	// binary starts with; Config's zero value means no cap, for tests and embedding.
	DefaultMaxInFlight = 512
)

// New loads the TLS material and builds the server. Health reports SERVING once New
// returns: certificates and key are loaded by then.
func New(cfg Config) (*Server, error) {
	if cfg.Upstream == nil {
		return nil, errors.New("server: no upstream client")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ErrorDomain == "" {
		cfg.ErrorDomain = DefaultErrorDomain
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxSendMessageSize <= 0 {
		cfg.MaxSendMessageSize = DefaultMaxSendMessageSize
	}
	if cfg.MaxConnsWithoutCert <= 0 {
		cfg.MaxConnsWithoutCert = DefaultMaxConnsWithoutCert
	}
	if cfg.MaxWatchersWithoutIdentity <= 0 {
		cfg.MaxWatchersWithoutIdentity = DefaultMaxWatchersWithoutIdentity
	}
	if cfg.MaxConnectionIdle <= 0 {
		cfg.MaxConnectionIdle = DefaultMaxConnectionIdle
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = livepeer.DefaultStreamIdleTimeout
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.MaxConnectionAge <= 0 {
		cfg.MaxConnectionAge = DefaultMaxConnectionAge
	}
	if cfg.MaxConnectionAgeGrace <= 0 {
		cfg.MaxConnectionAgeGrace = DefaultMaxConnectionAgeGrace
	}
	s := &Server{
		log: cfg.Logger, errs: Errors{Domain: cfg.ErrorDomain},
		policy: cfg.Policy, mesh: cfg.Mesh, maxInFlight: int64(cfg.MaxInFlight),
		metrics: cfg.Metrics,
		maxSend: cfg.MaxSendMessageSize, sendTimeout: cfg.StreamIdleTimeout,
		refusals: newRefusalLog(),
		watchers: newWatcherCap(cfg.MaxWatchersWithoutIdentity),
	}
	s.cut, s.cutCalls = context.WithCancelCause(context.Background())
	var opts []grpc.ServerOption
	switch cfg.Mesh {
	case MeshNone:
		certs, err := newCertStore(cfg.TLS, s.log, cfg.OnTLSReload)
		if err != nil {
			return nil, err
		}
		s.certs = certs
		creds := &handshakeLogger{TransportCredentials: credentials.NewTLS(certs.config()), log: s.log}
		opts = append(opts, grpc.Creds(newCertlessCap(creds, cfg.MaxConnsWithoutCert, s.log)))
	case MeshIstio, MeshLinkerd:
		// The sidecar terminates mTLS; the listener speaks plaintext HTTP/2 to it.
	default:
		return nil, fmt.Errorf("unknown mesh mode %q (want istio or linkerd)", cfg.Mesh)
	}
	opts = append(opts,
		// The tap refuses unidentified callers from the headers alone, before any
		// message is read or decompressed.
		grpc.InTapHandle(s.tap),
		// Decode failures become INVALID_ARGUMENT through the interceptors.
		grpc.ForceServerCodecV2(decodeCapturingCodec{}),
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize),
		grpc.MaxSendMsgSize(cfg.MaxSendMessageSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxHeaderListSize(64<<10),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: 2 * time.Minute, Timeout: 20 * time.Second, MaxConnectionIdle: cfg.MaxConnectionIdle,
			MaxConnectionAge: cfg.MaxConnectionAge, MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
		}),
	)
	opts = append(opts, s.interceptors()...)
	// The call log is a stats handler: it sees every call that got past the tap, with
	// the status the caller really got, including failures before any interceptor
	// (a message too large after decompression) and after the handler (a failed send).
	opts = append(opts, grpc.StatsHandler(callLog{s}))
	if cfg.StatsHandler != nil {
		opts = append(opts, grpc.StatsHandler(cfg.StatsHandler))
	}
	s.grpc = grpc.NewServer(opts...)
	generationv1.RegisterGenerationServiceServer(s.grpc, &service{
		up: cfg.Upstream, errs: s.errs, streamIdle: cfg.StreamIdleTimeout, maxResponse: cfg.MaxSendMessageSize,
		media: cfg.Upstream.NewMediaFetcher(livepeer.MediaConfig{AllowHosts: cfg.MediaAllowHosts, MaxBytes: cfg.MaxMediaBytes}),
	})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, &boundedHealth{Server: s.health, srv: s})
	// Reflection serves the contract's descriptors with their comments, so that grpcurl
	// describe shows what a caller must know (internal/contract).
	res, err := contract.NewResolver()
	if err != nil {
		return nil, err
	}
	refl := reflection.NewServerV1(reflection.ServerOptions{Services: s.grpc, DescriptorResolver: res})
	reflectionv1.RegisterServerReflectionServer(s.grpc, refl)
	reflectionv1alpha.RegisterServerReflectionServer(s.grpc, reflection.NewServer(reflection.ServerOptions{Services: s.grpc, DescriptorResolver: res}))
	if s.metrics != nil {
		s.metrics.Server.InitializeMetrics(s.grpc)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(generationv1.GenerationService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Ready reports whether the server can take calls: certificates and key loaded (they
// are, once New returns) and not draining.
func (s *Server) Ready() bool { return !s.draining.Load() && !s.shuttingDown.Load() }

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown drains the server: health turns NOT_SERVING so load balancers stop sending,
// and after drainDelay the server stops accepting calls (GOAWAY) and waits for
// in-flight calls until ctx ends, then closes whatever is left.
func (s *Server) Shutdown(ctx context.Context, drainDelay time.Duration) {
	s.shuttingDown.Store(true)
	s.health.Shutdown() // every service NOT_SERVING
	if drainDelay > 0 {
		t := time.NewTimer(drainDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	s.draining.Store(true)
	// Health watchers have been told NOT_SERVING; end their streams so they do not
	// hold GracefulStop for the whole grace period.
	s.watchers.endAll()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("shutdown grace period over; ending the remaining calls with SHUTTING_DOWN")
		// Cancel the calls' contexts first, so each handler returns and its caller gets
		// SHUTTING_DOWN (and the call is logged with it) before connections close.
		s.cutCalls(errShutdownCut)
		t := time.NewTimer(cutWait)
		select {
		case <-done:
		case <-t.C:
			s.grpc.Stop()
			<-done
		}
		t.Stop()
	}
}

// errShutdownCut is the cause of a call's cancellation at the end of the grace period.
var errShutdownCut = errors.New("shutdown grace period over")

// cutWait is how long cancelled calls get to write their status before connections close.
const cutWait = 2 * time.Second

// MethodNames lists GenerationService's RPC names, as a policy names them.
func MethodNames() []string {
	d := generationv1.GenerationService_ServiceDesc
	names := make([]string, 0, len(d.Methods)+len(d.Streams))
	for _, m := range d.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range d.Streams {
		names = append(names, s.StreamName)
	}
	return names
}
