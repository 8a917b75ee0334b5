package livepeer

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// ajvMissingPrompt is one entry of Studio's 422 errors list: a JSON-stringified ajv error.
const ajvMissingPrompt = `{"instancePath":"","schemaPath":"#/required","keyword":"required","params":{"missingProperty":"prompt"},"message":"must have required property 'prompt'"}`

func TestParseErrorBodyShapes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		msg        string
		violations []Violation
	}{
		{
			name: "runner detail.msg",
			body: `{"detail":{"msg":"GPU out of memory."}}`,
			msg:  "GPU out of memory.",
		},
		{
			name:       "runner validation",
			body:       `{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}`,
			msg:        "field required",
			violations: []Violation{{Field: "body.prompt", Message: "field required"}},
		},
		{
			name: "runner validation, several, numeric loc and input",
			body: `{"detail":[{"loc":["body","messages",0,"content"],"msg":"Field required","type":"missing","input":{}},` +
				`{"loc":["body","height"],"msg":"Input should be a valid integer","type":"int_parsing","input":"x"}]}`,
			msg: "Field required",
			violations: []Violation{
				{Field: "body.messages[0].content", Message: "Field required"},
				{Field: "body.height", Message: "Input should be a valid integer"},
			},
		},
		{
			name:       "runner validation without loc",
			body:       `{"detail":[{"msg":"bad","type":"x"}]}`,
			msg:        "bad",
			violations: []Violation{{Field: "", Message: "bad"}},
		},
		{
			name: "runner detail as a string",
			body: `{"detail":"Not Found"}`,
			msg:  "Not Found",
		},
		{
			name: "gateway error.message",
			body: `{"error":{"message":"Service Unavailable Error"}}`,
			msg:  "Service Unavailable Error",
		},
		{
			name: "gateway relayed runner 400",
			body: `{"error":{"message":": Prompt must be provided."}}`,
			msg:  "Prompt must be provided.",
		},
		{
			name: "studio errors",
			body: `{"errors":["Too many AI requests"]}`,
			msg:  "Too many AI requests",
		},
		{
			name: "studio several errors",
			body: `{"errors":["Failed to generate text-to-image","try again"]}`,
			msg:  "Failed to generate text-to-image; try again",
		},
		{
			name:       "studio ajv required (stringified)",
			body:       `{"errors":[` + quoteJSON(ajvMissingPrompt) + `]}`,
			msg:        "must have required property 'prompt'",
			violations: []Violation{{Field: "prompt", Message: "must have required property 'prompt'"}},
		},
		{
			name: "studio ajv type (stringified)",
			body: `{"errors":[` + quoteJSON(`{"instancePath":"/height","schemaPath":"#/properties/height/type","keyword":"type","params":{"type":"integer"},"message":"must be integer"}`) + `]}`,
			msg:  "must be integer",
			violations: []Violation{
				{Field: "height", Message: "must be integer"},
			},
		},
		{
			name: "studio ajv additional property (stringified)",
			body: `{"errors":[` + quoteJSON(`{"instancePath":"","schemaPath":"#/additionalProperties","keyword":"additionalProperties","params":{"additionalProperty":"foo"},"message":"must NOT have additional properties"}`) + `]}`,
			msg:  "must NOT have additional properties",
			violations: []Violation{
				{Field: "foo", Message: "must NOT have additional properties"},
			},
		},
		{
			name: "studio ajv nested path",
			body: `{"errors":[` + quoteJSON(`{"instancePath":"/messages/0","schemaPath":"#/required","keyword":"required","params":{"missingProperty":"role"},"message":"must have required property 'role'"}`) + `]}`,
			msg:  "must have required property 'role'",
			violations: []Violation{
				{Field: "messages[0].role", Message: "must have required property 'role'"},
			},
		},
		{
			name:       "studio ajv on the whole body",
			body:       `{"errors":[` + quoteJSON(`{"instancePath":"","schemaPath":"#/type","keyword":"type","params":{"type":"object"},"message":"must be object"}`) + `]}`,
			msg:        "must be object",
			violations: []Violation{{Field: "body", Message: "must be object"}},
		},
		{
			name:       "studio ajv as an object",
			body:       `{"errors":[` + ajvMissingPrompt + `]}`,
			msg:        "must have required property 'prompt'",
			violations: []Violation{{Field: "prompt", Message: "must have required property 'prompt'"}},
		},
		{
			name: "studio mixed plain and ajv",
			body: `{"errors":["Expected multipart/form-data content-type",` + quoteJSON(ajvMissingPrompt) + `]}`,
			msg:  "Expected multipart/form-data content-type; must have required property 'prompt'",
			violations: []Violation{
				{Field: "prompt", Message: "must have required property 'prompt'"},
			},
		},
		{
			name: "studio string that merely starts with a brace",
			body: `{"errors":["{not json"]}`,
			msg:  "{not json",
		},
		{
			name: "auth proxy",
			body: `{"error":"Unauthorized","message":"Invalid API key"}`,
			msg:  "Invalid API key",
		},
		{
			name: "error string alone",
			body: `{"error":"Unauthorized"}`,
			msg:  "Unauthorized",
		},
		{
			name: "message alone",
			body: `{"message":"Forbidden"}`,
			msg:  "Forbidden",
		},
		{
			name: "unknown JSON object",
			body: `{"status":"bad"}`,
			msg:  "",
		},
		{
			name: "JSON with surrounding whitespace",
			body: "\n  {\"errors\":[\"x\"]}  \r\n",
			msg:  "x",
		},
		{
			name: "empty errors list",
			body: `{"errors":[]}`,
			msg:  "",
		},
		{
			name: "HTML page with title",
			body: "<!DOCTYPE html>\n<html><head><TITLE>502 Bad\n Gateway</TITLE></head><body><h1>502</h1></body></html>",
			msg:  "502 Bad Gateway",
		},
		{
			name: "HTML page without title",
			body: "<html><body><h1>oops</h1></body></html>",
			msg:  "non-JSON (HTML) error page",
		},
		{
			name: "plain text",
			body: "upstream connect error or disconnect/reset before headers. reset reason: connection failure\n",
			msg:  "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
		},
		{
			name: "plain text, multi-line",
			body: "line one\r\n\tline two\n\n",
			msg:  "line one line two",
		},
		{
			name: "JSON array",
			body: `["a","b"]`,
			msg:  `["a","b"]`,
		},
		{
			name: "broken JSON object",
			body: `{"error":`,
			msg:  `{"error":`,
		},
		{name: "empty", body: "", msg: ""},
		{name: "whitespace only", body: " \n\t ", msg: ""},
		{
			name: "control characters",
			body: `{"error":{"message":"bad\u0000thing\u001b[31m red\u0007\nnext\u2028line"}}`,
			msg:  "badthing[31m red next line",
		},
		{
			name: "invalid UTF-8 in plain text",
			body: "abc\xff\xfe def\xc3",
			msg:  "abc def",
		},
		{
			name: "invalid UTF-8 inside JSON",
			body: "{\"errors\":[\"ab\xffcd\"]}",
			msg:  "abcd",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, vs := ParseErrorBody([]byte(tc.body))
			if msg != tc.msg {
				t.Errorf("message = %q, want %q", msg, tc.msg)
			}
			if !reflect.DeepEqual(vs, tc.violations) {
				t.Errorf("violations = %#v, want %#v", vs, tc.violations)
			}
			checkErrorBodyInvariants(t, msg, vs)
		})
	}
}

func quoteJSON(s string) string {
	return fmt.Sprintf("%q", s) // Go quoting is valid JSON for these ASCII strings
}

// checkErrorBodyInvariants holds for every body: the message and every violation are
// short, valid UTF-8 and free of control characters.
func checkErrorBodyInvariants(t testing.TB, msg string, vs []Violation) {
	t.Helper()
	checkText := func(what, s string) {
		t.Helper()
		if !utf8.ValidString(s) {
			t.Errorf("%s %q is not valid UTF-8", what, s)
		}
		if len(s) > MaxMessageLen {
			t.Errorf("%s is %d bytes, more than MaxMessageLen %d", what, len(s), MaxMessageLen)
		}
		for _, r := range s {
			if unicode.IsControl(r) || r == utf8.RuneError {
				t.Errorf("%s %q contains %U", what, s, r)
				break
			}
		}
		if strings.TrimSpace(s) != s {
			t.Errorf("%s %q has surrounding whitespace", what, s)
		}
	}
	checkText("message", msg)
	for i, v := range vs {
		checkText(fmt.Sprintf("violations[%d].Field", i), v.Field)
		checkText(fmt.Sprintf("violations[%d].Message", i), v.Message)
	}
}

func TestParseErrorBodyHuge(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"ASCII JSON", `{"error":{"message":"` + strings.Repeat("a", 1<<20) + `"}}`},
		{"multi-byte JSON", `{"error":{"message":"` + strings.Repeat("é", 1<<16) + `"}}`},
		{"4-byte runes JSON", `{"detail":{"msg":"` + strings.Repeat("𝄞", 1<<12) + `"}}`},
		{"plain text", strings.Repeat("xyz ", 1<<18)},
		{"plain multi-byte", strings.Repeat("日本語", 1<<15)},
		{"HTML title", "<html><title>" + strings.Repeat("ü", 5000) + "</title></html>"},
		{"studio many errors", `{"errors":[` + strings.TrimSuffix(strings.Repeat(`"too many things",`, 5000), ",") + `]}`},
		{"validation with long fields", `{"detail":[{"loc":["body","` + strings.Repeat("f", 5000) + `"],"msg":"` + strings.Repeat("m", 5000) + `"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, vs := ParseErrorBody([]byte(tc.body))
			if msg == "" {
				t.Fatal("empty message")
			}
			if !strings.HasSuffix(msg, "…") {
				t.Errorf("truncated message %q does not end with …", msg)
			}
			if len(msg) > MaxMessageLen || len(msg) < MaxMessageLen-8 {
				t.Errorf("message is %d bytes, want close to and at most %d", len(msg), MaxMessageLen)
			}
			checkErrorBodyInvariants(t, msg, vs)
		})
	}
}

// A crafted HTML page must not crash the parser: strings.ToLower changes byte lengths
// for some runes (and for invalid UTF-8), so indexes found in the lower-cased copy do
// not fit the original.
func TestParseErrorBodyHTMLIndexes(t *testing.T) {
	for _, body := range []string{
		"<" + strings.Repeat("\xff", 10) + "<title>a</title>",
		"<p>" + strings.Repeat("\u023a", 20) + "<title>b</title>",
		"<p>" + strings.Repeat("\u0130", 20) + "<title>c</title>",
		"<p>" + strings.Repeat("\u212a", 20) + "<title>d</title>", // Kelvin sign: lower-cases shorter
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("ParseErrorBody(%q) panicked: %v", body, r)
				}
			}()
			msg, vs := ParseErrorBody([]byte(body))
			checkErrorBodyInvariants(t, msg, vs)
			if want := body[len(body)-len("x</title>") : len(body)-len("</title>")]; msg != want {
				t.Errorf("ParseErrorBody(%q) = %q, want the title %q", body, msg, want)
			}
		}()
	}
}

// Studio's ajv errors come from the upstream too: the field path built from them must
// be sanitized and bounded like everything else.
func TestParseErrorBodyStudioFieldSanitized(t *testing.T) {
	body := `{"errors":[` + quoteJSON(`{"instancePath":"/a\u0000b\u001b[2J","params":{"missingProperty":"c\nd"},"message":"m"}`) + `]}`
	long := `{"errors":[` + quoteJSON(`{"instancePath":"/`+strings.Repeat("p", 5000)+`","params":{"missingProperty":"`+strings.Repeat("q", 500)+`"},"message":"`+strings.Repeat("m", 5000)+`"}`) + `]}`
	for _, b := range []string{body, long} {
		msg, vs := ParseErrorBody([]byte(b))
		if len(vs) != 1 {
			t.Fatalf("violations = %#v, want 1", vs)
		}
		checkErrorBodyInvariants(t, msg, vs)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 500_000_000, time.UTC) // half a second past
	at := func(d time.Duration) string { return now.Add(d).UTC().Format(http.TimeFormat) }
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
		ok   bool
	}{
		{"seconds", "5", 5 * time.Second, true},
		{"one", "1", time.Second, true},
		{"zero", "0", 0, true},
		{"padded", " 7 ", 7 * time.Second, true},
		{"negative", "-1", 0, false},
		{"empty", "", 0, false},
		{"garbage", "soon", 0, false},
		{"fraction", "1.5", 0, false},
		{"unit", "5s", 0, false},
		{"one day", "86400", 24 * time.Hour, true},
		{"absurd seconds capped", "1000000000", 24 * time.Hour, true},
		{"int64 max capped", "9223372036854775807", 24 * time.Hour, true},
		// The date has whole seconds: 12:00:10 is 9.5 s away, rounded up to 10 s.
		{"date in the future", at(10 * time.Second), 10 * time.Second, true},
		{"date in one minute", at(time.Minute), time.Minute, true},
		{"date now (truncated, so just past)", at(0), 0, true},
		{"date in the past", at(-time.Hour), 0, true},
		{"date far in the future capped", at(400 * 24 * time.Hour), 24 * time.Hour, true},
		{"RFC 850 date", now.Add(30 * time.Second).Format("Monday, 02-Jan-06 15:04:05 GMT"), 30 * time.Second, true},
		{"asctime date", now.Add(30 * time.Second).Format(time.ANSIC), 30 * time.Second, true},
		{"date year 1", "Mon, 01 Jan 0001 00:00:00 GMT", 0, true},
		{"bad date", "Mon, 99 Foo 2025 00:00:00 GMT", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.in, now)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"  lead and trail  ", "lead and trail"},
		{"a\n\n\tb", "a b"},
		{"a\r\nb", "a b"},
		{"nul\x00byte", "nulbyte"},
		{"esc\x1b[0mape", "esc[0mape"},
		{"del\x7f", "del"},
		{"c1\u0085next", "c1 next"}, // NEL is whitespace
		{"c1\u0090x", "c1x"},
		{"nbsp\u00a0x", "nbsp x"},
		{"bad\xffutf8\xc3", "badutf8"},
		{"replacement\uFFFDchar", "replacementchar"},
		{"ünïcödé 日本", "ünïcödé 日本"},
		{"\u2028\u2029", ""},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	short := strings.Repeat("a", MaxMessageLen)
	if got := truncate(short); got != short {
		t.Errorf("truncate of exactly MaxMessageLen bytes changed it")
	}
	for _, s := range []string{strings.Repeat("a", MaxMessageLen+1), strings.Repeat("é", MaxMessageLen), strings.Repeat("𝄞", MaxMessageLen)} {
		got := truncate(s)
		if len(got) > MaxMessageLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
			t.Errorf("truncate(%d bytes) = %d bytes %q", len(s), len(got), got)
		}
		if !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
			t.Errorf("truncate(%d bytes) is not a prefix", len(s))
		}
	}
}

func TestErrorTypes(t *testing.T) {
	se := &StatusError{Pipeline: "text-to-image", StatusCode: 503, Message: "Service Unavailable Error"}
	if got, want := se.Error(), "gateway answered 503 Service Unavailable to text-to-image: Service Unavailable Error"; got != want {
		t.Errorf("StatusError.Error() = %q, want %q", got, want)
	}
	if got := (&StatusError{Pipeline: "llm", StatusCode: 599}).Error(); got != "gateway answered 599 to llm" {
		t.Errorf("unknown status: %q", got)
	}
	inner := errors.New("dial tcp 127.0.0.1:1: connect: connection refused\x1b")
	te := &TransportError{Pipeline: "llm", Err: inner}
	if !errors.Is(te, inner) {
		t.Error("TransportError does not unwrap")
	}
	if strings.ContainsRune(te.Error(), 0x1b) || !strings.Contains(te.Error(), "connection refused") {
		t.Errorf("TransportError.Error() = %q", te.Error())
	}
	if got := (&TransportError{Pipeline: "llm", Timeout: true, Err: errPipelineTimeout}).Error(); !strings.Contains(got, "in time") {
		t.Errorf("timeout TransportError.Error() = %q", got)
	}
	if got := (&BadResponseError{Pipeline: "upscale", Reason: "empty body"}).Error(); !strings.Contains(got, "upscale") || !strings.Contains(got, "empty body") {
		t.Errorf("BadResponseError.Error() = %q", got)
	}
	if got := (&StreamTruncatedError{Pipeline: "llm", Events: 3}).Error(); !strings.Contains(got, "3 events") {
		t.Errorf("StreamTruncatedError.Error() = %q", got)
	}
}
