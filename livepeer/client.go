// Package livepeer is the REST client for the Livepeer AI gateway (Livepeer Studio's
// /api/generate, or a go-livepeer gateway). It knows nothing about gRPC: it turns
// typed requests into JSON or multipart HTTP requests carrying the backend key as a
// Bearer token, and upstream failures into typed errors (StatusError, TransportError,
// BadResponseError) for the caller to map.
package livepeer

import (
	"genservice/livepeer/pipeline"

	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultGatewayURL is Livepeer Studio's generate API.
const DefaultGatewayURL = "https://livepeer.studio/api/generate"

// Config configures a Client.
type Config struct {
	// GatewayURL is the base URL; pipeline paths are appended ("<GatewayURL>/text-to-image").
	GatewayURL string
	// Keys supplies the backend API key for each request.
	Keys KeySource
	// Transport overrides the HTTP transport (tests, benchmarks). Default: NewTransport.
	Transport http.RoundTripper
	// RootCAs, if set, replaces the system roots for the gateway's TLS certificate.
	RootCAs *x509.CertPool
	// MaxResponseBytes caps a success body. Default 64 MiB (segment-anything-2 masks are
	// large text arrays).
	MaxResponseBytes int64
	// MaxAttempts is the number of attempts for retryable failures (connect errors, 502,
	// 503, 504, 429 whose Retry-After fits the deadline). Default 2; 1 disables retries.
	MaxAttempts int
	// ConnectTimeout bounds dialing and the TLS handshake. Default 10s.
	ConnectTimeout time.Duration
	// Timeouts are per-pipeline limits applied when the caller's context has no deadline.
	// Missing pipelines use DefaultTimeouts.
	Timeouts map[string]time.Duration
	// UserAgent is sent on every request.
	UserAgent string
	// MaxIdleConnsPerHost sizes the keep-alive pool; Go's default of 2 throttles a proxy.
	// Default 256.
	MaxIdleConnsPerHost int
	// Observer, if set, is told about every attempt (metrics).
	Observer Observer
	// WrapTransport, if set, wraps the transport (tracing).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Logger receives one line per retried attempt. Default: discard.
	Logger *slog.Logger
}

// Observer receives every upstream attempt. Implementations must be cheap and safe for
// concurrent use.
type Observer interface {
	AttemptStarted()
	// AttemptDone reports an attempt's HTTP status (0: no response) and the time until
	// the response headers or the failure.
	AttemptDone(pipeline string, attempt, status int, d time.Duration)
}

type noObserver struct{}

func (noObserver) AttemptStarted()                             {}
func (noObserver) AttemptDone(string, int, int, time.Duration) {}

// DefaultTimeouts bounds each pipeline when the caller sets no deadline, from the
// pipeline table.
var DefaultTimeouts = func() map[string]time.Duration {
	m := map[string]time.Duration{}
	for _, p := range pipeline.All() {
		m[p.Name] = p.Timeout
	}
	return m
}()

// Client calls the gateway. It is safe for concurrent use.
type Client struct {
	base        *url.URL
	baseStr     string
	keys        KeySource
	http        *http.Client
	maxResp     int64
	maxAttempts int
	timeouts    map[string]time.Duration
	userAgent   string
	obs         Observer
	log         *slog.Logger
	// studio is set when the gateway URL is Livepeer Studio's generate API, whose
	// multipart coercion refuses some strings (form.studioCheck).
	studio bool
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.GatewayURL == "" {
		cfg.GatewayURL = DefaultGatewayURL
	}
	base, err := ParseGatewayURL(cfg.GatewayURL)
	if err != nil {
		return nil, err
	}
	if cfg.Keys == nil {
		return nil, errors.New("livepeer: no key source")
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "genservice"
	}
	timeouts := make(map[string]time.Duration, len(DefaultTimeouts))
	for k, v := range DefaultTimeouts {
		timeouts[k] = v
	}
	for k, v := range cfg.Timeouts {
		timeouts[k] = v
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rt := cfg.Transport
	if rt == nil {
		rt = NewTransport(cfg.ConnectTimeout, cfg.MaxIdleConnsPerHost, cfg.RootCAs)
	}
	if cfg.WrapTransport != nil {
		rt = cfg.WrapTransport(rt)
	}
	return &Client{
		base:        base,
		baseStr:     strings.TrimSuffix(base.String(), "/"),
		keys:        cfg.Keys,
		http:        &http.Client{Transport: rt, CheckRedirect: noRedirects},
		maxResp:     cfg.MaxResponseBytes,
		maxAttempts: cfg.MaxAttempts,
		timeouts:    timeouts,
		userAgent:   cfg.UserAgent,
		obs:         cfg.Observer,
		log:         cfg.Logger,
		studio:      IsStudioURL(base),
	}, nil
}

// IsStudioURL reports whether a gateway URL is Livepeer Studio's generate API: its path
// ends in /api/generate or /api/beta/generate (UPSTREAM §12.6), wherever it is hosted.
func IsStudioURL(u *url.URL) bool {
	p := strings.TrimSuffix(u.Path, "/")
	return strings.HasSuffix(p, "/api/generate") || strings.HasSuffix(p, "/api/beta/generate")
}

// noRedirects stops the client from following redirects: a redirect would re-send the
// Authorization header's request to wherever the gateway points, and a POST body cannot
// be replayed safely anyway. The 3xx surfaces as UPSTREAM_REJECTED.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ParseGatewayURL checks that raw is an absolute http(s) URL without query, fragment or
// credentials.
func ParseGatewayURL(raw string) (*url.URL, error) {
	// Errors never repeat the URL's credentials, query or fragment: an operator may
	// have pasted the key there.
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, errors.New("gateway URL is not a valid URL")
	case u.User != nil:
		return nil, errors.New("gateway URL must not contain credentials; the key comes from LIVEPEER_API_KEY or LIVEPEER_API_KEY_FILE")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, errors.New("gateway URL must not have a query or fragment; the key comes from LIVEPEER_API_KEY or LIVEPEER_API_KEY_FILE")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("gateway URL %q must start with https:// (or http:// for a local gateway)", u.Scheme+"://"+u.Host+u.Path)
	case u.Host == "":
		return nil, fmt.Errorf("gateway URL %q has no host", u.Scheme+"://"+u.Path)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// NewTransport returns the shared transport: keep-alive with a pool sized for a proxy,
// HTTP/2 when the gateway offers it, bounded connect and TLS handshake times.
func NewTransport(connectTimeout time.Duration, idlePerHost int, roots *x509.CertPool) *http.Transport {
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          idlePerHost * 2,
		MaxIdleConnsPerHost:   idlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connectTimeout,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots},
	}
}

// GatewayURL returns the configured base URL.
func (c *Client) GatewayURL() string { return c.baseStr }

// body is a replayable request body.
type body struct {
	contentType string
	size        int64
	open        func() io.Reader
}

func jsonBody(v any) (*body, error) {
	b, err := json.Marshal(v)
	var unsupported *json.UnsupportedValueError
	if errors.As(err, &unsupported) {
		// NaN and ±Inf: JSON has no such numbers. The caller's value, not our bug.
		return nil, &InvalidParamError{Reason: "a number is " + unsupported.Str + ", which JSON cannot carry: numbers must be finite"}
	}
	var invalid *InvalidParamError
	if errors.As(err, &invalid) {
		// A field's own encoding refused its value (Loras.MarshalJSON).
		return nil, invalid
	}
	if err != nil {
		return nil, err
	}
	return &body{contentType: "application/json", size: int64(len(b)), open: func() io.Reader { return bytes.NewReader(b) }}, nil
}

func (c *Client) formBody(f *form) (*body, error) {
	if c.studio {
		if err := f.studioCheck(); err != nil {
			return nil, err
		}
	}
	enc, err := f.encode()
	if err != nil {
		return nil, err
	}
	return &body{contentType: enc.contentType, size: enc.size, open: enc.reader}, nil
}
