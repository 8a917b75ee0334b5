package livepeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"genservice/livepeer/livepeertest"
)

// keyFragment returns the first run of at least min(8, len(key)) characters of key found
// in s, ignoring ASCII case, or "". It is deliberately naive (it tries every window of
// the key), so that it checks the redactor by another method than the redactor's own.
// A fragment longer than the window always contains a window, so windows suffice.
func keyFragment(s, key string) string {
	n := min(8, len(key))
	ls, lk := asciiLower(s), asciiLower(key)
	for i := 0; i+n <= len(lk); i++ {
		if j := strings.Index(ls, lk[i:i+n]); j >= 0 {
			return s[j : j+n]
		}
	}
	return ""
}

// uEscape writes every character of s as a JSON \u escape.
func uEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, `\u%04x`, c)
	}
	return b.String()
}

// keyEcho is an error body that repeats the key in a form a byte search for the key
// does not find.
type keyEcho struct{ name, body string }

// keyEchoes are the ways a gateway or a proxy in front of it may repeat the key: JSON
// escapes (decoded by the parser), a control character inside it (dropped by Sanitize,
// which rejoins the key), cut short, case-changed, or cut by the message length cap.
func keyEchoes(key string) []keyEcho {
	half := len(key) / 2
	return []keyEcho{
		{"dash escaped", `{"message":"bad key ` + strings.ReplaceAll(key, "-", `\u002d`) + `"}`},
		{"every character escaped", `{"error":{"message":"no token ` + uEscape(key) + ` found"}}`},
		{"studio list, escaped", `{"errors":["no token ` + uEscape(key) + ` found"]}`},
		{"JSON control escape inside", `{"errors":["no token ` + key[:half] + `\u0007` + key[half:] + ` found"]}`},
		{"raw control byte inside, plain text", "unauthorized: Bearer " + key[:5] + "\x01" + key[5:] + "\n"},
		{"NUL bytes between characters, plain text", "token " + strings.Join(strings.Split(key, ""), "\x00")},
		{"minus its last character", `{"error":"Unauthorized","message":"Invalid API key ` + key[:len(key)-1] + `"}`},
		{"minus its first character", `{"detail":{"msg":"token ` + key[1:] + ` rejected"}}`},
		{"upper-cased", `{"detail":"token ` + strings.ToUpper(key) + ` rejected"}`},
		{"first half only", `{"message":"key starts ` + key[:half+1] + `"}`},
		{"validation msg and loc", `{"detail":[{"loc":["header","` + uEscape(key) + `"],"msg":"bad token ` + uEscape(key) + `","type":"value_error"}]}`},
		{"studio ajv field", `{"errors":["{\"instancePath\":\"/` + key + `\",\"params\":{},\"message\":\"must not be ` + strings.ReplaceAll(key, "-", `\\u002d`) + `\"}"]}`},
		{"HTML title with a control character", "<html><head><title>401 " + key[:half] + "\x1b" + key[half:] + "</title></head></html>"},
		{"cut by the length cap", `{"message":"` + strings.Repeat("x ", 120) + uEscape(key) + `"}`},
	}
}

// statusErrorTexts is every string of a StatusError that leaves the process.
func statusErrorTexts(se *StatusError) []string {
	out := []string{se.Message, se.Error(), se.KeyFingerprint}
	for _, v := range se.Violations {
		out = append(out, v.Field, v.Message)
	}
	return out
}

// TestClientErrorNeverCarriesKeyFragment: whatever form the key comes back in, the
// StatusError (message, violations, Error()) carries no fragment of it, and still says
// that something was there.
func TestClientErrorNeverCarriesKeyFragment(t *testing.T) {
	sim := newSim(t, livepeertest.Config{})
	c := newTestClient(t, sim.URL(), nil)
	for _, status := range []int{400, 401} {
		for _, tc := range keyEchoes(testSecret) {
			sim.Script(PipelineTextToImage, livepeertest.Step{Status: status, Body: tc.body})
			_, err := c.TextToImage(context.Background(), t2i())
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != status {
				t.Fatalf("%d %s: err = %v, want a StatusError %d", status, tc.name, err, status)
			}
			all := strings.Join(statusErrorTexts(se), "\n")
			if f := keyFragment(all, testSecret); f != "" {
				t.Errorf("%d %s: the error carries %q of the key: %q %+v", status, tc.name, f, se.Message, se.Violations)
			}
			if !strings.Contains(all, redacted) {
				t.Errorf("%d %s: no %s marker where the key was: %q %+v", status, tc.name, redacted, se.Message, se.Violations)
			}
			if len(se.Message) > MaxMessageLen {
				t.Errorf("%d %s: message is %d bytes, over MaxMessageLen", status, tc.name, len(se.Message))
			}
		}
	}
}

// TestLLMStreamErrorEventNeverCarriesKeyFragment: an error event in the LLM stream is
// redacted the same way.
func TestLLMStreamErrorEventNeverCarriesKeyFragment(t *testing.T) {
	for _, event := range []string{
		`{"error":"bad token ` + uEscape(stKey) + `"}`,
		`{"error":{"message":"bad token ` + stKey[:4] + `\u0000` + stKey[4:] + `"}}`,
		`{"error":{"message":"bad token ` + stKey[:len(stKey)-1] + `"}}`,
	} {
		sim := stSim(t, livepeertest.Config{})
		sim.Script(PipelineLLM, livepeertest.Step{Events: []string{stEvent("a", "", 1), event}, Truncate: true})
		c := stClient(t, sim.URL(), nil)
		_, err := stDrain(stOpen(t, context.Background(), c, 0))
		var see *StreamEventError
		if !errors.As(err, &see) {
			t.Fatalf("end = %T %v, want *StreamEventError", err, err)
		}
		if f := keyFragment(see.Message+"\n"+see.Error(), stKey); f != "" {
			t.Errorf("event %s: the error carries %q of the key: %q", event, f, see.Message)
		}
	}
}

// TestTransportErrorNeverCarriesKeyFragment: net/http quotes a malformed status line or
// header line in its error, so a broken gateway can put the key into a TransportError's
// text.
func TestTransportErrorNeverCarriesKeyFragment(t *testing.T) {
	for _, answer := range []string{
		"HTTP/1.1 " + testSecret + "\r\n\r\n",
		"HTTP/1.1 200 OK\r\n" + testSecret + "\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: 1\r\n" + strings.ToUpper(testSecret[1:]) + "\r\n\r\n",
	} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				conn, err := lis.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 64<<10)
				_, _ = conn.Read(buf)
				_, _ = conn.Write([]byte(answer))
				_ = conn.Close()
			}
		}()
		c := newTestClient(t, "http://"+lis.Addr().String()+"/api/beta/generate", func(c *Config) { c.MaxAttempts = 1 })
		_, err = c.TextToImage(context.Background(), t2i())
		_ = lis.Close()
		var te *TransportError
		if !errors.As(err, &te) {
			t.Fatalf("answer %q: err = %T %v, want a TransportError", answer, err, err)
		}
		if f := keyFragment(err.Error(), testSecret); f != "" {
			t.Errorf("answer %q: the error carries %q of the key: %v", answer, f, err)
		}
	}
}

func TestRedactText(t *testing.T) {
	const key = "d41c8e07-93fa-4b2e-b6c1-5fe0a7d29c38"
	for _, tc := range []struct{ key, in, want string }{
		{key, "no token " + key + " found", "no token [REDACTED] found"},
		{key, "no token " + strings.ToUpper(key) + " found", "no token [REDACTED] found"},
		{key, "cut " + key[:len(key)-1], "cut [REDACTED]"},
		{key, "tail " + key[20:], "tail [REDACTED]"},
		{key, "pieces " + key[:13] + " " + key[14:23] + " " + key[24:], "pieces [REDACTED] [REDACTED] [REDACTED]"},
		{key, "twice " + key + key + ".", "twice [REDACTED]."},
		{key, "ключ " + key[:8] + " ключ", "ключ [REDACTED] ключ"},
		// Seven characters are not a fragment: below the rule's length.
		{key, "short " + key[:7] + " and " + key[10:17], "short " + key[:7] + " and " + key[10:17]},
		{key, "nothing here at all", "nothing here at all"},
		{key, "", ""},
		// A key shorter than 8 characters is matched whole only.
		{"ab12cd", "xAB12CDy ab12c", "x[REDACTED]y ab12c"},
		// Contrived keys the usual marker could re-form a fragment with get another.
		{"xx-redacted-yy-0123", "see xx-redacted-yy-0123 and [REDACTED]", "see … and […]"},
		{"ab]cdefgh12", "ab]cdefgh12 x", "… x"},
	} {
		k := mustParseKey(t, tc.key)
		if got := k.RedactText(tc.in); got != tc.want {
			t.Errorf("key %q: RedactText(%q) = %q, want %q", tc.key, tc.in, got, tc.want)
		}
	}
	var zero APIKey
	if got := zero.RedactText("anything"); got != "anything" {
		t.Errorf("zero key: %q", got)
	}
}

// TestRedactTextCheap: text without the key costs no allocation, and a message at
// MaxMessageLen full of fragments is handled in microseconds.
func TestRedactTextCheap(t *testing.T) {
	k := mustParseKey(t, testSecret)
	clean := strings.Repeat("the gateway said no; ", 12)
	if n := testing.AllocsPerRun(100, func() { _ = k.RedactText(clean) }); n != 0 {
		t.Errorf("RedactText of clean text allocates %v times", n)
	}
	dirty := truncate(strings.Repeat(testSecret[:9]+" ", 40))
	if got := k.RedactText(dirty); keyFragment(got, testSecret) != "" {
		t.Errorf("RedactText left a fragment: %q", got)
	}
}

func BenchmarkRedactText(b *testing.B) {
	k, err := ParseKey("d41c8e07-93fa-4b2e-b6c1-5fe0a7d29c38")
	if err != nil {
		b.Fatal(err)
	}
	msg := truncate(strings.Repeat("upstream said something long and unhelpful ", 8))
	b.ReportAllocs()
	for b.Loop() {
		_ = k.RedactText(msg)
	}
}

// TestTransportErrorTextCapped: net/http quotes a malformed header line whole (up to
// its 10 MiB header limit); the TransportError's text stays short and free of the key.
func TestTransportErrorTextCapped(t *testing.T) {
	huge := strings.Repeat("y", 1<<20) + testSecret
	e := &TransportError{Pipeline: PipelineLLM, Err: errors.New(`malformed MIME header line: "` + testSecret + huge + `"`),
		redactor: newKeyRedactor(mustParseKey(t, testSecret))}
	msg := e.Error()
	if len(msg) > 2<<10 {
		t.Errorf("TransportError text is %d bytes", len(msg))
	}
	if f := keyFragment(msg, testSecret); f != "" || !strings.Contains(msg, redacted) {
		t.Errorf("TransportError text %q: fragment %q", msg, f)
	}
}
