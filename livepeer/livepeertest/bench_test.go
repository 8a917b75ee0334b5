package livepeertest_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"genservice/livepeer/livepeertest"
)

// BenchmarkTextToImage measures one authenticated text-to-image round trip
// over loopback, recording off as a long benchmark would run it.
func BenchmarkTextToImage(b *testing.B) {
	s := newServer(b, livepeertest.Config{MaxRecorded: -1})
	client := s.Client()
	body := []byte(`{"model_id":"SG161222/RealVisXL_V4.0_Lightning","prompt":"a cat","seed":1}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, s.URL()+"/text-to-image", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkServeHTTP measures the handler alone (no sockets) for a JSON and
// a multipart pipeline.
func BenchmarkServeHTTP(b *testing.B) {
	s := newServer(b, livepeertest.Config{MaxRecorded: -1})
	ct, upscale := form(b, field("prompt", "p"), file("image", "i.png", "image/png", pngBytes), field("model_id", "m"))
	for _, c := range []struct {
		name, pipeline, ctype string
		body                  []byte
	}{
		{"json", "text-to-image", "application/json", []byte(`{"model_id":"m","prompt":"a cat"}`)},
		{"multipart", "upscale", ct, upscale},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, "/api/beta/generate/"+c.pipeline, bytes.NewReader(c.body))
				req.Header.Set("Authorization", "Bearer "+testKey)
				req.Header.Set("Content-Type", c.ctype)
				w := &discardWriter{h: http.Header{}}
				s.ServeHTTP(w, req)
				if w.status != 200 {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

// discardWriter is a minimal http.ResponseWriter for handler benchmarks and
// fuzzing.
type discardWriter struct {
	h      http.Header
	status int
	body   strings.Builder
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	return w.body.Write(p)
}
