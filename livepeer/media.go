package livepeer

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MediaFetcher downloads result media for inline delivery. It fetches only from the
// gateway's host and the operator's allowed hosts, never follows redirects (a redirect
// could point anywhere, including internal addresses), never sends the API key, and
// caps the size. That keeps inline_media from becoming a way to make genservice fetch
// arbitrary URLs (SSRF).
type MediaFetcher struct {
	http     *http.Client
	allowed  map[string]bool // lowercase host:port (default port explicit), exact
	anyPort  map[string]bool // lowercase hosts allowed on every port
	maxBytes int64
}

// MediaConfig configures a MediaFetcher.
type MediaConfig struct {
	// AllowHosts are hosts (or host:port) media may come from besides the gateway's own.
	AllowHosts []string
	// MaxBytes caps one media file. Default DefaultMaxMediaBytes.
	MaxBytes int64
}

// DefaultMaxMediaBytes caps one inline media file: a short video or a large image. It
// is half of the server's default largest response (32 MiB) so that the media, the
// response's other fields and a second result still fit in one message.
const DefaultMaxMediaBytes = 16 << 20

// NewMediaFetcher returns a fetcher allowed to read from the client's gateway host and
// cfg.AllowHosts, sharing the client's transport.
func (c *Client) NewMediaFetcher(cfg MediaConfig) *MediaFetcher {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxMediaBytes
	}
	// The gateway's own origin is allowed exactly: another port on the same host is
	// another service. An operator's entry without a port allows that host on any port;
	// with a port, only that port.
	allowed := map[string]bool{hostPort(c.base.Scheme, c.base.Host): true}
	anyPort := map[string]bool{}
	for _, h := range cfg.AllowHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err == nil {
			allowed[h] = true
			continue
		}
		anyPort[strings.Trim(h, "[]")] = true
	}
	return &MediaFetcher{
		http:     &http.Client{Transport: c.http.Transport, CheckRedirect: noRedirects},
		allowed:  allowed,
		anyPort:  anyPort,
		maxBytes: cfg.MaxBytes,
	}
}

// hostPort normalises a URL host to lowercase host:port with the scheme's default port.
func hostPort(scheme, host string) string {
	host = strings.ToLower(host)
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "443"
	if scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// check refuses URLs that are not http(s) on an allowed host.
func (f *MediaFetcher) check(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return nil, &MediaRefusedError{Host: "", Reason: "not an absolute URL"}
	}
	host := strings.ToLower(u.Host)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, &MediaRefusedError{Host: host, Reason: "scheme " + u.Scheme + " is not http or https"}
	}
	if u.User != nil {
		return nil, &MediaRefusedError{Host: host, Reason: "URL carries credentials"}
	}
	if u.Hostname() == "" {
		return nil, &MediaRefusedError{Host: host, Reason: "URL has no host"}
	}
	if !f.allowed[hostPort(u.Scheme, host)] && !f.anyPort[strings.ToLower(u.Hostname())] {
		return nil, &MediaRefusedError{Host: host, Reason: "host is neither the gateway's nor on --media-allow-host"}
	}
	return u, nil
}

// Check reports whether url may be fetched, without fetching it.
func (f *MediaFetcher) Check(rawURL string) error {
	_, err := f.check(rawURL)
	return err
}

// MaxBytes is the cap on one media file.
func (f *MediaFetcher) MaxBytes() int64 { return f.maxBytes }

// Fetch downloads one media file within ctx's deadline, up to the per-file cap.
func (f *MediaFetcher) Fetch(ctx context.Context, rawURL string) (content []byte, contentType string, err error) {
	return f.FetchLimit(ctx, rawURL, f.maxBytes)
}

// FetchLimit is Fetch with a tighter cap for this file: limit, when it is below the
// per-file cap (the caller's remaining room in a response). A larger file fails with
// MediaTooLargeError{Limit: limit} after reading at most limit+1 bytes, or none when
// its Content-Length already says so.
func (f *MediaFetcher) FetchLimit(ctx context.Context, rawURL string, limit int64) (content []byte, contentType string, err error) {
	limit = min(limit, f.maxBytes)
	if limit < 0 {
		limit = 0
	}
	u, err := f.check(rawURL)
	if err != nil {
		return nil, "", err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", &MediaFetchError{Err: err}
	}
	start := time.Now()
	resp, err := f.http.Do(req)
	defer func() { TraceFrom(ctx).addUpstream(time.Since(start)) }()
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctxError(ctx)
		}
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, "", &MediaFetchError{Err: op}
		}
		return nil, "", &MediaFetchError{Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", &MediaFetchError{Status: resp.StatusCode}
	}
	if resp.ContentLength > limit {
		return nil, "", &MediaTooLargeError{Limit: limit}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctxError(ctx)
		}
		return nil, "", &MediaFetchError{Err: err}
	}
	if int64(len(data)) > limit {
		return nil, "", &MediaTooLargeError{Limit: limit}
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "" || ct == "application/octet-stream" {
		ct = DetectContentType(data)
	}
	return data, ct, nil
}
