package server_test

// End-to-end tests of inline_media: genservice fetches result media into the response
// only from the gateway's host or MediaAllowHosts, refuses anything else before any
// request is made (SSRF), follows no redirects, caps the size and never sends the API
// key with the media GET. Foreign hosts are real loopback HTTP servers that count what
// reaches them.

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

// stHost is a loopback HTTP server recording every request it gets.
type stHost struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []stSeen
}

type stSeen struct {
	method, path string
	header       http.Header
}

func stNewHost(t *testing.T, h http.Handler) *stHost {
	t.Helper()
	m := &stHost{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.reqs = append(m.reqs, stSeen{r.Method, r.URL.Path, r.Header.Clone()})
		m.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *stHost) seen() []stSeen {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]stSeen(nil), m.reqs...)
}

func (m *stHost) port() string {
	_, p, _ := net.SplitHostPort(m.srv.Listener.Addr().String())
	return p
}

// stBytes serves body with a content type.
func stBytes(ctype string, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}

// stGet fetches u with a plain HTTP client: the bytes the URL really serves.
func stGet(t *testing.T, u string) []byte {
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
	return b
}

// stImages is a gateway text-to-image answer listing urls.
func stImages(urls ...string) livepeertest.Step {
	parts := make([]string, len(urls))
	for i, u := range urls {
		parts[i] = `{"url":"` + u + `","seed":` + strconv.Itoa(i+1) + `,"nsfw":false}`
	}
	return livepeertest.Step{Status: 200, Body: `{"images":[` + strings.Join(parts, ",") + `]}`}
}

func stInlineT2I() *generationv1.TextToImageRequest {
	return &generationv1.TextToImageRequest{Prompt: "a lighthouse", InlineMedia: true}
}

// ---- fetched ----

// TestE2E_Media_InlineTextToImage: inline_media=true returns each image's bytes exactly
// as the simulator serves them at its URL, with content_type image/png; the URL stays.
func TestE2E_Media_InlineTextToImage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	n := int32(2)
	resp, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), &generationv1.TextToImageRequest{Prompt: "p", InlineMedia: true, NumImagesPerPrompt: &n})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetImages()) != 2 {
		t.Fatalf("%d images", len(resp.GetImages()))
	}
	for i, m := range resp.GetImages() {
		if !strings.HasPrefix(m.GetUrl(), h.sim.Origin()+"/stream/") {
			t.Errorf("image %d url = %q", i, m.GetUrl())
		}
		if want := stGet(t, m.GetUrl()); !bytes.Equal(m.GetContent(), want) || len(want) == 0 {
			t.Errorf("image %d content = %d bytes, want the %d bytes served at its URL", i, len(m.GetContent()), len(want))
		}
		if m.GetContentType() != "image/png" {
			t.Errorf("image %d content_type = %q", i, m.GetContentType())
		}
	}

	// Without inline_media nothing is fetched into the response.
	plain, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if m := plain.GetImages()[0]; len(m.GetContent()) != 0 || m.GetContentType() != "" {
		t.Errorf("inline_media=false returned content (%d bytes, %q)", len(m.GetContent()), m.GetContentType())
	}
}

// TestE2E_Media_InlineTextToSpeech: inline audio equals the bytes at the audio URL,
// content_type audio/wav.
func TestE2E_Media_InlineTextToSpeech(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	resp, err := h.client.TextToSpeech(ctxTimeout(t, 10*time.Second), &generationv1.TextToSpeechRequest{Text: "hello", InlineMedia: true})
	if err != nil {
		t.Fatal(err)
	}
	a := resp.GetAudio()
	if want := stGet(t, a.GetUrl()); !bytes.Equal(a.GetContent(), want) || len(want) == 0 {
		t.Errorf("audio content = %d bytes, want the %d bytes at %s", len(a.GetContent()), len(want), a.GetUrl())
	}
	if a.GetContentType() != "audio/wav" {
		t.Errorf("audio content_type = %q, want audio/wav", a.GetContentType())
	}
}

// TestE2E_Media_InlineWithRelativeURLs: a go-livepeer gateway's relative result URLs
// are made absolute on the gateway and fetched from there (image and audio).
func TestE2E_Media_InlineWithRelativeURLs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(func(c *livepeertest.Config) { c.RelativeURLs = true }))
	img, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	if err != nil {
		t.Fatal(err)
	}
	m := img.GetImages()[0]
	if !strings.HasPrefix(m.GetUrl(), h.sim.Origin()+"/stream/") {
		t.Errorf("url = %q, want absolute on %s", m.GetUrl(), h.sim.Origin())
	}
	if want := stGet(t, m.GetUrl()); !bytes.Equal(m.GetContent(), want) || m.GetContentType() != "image/png" {
		t.Errorf("image content = %d bytes %q, want %d bytes image/png", len(m.GetContent()), m.GetContentType(), len(want))
	}
	tts, err := h.client.TextToSpeech(ctxTimeout(t, 10*time.Second), &generationv1.TextToSpeechRequest{Text: "hi", InlineMedia: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := tts.GetAudio(); !bytes.Equal(a.GetContent(), stGet(t, a.GetUrl())) || a.GetContentType() != "audio/wav" {
		t.Errorf("audio content = %d bytes %q", len(a.GetContent()), a.GetContentType())
	}
}

// TestE2E_Media_AllowHostsPermitsFetch: a result on a host listed in MediaAllowHosts
// is fetched; the same answer without the option is refused.
func TestE2E_Media_AllowHostsPermitsFetch(t *testing.T) {
	t.Parallel()
	body := []byte("\x89PNG\r\n\x1a\n-from-the-cdn")
	cdn := stNewHost(t, stBytes("image/png", body))
	u := "http://localhost:" + cdn.port() + "/results/a.png"

	refused := newHarness(t)
	refused.sim.Script(livepeer.PipelineTextToImage, stImages(u))
	_, err := refused.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	requireStatus(t, err, codes.FailedPrecondition, "MEDIA_FETCH_REFUSED")
	if n := len(cdn.seen()); n != 0 {
		t.Fatalf("refused host got %d requests", n)
	}

	h := newHarness(t, withServer(func(c *server.Config) { c.MediaAllowHosts = []string{"localhost:" + cdn.port()} }))
	h.sim.Script(livepeer.PipelineTextToImage, stImages(u))
	resp, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	if err != nil {
		t.Fatal(err)
	}
	if m := resp.GetImages()[0]; !bytes.Equal(m.GetContent(), body) || m.GetContentType() != "image/png" || m.GetUrl() != u {
		t.Errorf("image = %q %q %q", m.GetUrl(), m.GetContent(), m.GetContentType())
	}
	seen := cdn.seen()
	if len(seen) != 1 || seen[0].method != http.MethodGet || seen[0].header.Get("Authorization") != "" {
		t.Errorf("allowed host saw %+v, want one GET without Authorization", seen)
	}
}

// ---- refused ----

// TestE2E_Media_RefusedForeignHost: a gateway answer whose URL points elsewhere (cloud
// metadata, a service on this machine under another name, another scheme) fails with
// FAILED_PRECONDITION / MEDIA_FETCH_REFUSED and the foreign host receives nothing.
func TestE2E_Media_RefusedForeignHost(t *testing.T) {
	t.Parallel()
	forbidden := stNewHost(t, stBytes("image/png", []byte("secret")))
	h := newHarness(t)
	for _, tc := range []struct{ name, url, host string }{
		{"cloud metadata", "http://169.254.169.254/latest/meta-data", "169.254.169.254"},
		{"loopback by another name", "http://localhost:" + forbidden.port() + "/a.png", "localhost:" + forbidden.port()},
		{"file scheme", "file:///etc/passwd", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.sim.Script(livepeer.PipelineTextToImage, stImages(tc.url))
			_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
			st := requireStatus(t, err, codes.FailedPrecondition, "MEDIA_FETCH_REFUSED")
			if tc.host != "" {
				requireMeta(t, st, map[string]string{"host": tc.host})
			}
			if !strings.Contains(st.Message(), "media-allow-host") {
				t.Errorf("message %q does not say how to allow a host", st.Message())
			}
		})
	}
	t.Run("text-to-speech", func(t *testing.T) {
		h.sim.Script(livepeer.PipelineTextToSpeech, livepeertest.Step{Status: 200, Body: `{"audio":{"url":"http://localhost:` + forbidden.port() + `/a.wav"}}`})
		_, err := h.client.TextToSpeech(ctxTimeout(t, 10*time.Second), &generationv1.TextToSpeechRequest{Text: "x", InlineMedia: true})
		requireStatus(t, err, codes.FailedPrecondition, "MEDIA_FETCH_REFUSED")
	})
	if n := len(forbidden.seen()); n != 0 {
		t.Errorf("forbidden host got %d requests, want 0", n)
	}
}

// TestE2E_Media_RefusedOtherLoopbackPort: a result URL on the gateway's IP but another
// port (here a second loopback server; in production an admin or metrics listener, a
// sidecar, a database) is another service: refused, and it receives nothing. Only the
// gateway's own host:port is implicitly trusted.
func TestE2E_Media_RefusedOtherLoopbackPort(t *testing.T) {
	t.Parallel()
	forbidden := stNewHost(t, stBytes("image/png", []byte("internal")))
	h := newHarness(t)
	u := "http://127.0.0.1:" + forbidden.port() + "/latest/meta-data"
	h.sim.Script(livepeer.PipelineTextToImage, stImages(u))
	_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	if n := len(forbidden.seen()); n != 0 {
		t.Errorf("the other port on the gateway's host got %d requests, want 0", n)
	}
	requireStatus(t, err, codes.FailedPrecondition, "MEDIA_FETCH_REFUSED")
}

// TestE2E_Media_RefusedEmptyHostWithBlankAllowEntry: a blank MediaAllowHosts entry
// must not let a result URL without a host name ("http://:<port>/", which dials this
// machine) through: MEDIA_FETCH_REFUSED and the local service receives nothing.
func TestE2E_Media_RefusedEmptyHostWithBlankAllowEntry(t *testing.T) {
	t.Parallel()
	local := stNewHost(t, stBytes("image/png", []byte("local service")))
	h := newHarness(t, withServer(func(c *server.Config) { c.MediaAllowHosts = []string{""} }))
	h.sim.Script(livepeer.PipelineTextToImage, stImages("http://:"+local.port()+"/latest/meta-data"))
	_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	if n := len(local.seen()); n != 0 {
		t.Errorf("the local service got %d requests, want 0", n)
	}
	requireStatus(t, err, codes.FailedPrecondition, "MEDIA_FETCH_REFUSED")
}

// TestE2E_Media_RefusedBeforeAnyFetch: every URL is checked before anything is
// fetched: one refused image means no request even to the allowed host.
func TestE2E_Media_RefusedBeforeAnyFetch(t *testing.T) {
	t.Parallel()
	cdn := stNewHost(t, stBytes("image/png", []byte("ok")))
	h := newHarness(t, withServer(func(c *server.Config) { c.MediaAllowHosts = []string{"localhost:" + cdn.port()} }))
	h.sim.Script(livepeer.PipelineTextToImage, stImages("http://localhost:"+cdn.port()+"/a.png", "http://169.254.169.254/latest/meta-data"))
	_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	requireStatus(t, err, codes.FailedPrecondition, "MEDIA_FETCH_REFUSED")
	if n := len(cdn.seen()); n != 0 {
		t.Errorf("allowed host got %d requests although another URL was refused", n)
	}
}

// TestE2E_Media_RedirectNotFollowed: an allowed media URL answering with a redirect
// to another host is not followed: UNAVAILABLE / MEDIA_FETCH_FAILED (mediaStatus 302),
// and the redirect target receives nothing.
func TestE2E_Media_RedirectNotFollowed(t *testing.T) {
	t.Parallel()
	target := stNewHost(t, stBytes("image/png", []byte("secret")))
	cdn := stNewHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL+"/latest/meta-data", http.StatusFound)
	}))
	h := newHarness(t, withServer(func(c *server.Config) { c.MediaAllowHosts = []string{"localhost:" + cdn.port()} }))
	h.sim.Script(livepeer.PipelineTextToImage, stImages("http://localhost:"+cdn.port()+"/a.png"))
	_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	st := requireStatus(t, err, codes.Unavailable, "MEDIA_FETCH_FAILED")
	requireMeta(t, st, map[string]string{"mediaStatus": "302"})
	if n := len(cdn.seen()); n != 1 {
		t.Errorf("media host got %d requests, want 1", n)
	}
	if n := len(target.seen()); n != 0 {
		t.Errorf("redirect target got %d requests, want 0", n)
	}
}

// TestE2E_Media_TooLarge: a result bigger than MaxMediaBytes fails with
// RESOURCE_EXHAUSTED / MEDIA_TOO_LARGE, whether it declares its length (the
// simulator's PNG and WAV) or not (a chunked body).
func TestE2E_Media_TooLarge(t *testing.T) {
	t.Parallel()
	chunked := stNewHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		rc := http.NewResponseController(w)
		for range 8 {
			_, _ = w.Write(bytes.Repeat([]byte{'a'}, 16))
			_ = rc.Flush()
		}
	}))
	const limit = 64
	h := newHarness(t, withServer(func(c *server.Config) {
		c.MaxMediaBytes = limit
		c.MediaAllowHosts = []string{"localhost:" + chunked.port()}
	}))
	if n := len(stGet(t, h.sim.Origin()+"/stream/00000001/0.png")); n <= limit {
		t.Fatalf("the simulator's PNG is %d bytes; the test needs it over %d", n, limit)
	}
	check := func(what string, err error) {
		t.Helper()
		st := requireStatus(t, err, codes.ResourceExhausted, "MEDIA_TOO_LARGE")
		requireMeta(t, st, map[string]string{"maxMediaBytes": strconv.Itoa(limit)})
		if !strings.Contains(st.Message(), "inline_media") {
			t.Errorf("%s: message %q does not point at inline_media", what, st.Message())
		}
	}
	_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	check("png", err)
	_, err = h.client.TextToSpeech(ctxTimeout(t, 10*time.Second), &generationv1.TextToSpeechRequest{Text: "x", InlineMedia: true})
	check("wav", err)
	h.sim.Script(livepeer.PipelineTextToImage, stImages("http://localhost:"+chunked.port()+"/big.png"))
	_, err = h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	check("chunked", err)
}

// TestE2E_Media_NoAuthorizationHeader: a recording proxy in front of the simulator
// (the gateway URL, with relative result URLs so media is fetched through it too)
// shows the pipeline POST carrying "Bearer <key>" and the media GETs carrying no
// Authorization header and no trace of the key; without inline_media there is no GET.
func TestE2E_Media_NoAuthorizationHeader(t *testing.T) {
	t.Parallel()
	var simURL stBox[*url.URL]
	proxy := stNewHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httputil.NewSingleHostReverseProxy(simURL.load()).ServeHTTP(w, r)
	}))
	h := newHarness(t, withSim(func(c *livepeertest.Config) { c.RelativeURLs = true }), withGatewayURL(proxy.srv.URL+"/api/beta/generate"))
	u, err := url.Parse(h.sim.Origin())
	if err != nil {
		t.Fatal(err)
	}
	simURL.store(u)

	if _, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), &generationv1.TextToImageRequest{Prompt: "p"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range proxy.seen() {
		if s.method == http.MethodGet {
			t.Fatalf("inline_media=false fetched %s", s.path)
		}
	}
	img, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	if err != nil {
		t.Fatal(err)
	}
	if len(img.GetImages()[0].GetContent()) == 0 {
		t.Fatal("no inline content")
	}
	tts, err := h.client.TextToSpeech(ctxTimeout(t, 10*time.Second), &generationv1.TextToSpeechRequest{Text: "x", InlineMedia: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(tts.GetAudio().GetContent()) == 0 {
		t.Fatal("no inline audio")
	}
	var posts, gets int
	for _, s := range proxy.seen() {
		switch s.method {
		case http.MethodPost:
			posts++
			if got := s.header.Get("Authorization"); got != "Bearer "+h.key {
				t.Errorf("POST %s Authorization = %q, want the Bearer key", s.path, got)
			}
		case http.MethodGet:
			gets++
			if !strings.HasPrefix(s.path, "/stream/") {
				t.Errorf("unexpected GET %s", s.path)
			}
			for k, vs := range s.header {
				for _, v := range vs {
					if strings.EqualFold(k, "Authorization") || strings.EqualFold(k, "Proxy-Authorization") || strings.Contains(v, h.key) {
						t.Errorf("media GET %s carried %s: %q", s.path, k, v)
					}
				}
			}
		}
	}
	if posts != 3 || gets != 2 {
		t.Errorf("proxy saw %d POSTs and %d GETs, want 3 and 2", posts, gets)
	}
}

// stBox is a value shared with the proxy's handler goroutines.
type stBox[T any] struct {
	mu sync.Mutex
	v  T
}

func (b *stBox[T]) store(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.v = v
}

func (b *stBox[T]) load() T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}
