package server_test

// End-to-end tests of inline_media against the server's maximum message size: results
// that together cannot be sent in one response are not all fetched and then dropped by
// grpc with a bare RESOURCE_EXHAUSTED while the call log says OK; genservice stops
// fetching when the response's budget runs out and answers MEDIA_TOO_LARGE saying the
// limit and what to do.

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

const (
	budgetMaxMessage = 100 << 10 // the server's max send (and receive) message size
	budgetFileBytes  = 40 << 10  // each result: two fit in a response, three do not
)

// budgetHarness is a server with a 100 KiB message cap and a per-file cap above the
// file size, allowed to fetch from cdn.
func budgetHarness(t *testing.T, cdn *stHost) *harness {
	t.Helper()
	return newHarness(t, withServer(func(c *server.Config) {
		c.MaxSendMessageSize = budgetMaxMessage
		c.MaxMediaBytes = 64 << 10
		c.MediaAllowHosts = []string{"localhost:" + cdn.port()}
	}))
}

// requireBudgetStatus: RESOURCE_EXHAUSTED / MEDIA_TOO_LARGE with the response limit in
// metadata and a message telling the caller what to do; the call log agrees.
func requireBudgetStatus(t *testing.T, h *harness, err error, id string, results int) {
	t.Helper()
	st := requireStatus(t, err, codes.ResourceExhausted, "MEDIA_TOO_LARGE")
	requireMeta(t, st, map[string]string{
		"maxResponseBytes": strconv.Itoa(budgetMaxMessage),
		"maxMediaBytes":    strconv.Itoa(64 << 10),
		"results":          strconv.Itoa(results),
	})
	for _, w := range []string{"without inline_media", "receive limit", strconv.Itoa(budgetMaxMessage)} {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("message %q does not say %q", st.Message(), w)
		}
	}
	if line := h.callLine(t, id); line.str("code") != "ResourceExhausted" {
		t.Errorf("call log code = %q, want ResourceExhausted", line.str("code"))
	}
}

// TestE2E_Media_ResponseBudget: with a 100 KiB max message size, two 40 KiB results are
// inlined; thirty are refused with MEDIA_TOO_LARGE after at most three fetches (two that
// fit and the one that does not), whether the media host declares Content-Length or
// streams chunks, instead of thirty fetches and a response grpc cannot send.
func TestE2E_Media_ResponseBudget(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, budgetFileBytes/4)
	sized := stNewHost(t, stBytes("image/png", body))
	chunked := stNewHost(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		rc := http.NewResponseController(w)
		for off := 0; off < len(body); off += 4 << 10 {
			if _, err := w.Write(body[off : off+4<<10]); err != nil {
				return
			}
			_ = rc.Flush()
		}
	}))
	for _, host := range []struct {
		name string
		cdn  *stHost
	}{{"content-length", sized}, {"chunked", chunked}} {
		t.Run(host.name, func(t *testing.T) {
			h := budgetHarness(t, host.cdn)
			urls := func(n int) []string {
				out := make([]string, n)
				for i := range out {
					out[i] = "http://localhost:" + host.cdn.port() + "/" + strconv.Itoa(i) + ".png"
				}
				return out
			}

			// Two results fit: the budget is not stricter than the limit.
			h.sim.Script(livepeer.PipelineTextToImage, stImages(urls(2)...))
			resp, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
			if err != nil {
				t.Fatalf("two results of %d bytes in a %d-byte response: %v", budgetFileBytes, budgetMaxMessage, err)
			}
			for i, m := range resp.GetImages() {
				if !bytes.Equal(m.GetContent(), body) {
					t.Errorf("image %d: %d bytes, want %d", i, len(m.GetContent()), len(body))
				}
			}
			before := len(host.cdn.seen())

			// Thirty do not: stop at the third, answer MEDIA_TOO_LARGE.
			h.sim.Script(livepeer.PipelineTextToImage, stImages(urls(30)...))
			id := rid(t, "thirty")
			_, err = h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), stInlineT2I())
			requireBudgetStatus(t, h, err, id, 30)
			if n := len(host.cdn.seen()) - before; n != 3 {
				t.Errorf("%d media fetches for 30 results, want 3: two fit, the third finds out it does not", n)
			}
		})
	}
}

// TestE2E_Media_ResponseBudgetSingleFile: one result under the per-file cap but over
// what fits in a response (TextToSpeech's audio) is refused after reading no more than
// the room left, instead of being fetched whole and failing to send.
func TestE2E_Media_ResponseBudgetSingleFile(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("RIFF"), (60<<10)/4)
	cdn := stNewHost(t, stBytes("audio/wav", big))
	h := newHarness(t, withServer(func(c *server.Config) {
		c.MaxSendMessageSize = 50 << 10
		c.MaxMediaBytes = 1 << 20
		c.MediaAllowHosts = []string{"localhost:" + cdn.port()}
	}))
	h.sim.Script(livepeer.PipelineTextToSpeech, livepeertest.Step{Status: 200,
		Body: `{"audio":{"url":"http://localhost:` + cdn.port() + `/speech.wav"}}`})
	id := rid(t, "tts")
	_, err := h.client.TextToSpeech(withRequestID(ctxTimeout(t, 10*time.Second), id),
		&generationv1.TextToSpeechRequest{Text: "hello", InlineMedia: true})
	st := requireStatus(t, err, codes.ResourceExhausted, "MEDIA_TOO_LARGE")
	requireMeta(t, st, map[string]string{"maxResponseBytes": strconv.Itoa(50 << 10), "results": "1"})
	if line := h.callLine(t, id); line.str("code") != "ResourceExhausted" {
		t.Errorf("call log code = %q, want ResourceExhausted", line.str("code"))
	}
	if n := len(cdn.seen()); n != 1 {
		t.Errorf("media fetches = %d, want 1", n)
	}
}

// TestE2E_Media_ResponseBudgetTooManyResults: when the results could not all be inlined
// even as empty files, the call is refused before any fetch.
func TestE2E_Media_ResponseBudgetTooManyResults(t *testing.T) {
	t.Parallel()
	cdn := stNewHost(t, stBytes("image/png", bytes.Repeat([]byte{'x'}, 100)))
	const limit = 6 << 10
	h := newHarness(t, withServer(func(c *server.Config) {
		c.MaxSendMessageSize = limit
		c.MediaAllowHosts = []string{"localhost:" + cdn.port()}
	}))
	urls := make([]string, 100)
	for i := range urls {
		urls[i] = "http://localhost:" + cdn.port() + "/" + strconv.Itoa(i) + ".png"
	}
	// Without inline_media the 100 URLs fit in the response.
	h.sim.Script(livepeer.PipelineTextToImage, stImages(urls...))
	if _, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), &generationv1.TextToImageRequest{Prompt: "p"}); err != nil {
		t.Fatalf("100 URLs without inline_media: %v", err)
	}
	h.sim.Script(livepeer.PipelineTextToImage, stImages(urls...))
	_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second), stInlineT2I())
	st := requireStatus(t, err, codes.ResourceExhausted, "MEDIA_TOO_LARGE")
	requireMeta(t, st, map[string]string{"maxResponseBytes": strconv.Itoa(limit), "results": "100"})
	if n := len(cdn.seen()); n != 0 {
		t.Errorf("media fetches = %d, want 0", n)
	}
}
