// Package metrics holds genservice's Prometheus collectors: the gRPC server metrics of
// go-grpc-middleware's provider plus the service's own (upstream requests, overhead,
// reloads, certificate expiry, calls and errors by principal, LLM tokens by principal,
// in-flight upstream calls, build info).
//
// No label ever carries a key, a prompt or another unbounded value: labels are method
// and pipeline names, HTTP status codes, attempt numbers up to the configured maximum,
// error reasons from the contract, and principals (bounded by the certificates the
// client CA issued).
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of collectors, registered on its own registry.
type Metrics struct {
	Registry *prometheus.Registry
	// Server is the go-grpc-middleware provider; its interceptors go into the chain.
	Server *grpcprom.ServerMetrics

	upstreamRequests *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	upstreamInFlight prometheus.Gauge
	overhead         *prometheus.HistogramVec
	reloads          *prometheus.CounterVec
	errors           *prometheus.CounterVec
	calls            *prometheus.CounterVec
	tokens           *prometheus.CounterVec
	buildInfo        *prometheus.GaugeVec
}

// latencyBuckets span a fast text-to-image call to a slow image-to-video one.
var latencyBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// overheadBuckets are for genservice's own time per call, which should be well under a
// millisecond.
var overheadBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05}

// New creates and registers the collectors. The certificate expiry gauge comes with the
// server that owns the certificate (TrackCertificateExpiry).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Server: grpcprom.NewServerMetrics(
			grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramBuckets(latencyBuckets)),
		),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "genservice_upstream_requests_total",
			Help: "Requests sent to the Livepeer gateway, by pipeline, HTTP status (or \"error\" when no response arrived) and attempt number.",
		}, []string{"pipeline", "status", "attempt"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "genservice_upstream_request_duration_seconds",
			Help:    "Time from sending a request to the gateway until its response headers (or failure), by pipeline and HTTP status.",
			Buckets: latencyBuckets,
		}, []string{"pipeline", "status"}),
		upstreamInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "genservice_upstream_in_flight",
			Help: "Requests to the gateway currently waiting for a response.",
		}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "genservice_call_overhead_seconds",
			Help:    "genservice's own time per call: total handling time minus time spent waiting on the gateway.",
			Buckets: overheadBuckets,
		}, []string{"grpc_method"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "genservice_reloads_total",
			Help: "Reloads of the API key file, TLS files and policy file, by kind and result.",
		}, []string{"kind", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "genservice_call_errors_total",
			Help: "Failed calls by caller principal, method, gRPC code and ErrorInfo reason (denials, rate limits and upstream 401s included).",
		}, []string{"principal", "grpc_method", "grpc_code", "reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "genservice_calls_total",
			Help: "Calls by caller principal, method and gRPC code: who uses the service (and the account's budget).",
		}, []string{"principal", "grpc_method", "grpc_code"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "genservice_llm_tokens_total",
			Help: "LLM tokens the gateway reported, by caller principal and kind (prompt or completion): the share of the account's LLM spend.",
		}, []string{"principal", "kind"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "genservice_build_info",
			Help: "Always 1; the labels say which build is running.",
		}, []string{"version", "goversion"}),
	}
	reg.MustRegister(m.Server, m.upstreamRequests, m.upstreamDuration, m.upstreamInFlight, m.overhead, m.reloads, m.errors,
		m.calls, m.tokens, m.buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, kind := range []string{"key", "tls", "policy"} {
		for _, result := range []string{"success", "failure"} {
			m.reloads.WithLabelValues(kind, result)
		}
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// AttemptStarted records an upstream request going out.
func (m *Metrics) AttemptStarted() { m.upstreamInFlight.Inc() }

// AttemptDone records an upstream attempt's outcome; status 0 means no response.
func (m *Metrics) AttemptDone(pipeline string, attempt, status int, d time.Duration) {
	m.upstreamInFlight.Dec()
	s := "error"
	if status > 0 {
		s = strconv.Itoa(status)
	}
	m.upstreamRequests.WithLabelValues(pipeline, s, strconv.Itoa(attempt)).Inc()
	m.upstreamDuration.WithLabelValues(pipeline, s).Observe(d.Seconds())
}

// CallDone records a finished call: its overhead, and for failures the principal,
// code and reason.
func (m *Metrics) CallDone(method, principal, code, reason string, overhead time.Duration, failed bool) {
	m.overhead.WithLabelValues(method).Observe(overhead.Seconds())
	m.calls.WithLabelValues(principal, method, code).Inc()
	if failed {
		m.errors.WithLabelValues(principal, method, code, reason).Inc()
	}
}

// Reloaded returns a callback that counts reloads of one kind ("key", "tls", "policy").
func (m *Metrics) Reloaded(kind string) func(error) {
	ok, fail := m.reloads.WithLabelValues(kind, "success"), m.reloads.WithLabelValues(kind, "failure")
	return func(err error) {
		if err != nil {
			fail.Inc()
			return
		}
		ok.Inc()
	}
}

// LLMTokens adds the tokens of one LLM call to its caller's count.
func (m *Metrics) LLMTokens(principal string, prompt, completion int) {
	m.tokens.WithLabelValues(principal, "prompt").Add(float64(prompt))
	m.tokens.WithLabelValues(principal, "completion").Add(float64(completion))
}

// SetBuildInfo sets genservice_build_info for version.
func (m *Metrics) SetBuildInfo(version string) {
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// TrackCertificateExpiry registers genservice_certificate_expiry_seconds, read from
// notAfter at every scrape (the certificate rotates). Call it once, with the server that
// serves the certificate.
func (m *Metrics) TrackCertificateExpiry(notAfter func() time.Time) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "genservice_certificate_expiry_seconds",
		Help: "Seconds until the serving certificate expires (negative once expired).",
	}, func() float64 { return time.Until(notAfter()).Seconds() }))
}
