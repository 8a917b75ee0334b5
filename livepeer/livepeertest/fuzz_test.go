package livepeertest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"genservice/livepeer/livepeertest"
)

// FuzzServeHTTP feeds arbitrary bodies and content types to every pipeline:
// the handler must not panic, must answer with a known status, and every
// non-streamed answer must be JSON.
func FuzzServeHTTP(f *testing.F) {
	s := newServer(f, livepeertest.Config{MaxRecorded: 10})
	ct, body := form(f, field("prompt", "p"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m"))
	f.Add(uint8(0), "application/json", []byte(`{"model_id":"m","prompt":"p"}`))
	f.Add(uint8(1), ct, body)
	f.Add(uint8(3), ct, body[:len(body)/2])
	f.Add(uint8(6), "application/json", []byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":3,"stream":true}`))
	f.Add(uint8(6), "application/json", []byte(`{"model":"m","messages":[1],"max_tokens":-1,"stream":false}`))
	f.Add(uint8(5), "multipart/form-data; boundary=", []byte("--\r\n"))
	f.Add(uint8(2), "application/json", []byte(`[`))
	f.Fuzz(func(t *testing.T, which uint8, ctype string, body []byte) {
		pipeline := livepeertest.Pipelines[int(which)%len(livepeertest.Pipelines)]
		req, err := http.NewRequest(http.MethodPost, "/api/beta/generate/"+pipeline, bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", ctype)
		w := &discardWriter{h: http.Header{}}
		s.ServeHTTP(w, req)
		switch w.status {
		case 200, 400, 413, 422, 500:
		default:
			t.Fatalf("status %d for %s %q", w.status, pipeline, body)
		}
		if w.h.Get("Content-Type") == "application/json" && !json.Valid([]byte(w.body.String())) {
			t.Fatalf("invalid JSON answer %q", w.body.String())
		}
	})
}
