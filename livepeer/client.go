// Package livepeer is the REST client for the Livepeer AI gateway (Livepeer Studio's
// /api/generate, or a go-livepeer gateway). It knows nothing about gRPC: it turns
// typed requests into JSON or multipart HTTP requests carrying the backend key as a
// Bearer token, and upstream failures into typed errors (StatusError, TransportError,
// BadResponseError) for the caller to map.
package livepeer

import (
	"genservice/livepeer/pipeline"

	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
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
		cfg.MaxResponseBytes = 64 << 20
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 2
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 256
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

// CallInfo collects what happened upstream during one gRPC call, for the call's log line
// and metrics. Attach one with WithCallInfo; the client fills it in.
type CallInfo struct {
	// RequestID is the call's id, set by the caller, for log lines about the call.
	RequestID string
	Pipeline  string
	// Attempts made (0 when nothing was sent).
	Attempts int
	// Status is the last HTTP status received (0 when none).
	Status int
	// Upstream is the total time spent waiting on the gateway, in nanoseconds.
	upstream atomic.Int64
	// KeyFingerprint identifies the key the last attempt used.
	KeyFingerprint string
}

func (ci *CallInfo) addUpstream(d time.Duration) {
	if ci != nil {
		ci.upstream.Add(int64(d))
	}
}

// UpstreamDuration returns the time spent in upstream requests.
func (ci *CallInfo) UpstreamDuration() time.Duration { return time.Duration(ci.upstream.Load()) }

type callInfoKey struct{}

// WithCallInfo returns a context whose upstream requests record into ci.
func WithCallInfo(ctx context.Context, ci *CallInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

// CallInfoFrom returns the CallInfo attached to ctx, or nil.
func CallInfoFrom(ctx context.Context) *CallInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*CallInfo)
	return ci
}

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

// post sends one pipeline request, retrying where safe, and decodes a 2xx JSON answer
// into out (which must have a check method).
func (c *Client) post(ctx context.Context, pipeline string, b *body, out checker) error {
	resp, ctx, cancel, err := c.send(ctx, pipeline, b, "application/json")
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	// Reading the body is upstream time too: the gateway may send it slowly.
	start := time.Now()
	err = c.decode(ctx, pipeline, resp, out)
	CallInfoFrom(ctx).addUpstream(time.Since(start))
	return err
}

type checker interface{ check() error }

// send performs the attempts of one request and returns the first usable (2xx) response,
// the context its body must be read under (it carries the per-pipeline timeout) and a
// cancel func that releases it, or an error. The retry loop lives here and only here.
func (c *Client) send(ctx context.Context, pipeline string, b *body, accept string) (*http.Response, context.Context, context.CancelFunc, error) {
	ci := CallInfoFrom(ctx)
	if ci != nil {
		ci.Pipeline = pipeline
	}
	// Without a caller deadline, bound the call by the pipeline's timeout, and report
	// its expiry as an upstream timeout rather than the caller's deadline.
	cancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeoutCause(ctx, c.timeouts[pipeline], errPipelineTimeout)
	}
	endpoint := c.baseStr + "/" + pipeline
	refreshed := false
	for attempt := 1; ; attempt++ {
		key := c.keys.Key()
		resp, wrote, err := c.attempt(ctx, pipeline, attempt, endpoint, key, b, accept, ci)
		if err != nil {
			if ctx.Err() != nil {
				cancel()
				return nil, nil, nil, ctxCause(ctx, pipeline)
			}
			// net/http quotes what a broken gateway sent (a malformed status or header
			// line) in its errors, so the error's text is redacted like a body.
			terr := &TransportError{Pipeline: pipeline, Err: err, AfterRequest: wrote, redactor: newKeyRedactor(key, c.keys.Key())}
			if attempt < c.maxAttempts && isConnectError(err) && c.backoff(ctx, pipeline, attempt, 0, "connect error: "+terr.detail()) {
				continue
			}
			cancel()
			return nil, nil, nil, terr
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp, ctx, cancel, nil
		}
		serr := c.statusError(pipeline, resp, key)
		serr.KeyFingerprint = key.Fingerprint()
		if serr.StatusCode == http.StatusUnauthorized && !refreshed {
			// The key may have been rotated while this request was out (the watch
			// already swapped it) or before the watch noticed (re-read the file): if
			// the current key differs from the one rejected, retry once with it. The
			// retry is not counted as an attempt.
			refreshed = true
			current := c.keys.Key()
			if r, ok := c.keys.(Refresher); ok && current.Equal(key) {
				current = r.Refresh()
			}
			if !current.Equal(key) && !current.IsZero() {
				attempt--
				continue
			}
		}
		if attempt < c.maxAttempts && serr.retryable() && fitsDeadline(ctx, serr.RetryAfter) && c.backoff(ctx, pipeline, attempt, serr.RetryAfter, statusText(serr.StatusCode)) {
			continue
		}
		cancel()
		return nil, nil, nil, serr
	}
}

var errPipelineTimeout = errors.New("pipeline timeout")

// attempt sends one request. wrote reports whether the whole request was written before
// a failure: a gateway that then closes the connection without answering did receive it
// (UPSTREAM §12.2), which is not the same as not reaching it.
func (c *Client) attempt(ctx context.Context, pipeline string, n int, endpoint string, key APIKey, b *body, accept string, ci *CallInfo) (resp *http.Response, wrote bool, err error) {
	var written atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { written.Store(info.Err == nil) },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, b.open())
	if err != nil {
		return nil, false, err
	}
	req.ContentLength = b.size
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(b.open()), nil }
	req.Header["Content-Type"] = []string{b.contentType}
	req.Header["Accept"] = []string{accept}
	req.Header["User-Agent"] = []string{c.userAgent}
	req.Header["Authorization"] = []string{key.authorization()}
	start := time.Now()
	c.obs.AttemptStarted()
	resp, err = c.http.Do(req)
	elapsed := time.Since(start)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	c.obs.AttemptDone(pipeline, n, status, elapsed)
	if ci != nil {
		ci.Attempts++
		ci.KeyFingerprint = key.Fingerprint()
		ci.upstream.Add(int64(elapsed))
		if resp != nil {
			ci.Status = resp.StatusCode
		}
	}
	return resp, written.Load(), err
}

func fitsDeadline(ctx context.Context, wait time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > wait
}

// backoff sleeps before the next attempt: at least retryAfter, else jittered exponential
// from 100 ms. It returns false if the context ends first.
// Each retry is logged with what failed; the call's own log line has the total.
func (c *Client) backoff(ctx context.Context, pipeline string, attempt int, retryAfter time.Duration, outcome string) bool {
	d := retryAfter
	if d <= 0 {
		base := 100 * time.Millisecond << (attempt - 1)
		base = min(base, 2*time.Second)
		d = base/2 + rand.N(base/2+1)
	}
	if !fitsDeadline(ctx, d) {
		return false
	}
	requestID := ""
	if ci := CallInfoFrom(ctx); ci != nil {
		requestID = ci.RequestID
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "upstream attempt failed; retrying",
		slog.String("requestId", requestID), slog.String("pipeline", pipeline),
		slog.Int("attempt", attempt), slog.String("outcome", outcome),
		slog.Duration("backoff", d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isConnectError reports errors where the request certainly never reached the gateway,
// so retrying cannot run a generation twice.
func isConnectError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// ctxCause reports why ctx ended: genservice's own per-pipeline timeout becomes a
// TransportError{Timeout: true}; the caller's deadline or cancellation its context error.
func ctxCause(ctx context.Context, pipeline string) error {
	if errors.Is(context.Cause(ctx), errPipelineTimeout) {
		return &TransportError{Pipeline: pipeline, Timeout: true, Err: errPipelineTimeout}
	}
	return ctxError(ctx)
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	// A gRPC client resets the stream when its own deadline passes, a moment before the
	// server's copy of the deadline fires; the server then sees a cancellation. Call it
	// what it is, so logs and metrics count deadlines as deadlines.
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 20*time.Millisecond {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

func (c *Client) statusError(pipeline string, resp *http.Response, key APIKey) *StatusError {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// A gateway or proxy may echo the Authorization header back, escaped or cut: the key
	// (and any long fragment of it) is scrubbed from the decoded, sanitized text before
	// anything of the body reaches a status or a log. The current key is scrubbed too, in
	// case it changed while this request was out.
	msg, violations := parseErrorBody(raw, key, c.keys.Key())
	e := NewStatusError(pipeline, resp.StatusCode, msg, violations)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.RetryAfter, e.HasRetryAfter = ParseRetryAfter(ra, time.Now())
	}
	return e
}

func (c *Client) decode(ctx context.Context, pipeline string, resp *http.Response, out checker) error {
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		if mt == "" {
			mt = "no content type"
		}
		return &BadResponseError{Pipeline: pipeline, Reason: "expected application/json, got " + mt}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxResp+1))
	if err != nil {
		if ctx.Err() != nil {
			return ctxCause(ctx, pipeline)
		}
		return &TransportError{Pipeline: pipeline, Err: err, AfterRequest: true}
	}
	switch {
	case int64(len(data)) > c.maxResp:
		return &BadResponseError{Pipeline: pipeline, Reason: fmt.Sprintf("body larger than %d bytes", c.maxResp)}
	case len(bytes.TrimSpace(data)) == 0:
		return &BadResponseError{Pipeline: pipeline, Reason: "empty body"}
	}
	if err := json.Unmarshal(data, out); err != nil {
		// encoding/json quotes number literals of the body in its errors.
		return &BadResponseError{Pipeline: pipeline, Reason: "invalid JSON: " + newKeyRedactor(c.keys.Key()).text(Sanitize(err.Error()))}
	}
	if err := out.check(); err != nil {
		return &BadResponseError{Pipeline: pipeline, Reason: err.Error()}
	}
	return nil
}

// absolute resolves a result URL against the gateway URL: a go-livepeer gateway may
// return "/stream/<id>/<n>.png", which a caller elsewhere could not use.
func (c *Client) absolute(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.IsAbs() {
		return raw
	}
	return c.base.ResolveReference(u).String()
}

func (c *Client) absoluteMedia(ms []Media) {
	for i := range ms {
		ms[i].URL = c.absolute(ms[i].URL)
	}
}

// TextToImage calls POST /text-to-image.
func (c *Client) TextToImage(ctx context.Context, p *TextToImageParams) (*ImageResponse, error) {
	b, err := jsonBody(p)
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineTextToImage, b)
}

// ImageToImage calls POST /image-to-image.
func (c *Client) ImageToImage(ctx context.Context, p *ImageToImageParams) (*ImageResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineImageToImage, b)
}

// ImageToVideo calls POST /image-to-video.
func (c *Client) ImageToVideo(ctx context.Context, p *ImageToVideoParams) (*ImageResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineImageToVideo, b)
}

// Upscale calls POST /upscale.
func (c *Client) Upscale(ctx context.Context, p *UpscaleParams) (*ImageResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	return c.images(ctx, PipelineUpscale, b)
}

func (c *Client) images(ctx context.Context, pipeline string, b *body) (*ImageResponse, error) {
	var out ImageResponse
	if err := c.post(ctx, pipeline, b, &out); err != nil {
		return nil, err
	}
	c.absoluteMedia(out.Images)
	return &out, nil
}

// AudioToText calls POST /audio-to-text.
func (c *Client) AudioToText(ctx context.Context, p *AudioToTextParams) (*TextResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	var out TextResponse
	if err := c.post(ctx, PipelineAudioToText, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SegmentAnything2 calls POST /segment-anything-2.
func (c *Client) SegmentAnything2(ctx context.Context, p *SegmentAnything2Params) (*MasksResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	var out MasksResponse
	if err := c.post(ctx, PipelineSegmentAnything2, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// LLM calls POST /llm with stream=false.
func (c *Client) LLM(ctx context.Context, p *LLMRequest) (*LLMResponse, error) {
	q := *p
	q.Stream = false
	b, err := jsonBody(&q)
	if err != nil {
		return nil, err
	}
	var out LLMResponse
	if err := c.post(ctx, PipelineLLM, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ImageToText calls POST /image-to-text.
func (c *Client) ImageToText(ctx context.Context, p *ImageToTextParams) (*ImageToTextResponse, error) {
	b, err := c.formBody(p.form())
	if err != nil {
		return nil, err
	}
	var out ImageToTextResponse
	if err := c.post(ctx, PipelineImageToText, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TextToSpeech calls POST /text-to-speech.
func (c *Client) TextToSpeech(ctx context.Context, p *TextToSpeechParams) (*AudioResponse, error) {
	b, err := jsonBody(p)
	if err != nil {
		return nil, err
	}
	var out AudioResponse
	if err := c.post(ctx, PipelineTextToSpeech, b, &out); err != nil {
		return nil, err
	}
	out.Audio.URL = c.absolute(out.Audio.URL)
	return &out, nil
}
