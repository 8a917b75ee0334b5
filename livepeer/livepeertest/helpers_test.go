package livepeertest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"genservice/livepeer/livepeertest"
)

const testKey = "sk-test-0123456789"

func newServer(t testing.TB, cfg livepeertest.Config) *livepeertest.Server {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = testKey
	}
	s, err := livepeertest.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request with the test key and reads the whole answer.
func do(t testing.TB, s *livepeertest.Server, method, pipeline, ctype string, body []byte) response {
	t.Helper()
	return doWith(t, s, method, pipeline, ctype, body, "Bearer "+testKey)
}

func doWith(t testing.TB, s *livepeertest.Server, method, pipeline, ctype string, body []byte, auth string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL()+"/"+pipeline, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pipeline, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s answer: %v", pipeline, err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func postJSON(t testing.TB, s *livepeertest.Server, pipeline, body string) response {
	t.Helper()
	return do(t, s, http.MethodPost, pipeline, "application/json", []byte(body))
}

// part is one multipart part; file parts have a filename.
type part struct {
	name, filename, ctype string
	data                  []byte
}

func field(name, value string) part { return part{name: name, data: []byte(value)} }

func file(name, filename, ctype string, data []byte) part {
	return part{name: name, filename: filename, ctype: ctype, data: data}
}

// form builds a multipart/form-data body by hand with mime/multipart.
func form(t testing.TB, parts ...part) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename != "" {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="`+p.name+`"; filename="`+p.filename+`"`)
			h.Set("Content-Type", p.ctype)
			w, err = mw.CreatePart(h)
		} else {
			w, err = mw.CreateFormField(p.name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), b.Bytes()
}

func postForm(t testing.TB, s *livepeertest.Server, pipeline string, parts ...part) response {
	t.Helper()
	ct, body := form(t, parts...)
	return do(t, s, http.MethodPost, pipeline, ct, body)
}

var (
	pngBytes = []byte("\x89PNG\r\n\x1a\nnot really a png but the simulator does not care")
	wavBytes = []byte("RIFF....WAVEfmt fake audio")
)

// wantStatus fails unless r has the status and its body contains every
// fragment.
func wantStatus(t testing.TB, r response, status int, fragments ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
	for _, f := range fragments {
		if !strings.Contains(r.body, f) {
			t.Fatalf("body %s\ndoes not contain %q", r.body, f)
		}
	}
}
