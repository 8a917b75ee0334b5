package livepeer

// Tests of MediaFetcher (inline_media): it fetches only from the gateway's host and the
// allowed hosts, follows no redirects, never sends the API key, caps the size. Foreign
// hosts are real loopback HTTP servers that count what reaches them.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

// stHost is a loopback HTTP server that records the headers of every request.
type stHost struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []http.Header
	urls []string
}

func stNewHost(t *testing.T, h http.HandlerFunc) *stHost {
	t.Helper()
	m := &stHost{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.reqs = append(m.reqs, r.Header.Clone())
		m.urls = append(m.urls, r.Method+" "+r.URL.Path)
		m.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *stHost) hits() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reqs)
}

func (m *stHost) headers() []http.Header {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]http.Header(nil), m.reqs...)
}

// port returns the listening port.
func (m *stHost) port() string {
	_, p, _ := net.SplitHostPort(m.srv.Listener.Addr().String())
	return p
}

// stServe answers with body and content type (no type: none sent, not sniffed).
func stServe(ctype string, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		} else {
			w.Header()["Content-Type"] = nil
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}
}

// stGet fetches u with a plain client: the bytes anyone would get from that URL.
func stGet(t *testing.T, u string) ([]byte, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return b, resp.Header.Get("Content-Type")
}

// TestMediaFetcher_FetchesGatewayMedia: results on the gateway's host are fetched
// byte for byte with their content type (image, audio, video).
func TestMediaFetcher_FetchesGatewayMedia(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	c := stClient(t, sim.URL(), nil)
	f := c.NewMediaFetcher(MediaConfig{})
	ctx := context.Background()

	img, err := c.TextToImage(ctx, &TextToImageParams{ModelID: DefaultModels[PipelineTextToImage], Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	tts, err := c.TextToSpeech(ctx, &TextToSpeechParams{ModelID: DefaultModels[PipelineTextToSpeech], Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	vid, err := c.ImageToVideo(ctx, &ImageToVideoParams{ModelID: DefaultModels[PipelineImageToVideo], Image: File{ContentType: "image/png", Content: stPNG(t)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ url, ctype string }{
		{img.Images[0].URL, "image/png"},
		{tts.Audio.URL, "audio/wav"},
		{vid.Images[0].URL, "video/mp4"},
	} {
		want, _ := stGet(t, tc.url)
		got, ct, err := f.Fetch(ctx, tc.url)
		if err != nil {
			t.Fatalf("Fetch %s: %v", tc.url, err)
		}
		if !bytes.Equal(got, want) || ct != tc.ctype {
			t.Errorf("Fetch %s = %d bytes %q, want %d bytes %q", tc.url, len(got), ct, len(want), tc.ctype)
		}
	}
}

// stPNG fetches a PNG from a throwaway simulator, so uploads are real images.
func stPNG(t *testing.T) []byte {
	t.Helper()
	sim := stSim(t, livepeertest.Config{})
	b, _ := stGet(t, sim.Origin()+"/stream/0000000a/0.png")
	return b
}

// TestMediaFetcher_RelativeURLFetched: a go-livepeer gateway's relative result URL is
// made absolute on the gateway and fetched from there.
func TestMediaFetcher_RelativeURLFetched(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{RelativeURLs: true})
	c := stClient(t, sim.URL(), nil)
	img, err := c.TextToImage(context.Background(), &TextToImageParams{ModelID: DefaultModels[PipelineTextToImage], Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	u := img.Images[0].URL
	if !strings.HasPrefix(u, sim.Origin()+"/stream/") {
		t.Fatalf("url = %q, want absolute on %s", u, sim.Origin())
	}
	want, _ := stGet(t, u)
	got, ct, err := c.NewMediaFetcher(MediaConfig{}).Fetch(context.Background(), u)
	if err != nil || !bytes.Equal(got, want) || ct != "image/png" {
		t.Fatalf("Fetch = %d bytes %q %v", len(got), ct, err)
	}
}

// TestMediaFetcher_RefusesForeignURLs: URLs off the allowed hosts, with other schemes,
// credentials or no host are refused by Check and by Fetch, and nothing is requested.
func TestMediaFetcher_RefusesForeignURLs(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	other := stNewHost(t, stServe("image/png", []byte("x")))
	c := stClient(t, sim.URL(), nil)
	f := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{"cdn.example.com:8443"}})
	gw := strings.TrimPrefix(sim.Origin(), "http://")
	for _, raw := range []string{
		"http://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"http://metadata.google.internal/computeMetadata/v1/",
		"http://localhost:" + other.port() + "/a.png", // same machine, another name
		"ftp://" + gw + "/stream/00000001/0.png",
		"file:///etc/passwd",
		"gopher://" + gw + "/_",
		"/stream/00000001/0.png",
		"//" + gw + "/stream/00000001/0.png",
		"http://user:pass@" + gw + "/stream/00000001/0.png",
		"https://cdn.example.com/a.png",      // allowed only on port 8443
		"https://cdn.example.com.evil/a.png", // suffix tricks
		"http://127.0.0.1.evil.example/a.png",
		"",
		"::not a url",
	} {
		if err := f.Check(raw); !stIsRefused(err) {
			t.Errorf("Check(%q) = %v, want *MediaRefusedError", raw, err)
		}
		if _, _, err := f.Fetch(context.Background(), raw); !stIsRefused(err) {
			t.Errorf("Fetch(%q) = %v, want *MediaRefusedError", raw, err)
		}
	}
	if n := other.hits(); n != 0 {
		t.Errorf("the foreign host got %d requests, want 0", n)
	}
}

func stIsRefused(err error) bool {
	var mre *MediaRefusedError
	return errors.As(err, &mre)
}

// TestMediaFetcher_RefusesOtherPortOnGatewayHost: only the gateway's own origin is
// implicitly trusted, not every port on its host: a result URL on 127.0.0.1:<other>
// (an admin listener, a sidecar, a database console) or livepeer.studio:8443 is
// refused unless the operator allowed it.
func TestMediaFetcher_RefusesOtherPortOnGatewayHost(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	other := stNewHost(t, stServe("image/png", []byte("internal secrets")))
	c := stClient(t, sim.URL(), nil)
	f := c.NewMediaFetcher(MediaConfig{})
	u := "http://127.0.0.1:" + other.port() + "/a.png"
	if _, _, err := f.Fetch(context.Background(), u); !stIsRefused(err) {
		t.Errorf("Fetch(%q) = %v, want *MediaRefusedError: another port on the gateway's host is another service", u, err)
	}
	if n := other.hits(); n != 0 {
		t.Errorf("the other port got %d requests, want 0", n)
	}

	studio := stClient(t, "https://livepeer.studio/api/beta/generate", nil).NewMediaFetcher(MediaConfig{})
	for raw, allowed := range map[string]bool{
		"https://livepeer.studio/stream/a.png":      true,
		"https://LIVEPEER.STUDIO/stream/a.png":      true,
		"https://livepeer.studio:443/stream/a.png":  true,
		"https://livepeer.studio:8443/stream/a.png": false,
		"http://livepeer.studio:6379/":              false,
	} {
		if err := studio.Check(raw); (err == nil) != allowed {
			t.Errorf("Check(%q) = %v, want allowed=%v", raw, err, allowed)
		}
	}
}

// TestMediaFetcher_EmptyAllowHostEntryAllowsNothing: a blank AllowHosts entry (a
// server.Config built from an empty setting) must not match URLs without a host name:
// "http://:<port>/" dials this machine's <port>, an SSRF to every local service.
func TestMediaFetcher_EmptyAllowHostEntryAllowsNothing(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	local := stNewHost(t, stServe("image/png", []byte("local service")))
	c := stClient(t, sim.URL(), nil)
	for _, allow := range [][]string{nil, {""}, {"  "}, {"", "cdn.example.com"}} {
		f := c.NewMediaFetcher(MediaConfig{AllowHosts: allow})
		for _, u := range []string{"http://:" + local.port() + "/x", "http://:80/x", "https:///x"} {
			if _, _, err := f.Fetch(context.Background(), u); !stIsRefused(err) {
				t.Errorf("AllowHosts %q: Fetch(%q) = %v, want *MediaRefusedError", allow, u, err)
			}
		}
	}
	if n := local.hits(); n != 0 {
		t.Errorf("the local service got %d requests, want 0", n)
	}
}

// TestMediaFetcher_AllowHosts: an operator-allowed host:port is fetched from; an
// allowed bare host matches any port; matching ignores case.
func TestMediaFetcher_AllowHosts(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	body := []byte("\x89PNG\r\n\x1a\nallowed")
	cdn := stNewHost(t, stServe("image/png", body))
	c := stClient(t, sim.URL(), nil)
	u := "http://localhost:" + cdn.port() + "/r/a.png"

	if err := c.NewMediaFetcher(MediaConfig{}).Check(u); !stIsRefused(err) {
		t.Fatalf("without AllowHosts: Check = %v, want refused", err)
	}
	for _, allow := range []string{"localhost:" + cdn.port(), "LocalHost", " localhost "} {
		f := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{allow}})
		got, ct, err := f.Fetch(context.Background(), u)
		if err != nil || !bytes.Equal(got, body) || ct != "image/png" {
			t.Errorf("AllowHosts %q: Fetch = %q %q %v", allow, got, ct, err)
		}
	}
	if err := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{"localhost:1"}}).Check(u); !stIsRefused(err) {
		t.Errorf("AllowHosts on another port: Check = %v, want refused", err)
	}
}

// TestMediaFetcher_DoesNotFollowRedirects: a redirect from an allowed host (to a
// foreign host, or even to itself) is not followed: MediaFetchError with the 3xx, and
// the redirect target gets nothing.
func TestMediaFetcher_DoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	target := stNewHost(t, stServe("image/png", []byte("x")))
	for _, code := range []int{http.StatusFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		cdn := stNewHost(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.srv.URL+"/latest/meta-data", code)
		})
		c := stClient(t, sim.URL(), nil)
		f := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{"localhost"}})
		_, _, err := f.Fetch(context.Background(), "http://localhost:"+cdn.port()+"/a.png")
		var mfe *MediaFetchError
		if !errors.As(err, &mfe) || mfe.Status != code {
			t.Errorf("redirect %d: err = %T %v, want *MediaFetchError{Status: %d}", code, err, err, code)
		}
	}
	if n := target.hits(); n != 0 {
		t.Errorf("redirect target got %d requests, want 0", n)
	}
}

// TestMediaFetcher_SizeCap: a file over MaxBytes fails with MediaTooLargeError whether
// or not it declares its length; exactly MaxBytes is fine.
func TestMediaFetcher_SizeCap(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	const limit = 100
	declared := stNewHost(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		stServe("image/png", bytes.Repeat([]byte{'a'}, n))(w, r)
	})
	chunked := stNewHost(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "image/png")
		rc := http.NewResponseController(w)
		for range n {
			_, _ = w.Write([]byte{'a'})
			_ = rc.Flush() // no Content-Length: chunked
		}
	})
	c := stClient(t, sim.URL(), nil)
	f := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{"localhost"}, MaxBytes: limit})
	for _, h := range []*stHost{declared, chunked} {
		for n, tooBig := range map[int]bool{limit: false, limit + 1: true, 10 * limit: true} {
			u := "http://localhost:" + h.port() + "/a.png?n=" + strconv.Itoa(n)
			got, _, err := f.Fetch(context.Background(), u)
			var mtl *MediaTooLargeError
			switch {
			case tooBig && (!errors.As(err, &mtl) || mtl.Limit != limit):
				t.Errorf("%s: err = %T %v, want *MediaTooLargeError{Limit: %d}", u, err, err, limit)
			case !tooBig && (err != nil || len(got) != n):
				t.Errorf("%s: %d bytes, %v", u, len(got), err)
			}
		}
	}
	// The simulator's own PNG against a tiny cap.
	img, err := c.TextToImage(context.Background(), &TextToImageParams{ModelID: "m", Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var mtl *MediaTooLargeError
	if _, _, err := c.NewMediaFetcher(MediaConfig{MaxBytes: 16}).Fetch(context.Background(), img.Images[0].URL); !errors.As(err, &mtl) {
		t.Errorf("simulator PNG over a 16-byte cap: err = %v", err)
	}
}

// TestMediaFetcher_NeverSendsAuthorization: the media GET carries no Authorization
// (nor any other credential) even on the gateway's own host and on the transport the
// API calls use, while the pipeline POST carries the Bearer key.
func TestMediaFetcher_NeverSendsAuthorization(t *testing.T) {
	t.Parallel()
	var gw *stHost
	gw = stNewHost(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/text-to-image":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"images":[{"url":"/stream/00000001/0.png","seed":1,"nsfw":false},{"url":"`+gw.srv.URL+`/stream/00000001/1.png","seed":2,"nsfw":false}]}`)
		case r.Method == http.MethodGet:
			stServe("image/png", []byte("\x89PNG\r\n\x1a\n"))(w, r)
		default:
			http.NotFound(w, r)
		}
	})
	c := stClient(t, gw.srv.URL, nil)
	img, err := c.TextToImage(context.Background(), &TextToImageParams{ModelID: "m", Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	f := c.NewMediaFetcher(MediaConfig{})
	for _, m := range img.Images {
		if _, _, err := f.Fetch(context.Background(), m.URL); err != nil {
			t.Fatalf("Fetch %s: %v", m.URL, err)
		}
	}
	hs := gw.headers()
	if len(hs) != 3 {
		t.Fatalf("gateway saw %d requests, want 3 (%v)", len(hs), gw.urls)
	}
	if got := hs[0].Get("Authorization"); got != "Bearer "+stKey {
		t.Errorf("pipeline POST Authorization = %q, want the Bearer key", got)
	}
	for i, h := range hs[1:] {
		for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key"} {
			if v := h.Values(k); len(v) > 0 {
				t.Errorf("media GET %d carried %s: %q", i, k, v)
			}
		}
		for _, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, stKey) {
					t.Errorf("media GET %d carried the key in a header", i)
				}
			}
		}
	}
}

// TestMediaFetcher_Non2xx: a media server error is MediaFetchError with its status.
func TestMediaFetcher_Non2xx(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	c := stClient(t, sim.URL(), nil)
	f := c.NewMediaFetcher(MediaConfig{})
	_, _, err := f.Fetch(context.Background(), sim.Origin()+"/stream/zz/0.png") // not a valid media path
	var mfe *MediaFetchError
	if !errors.As(err, &mfe) || mfe.Status != http.StatusNotFound {
		t.Fatalf("err = %T %v, want *MediaFetchError{Status: 404}", err, err)
	}
	if msg := mfe.Error(); !strings.Contains(msg, "404") {
		t.Errorf("message %q does not say 404", msg)
	}
}

// TestMediaFetcher_SniffsMissingContentType: octet-stream or no type → sniffed.
func TestMediaFetcher_SniffsMissingContentType(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	png := stPNG(t)
	for _, ct := range []string{"application/octet-stream", ""} {
		h := stNewHost(t, stServe(ct, png))
		c := stClient(t, sim.URL(), nil)
		_, got, err := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{"localhost"}}).Fetch(context.Background(), "http://localhost:"+h.port()+"/x")
		if err != nil || got != "image/png" {
			t.Errorf("served as %q: content type %q, %v; want image/png", ct, got, err)
		}
	}
}

// TestMediaFetcher_CallerDeadline: a slow media server is cut at the caller's
// deadline with context.DeadlineExceeded.
func TestMediaFetcher_CallerDeadline(t *testing.T) {
	t.Parallel()
	sim := stSim(t, livepeertest.Config{})
	release := make(chan struct{})
	slow := stNewHost(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	c := stClient(t, sim.URL(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := c.NewMediaFetcher(MediaConfig{AllowHosts: []string{"localhost"}}).Fetch(ctx, "http://localhost:"+slow.port()+"/x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %T %v, want context.DeadlineExceeded", err, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("returned after %v", d)
	}
}
