package livepeer

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// errorBodySeeds covers every upstream error shape (UPSTREAM.md §4.1) and the non-JSON
// bodies a proxy or load balancer may send.
var errorBodySeeds = []string{
	`{"detail":{"msg":"GPU out of memory."}}`,
	`{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}`,
	`{"detail":[{"loc":["body","messages",0,"content"],"msg":"Field required","type":"missing","input":{}}]}`,
	`{"detail":"Not Found"}`,
	`{"error":{"message":"Service Unavailable Error"}}`,
	`{"error":{"message":": Prompt must be provided."}}`,
	`{"errors":["Too many AI requests"]}`,
	`{"errors":["Failed to generate text-to-image","x"]}`,
	`{"errors":["{\"instancePath\":\"\",\"schemaPath\":\"#/required\",\"keyword\":\"required\",\"params\":{\"missingProperty\":\"prompt\"},\"message\":\"must have required property 'prompt'\"}"]}`,
	`{"errors":["{\"instancePath\":\"/height\",\"schemaPath\":\"#/properties/height/type\",\"keyword\":\"type\",\"params\":{\"type\":\"integer\"},\"message\":\"must be integer\"}"]}`,
	`{"errors":[{"instancePath":"/a","params":{"additionalProperty":"b"},"message":"must NOT have additional properties"}]}`,
	`{"error":"Unauthorized","message":"Invalid API key"}`,
	`{"error":"Unauthorized"}`,
	`{"message":"Forbidden"}`,
	"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body></body></html>",
	"<html><body>no title</body></html>",
	"<html><head><meta charset=\"utf-8\"><title>Fehler 502</title></head><body>Ungültige Antwort</body></html>",
	"upstream connect error or disconnect/reset before headers\n",
	"",
	"   ",
	`{"error":{"message":"a\u0000b\u001bc\nd"}}`,
	"plain \xff\xfe invalid",
	`["array"]`,
	`{"error":`,
	`{"detail":[{"loc":[1.5e300,true,null,{"x":1}],"msg":""}]}`,
}

func FuzzParseErrorBody(f *testing.F) {
	for _, s := range errorBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Report a panic as this input's failure, so that the targets after this one
		// still run under plain `go test`.
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("ParseErrorBody(%q) panicked: %v\n%s", body, r, debug.Stack())
			}
		}()
		msg, vs := ParseErrorBody(body)
		checkErrorBodyInvariants(t, msg, vs)
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{
		"0", "1", "120", "-1", "", " 5 ", "1.5", "soon", "86401", "9223372036854775807",
		"99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Fri, 31 Dec 9999 23:59:59 GMT",
		"Mon, 01 Jan 0001 00:00:00 GMT",
	} {
		f.Add(s, int64(1_700_000_000))
	}
	f.Fuzz(func(t *testing.T, v string, nowUnix int64) {
		now := time.Unix(nowUnix, 0)
		d, ok := ParseRetryAfter(v, now)
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("ParseRetryAfter(%q) = %v, outside [0, 24h]", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v with ok=false", v, d)
		}
		if ok && d%time.Second != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, not whole seconds", v, d)
		}
	})
}

var keyErrors = []error{ErrKeyEmpty, ErrKeyWhitespace, ErrKeyBearer, ErrKeyPlaceholder, ErrKeyControl, ErrKeyNotPrintable, ErrKeyFileTooLarge}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		testSecret, "", " ", "Bearer xyz", "bearer xyz", "BeArEr", "your-api-key-here",
		"abc def", "abc\ndef", "abc\x00def", "abc\x7f", "abc\u00a0def", "abc\u2028", "\xff\xfe",
		"ключ-123", "a1b2c3d4-e5f6-7890-abcd-ef0123456789",
		"the API key", // a substring of the error texts
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		k, err := ParseKey(raw)
		if err != nil {
			if !k.IsZero() {
				t.Fatalf("ParseKey(%q) returned a key with error %v", raw, err)
			}
			known := false
			for _, e := range keyErrors {
				// The very sentinel, not a wrapper: its text is fixed, so it cannot
				// carry any part of the input.
				if err == e {
					known = true
				}
			}
			if !known {
				t.Fatalf("ParseKey(%q) = %v, not one of the ErrKey* errors", raw, err)
			}
			msg := err.Error()
			if len(raw) >= 8 && strings.Contains(msg, raw) && !errors.Is(err, ErrKeyPlaceholder) && !isFixedText(raw) {
				t.Fatalf("ParseKey error %q contains the input %q", msg, raw)
			}
			return
		}
		if k.IsZero() {
			t.Fatalf("ParseKey(%q) accepted an empty key", raw)
		}
		if raw == PlaceholderKey {
			t.Fatal("ParseKey accepted the placeholder")
		}
		if len(raw) >= 6 && strings.EqualFold(raw[:6], "bearer") {
			t.Fatalf("ParseKey(%q) accepted a Bearer-prefixed key", raw)
		}
		for _, r := range raw {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("ParseKey(%q) accepted a key with %U", raw, r)
			}
		}
		for i := 0; i < len(raw); i++ {
			if raw[i] < 0x21 || raw[i] > 0x7e {
				t.Fatalf("ParseKey(%q) accepted a key with byte %#x, outside printable ASCII", raw, raw[i])
			}
		}
		// The header the client will send must be exactly "Bearer <raw>".
		if got := k.authorization(); got != "Bearer "+raw {
			t.Fatalf("authorization() = %q", got)
		}
		// Redaction holds for every accepted key.
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			if out := fmt.Sprintf(verb, k); strings.Contains(out, raw) && !strings.Contains(redacted, raw) {
				t.Fatalf("%s of key %q = %q", verb, raw, out)
			}
		}
		if fp := k.Fingerprint(); !fingerprintRE.MatchString(fp) {
			t.Fatalf("Fingerprint = %q", fp)
		}
		// A file holding the key and one newline gives the same key.
		if k2, err := ParseKeyFile([]byte(raw + "\n")); err != nil || !k2.Equal(k) {
			t.Fatalf("ParseKeyFile(%q+LF) = %v, %v", raw, k2, err)
		}
	})
}

// isFixedText reports whether s is part of one of the fixed error texts, which an
// input may coincide with without anything leaking.
func isFixedText(s string) bool {
	for _, e := range keyErrors {
		if strings.Contains(e.Error(), s) {
			return true
		}
	}
	return false
}

// embedKey renders key in one of the forms a gateway may echo it in (see keyEchoes).
func embedKey(key string, form, cut uint8) string {
	i := int(cut) % len(key)
	switch form % 10 {
	case 0:
		return ""
	case 1:
		return key
	case 2:
		return uEscape(key)
	case 3:
		return key[:i] + "\x01" + key[i:]
	case 4:
		return key[:i] + `\u0000` + key[i:]
	case 5:
		return key[:len(key)-1]
	case 6:
		return key[i/2:]
	case 7:
		return strings.ToUpper(key)
	case 8:
		return key[:i] + uEscape(key[i:i+1]) + key[i+1:]
	default:
		return strings.Join(strings.Split(key, ""), "\x7f")
	}
}

// FuzzErrorBodyNeverShowsKey: for any upstream error body, with the key embedded in any
// of the forms of embedKey anywhere in it, the message and violations the client keeps
// hold no fragment of the key (8 characters or more, any case), and the usual
// invariants still hold.
func FuzzErrorBodyNeverShowsKey(f *testing.F) {
	for _, e := range keyEchoes(testSecret) {
		f.Add([]byte(e.body), uint16(0), uint8(0), uint8(0))
	}
	for i, s := range errorBodySeeds {
		f.Add([]byte(s), uint16(len(s)/2), uint8(i), uint8(i*7))
	}
	key := mustParseKey(f, testSecret)
	f.Fuzz(func(t *testing.T, body []byte, pos uint16, form, cut uint8) {
		at := int(pos) % (len(body) + 1)
		full := append(append(append([]byte{}, body[:at]...), embedKey(testSecret, form, cut)...), body[at:]...)
		msg, vs := parseErrorBody(full, key)
		checkErrorBodyInvariants(t, msg, vs)
		texts := []string{msg}
		for _, v := range vs {
			texts = append(texts, v.Field, v.Message)
		}
		for _, s := range texts {
			if frag := keyFragment(s, testSecret); frag != "" {
				t.Fatalf("body %q: %q carries %q of the key", full, s, frag)
			}
		}
	})
}

// FuzzRedactText: for any valid key and any text, RedactText leaves no fragment of the
// key and changes nothing in text that holds none.
func FuzzRedactText(f *testing.F) {
	for _, s := range []struct{ key, text string }{
		{testSecret, "no token " + testSecret + " found"},
		{"d41c8e07-93fa-4b2e-b6c1-5fe0a7d29c38", "D41C8E07-93FA x 4b2e-b6c1-5fe0a7d29c3"},
		{"abc", "abcabcab"},
		{"xx-redacted-yy-0123", "[REDACTED] xx-redacted-yy-0123"},
		{"ab]cdefgh12", "ab]cdefgh12 ]cdefgh"},
		{"aaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	} {
		f.Add(s.key, s.text)
	}
	f.Fuzz(func(t *testing.T, raw, text string) {
		k, err := ParseKey(raw)
		if err != nil {
			return
		}
		got := k.RedactText(text)
		if frag := keyFragment(got, raw); frag != "" {
			t.Fatalf("RedactText(%q) with key %q = %q, which carries %q", text, raw, got, frag)
		}
		if keyFragment(text, raw) == "" && got != text {
			t.Fatalf("RedactText(%q) with key %q changed text holding no fragment: %q", text, raw, got)
		}
	})
}

// numberListSeeds are the runner's segment-anything-2 arrays as Python writes them
// (UPSTREAM.md §3.6), with its float spellings, and malformed variants.
var numberListSeeds = []string{
	"[[[2.84, -1.5], [0.0, 1e-05]]]",
	"[0.50, 0.37, 0.125]",
	"[[[nan, inf], [-inf, 1.0]], [[True, False], [0, 1]]]",
	"[]", "[[]]", "[[[]]]", " [ [ [ 1 ] ] ] ",
	"[[[1, 2], [3]]]", "[[1, 2]]", "[[[1,]]]", "[[[1 2]]]", "[[[0x1p-2]]]",
	"[[[1]]] x", "[[[1e400, -1e400, 1e-400]]]", "[", "", "[[[" + strings.Repeat("9", 100) + "]]]",
}

func FuzzParseNumberList(f *testing.F) {
	for _, s := range numberListSeeds {
		f.Add(s, uint8(3))
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, s string, d uint8) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("parseNumberList(%q) panicked: %v\n%s", s, r, debug.Stack())
			}
		}()
		depth := int(d%3) + 1
		l, err := parseNumberList[float64](s, depth)
		if err != nil {
			if l != nil {
				t.Fatalf("parseNumberList(%q, %d) returned a list with error %v", s, depth, err)
			}
			return
		}
		if len(l.Shape) != depth {
			t.Fatalf("parseNumberList(%q, %d): shape %v", s, depth, l.Shape)
		}
		n := 1
		for _, k := range l.Shape {
			n *= k
		}
		if n != len(l.Values) {
			t.Fatalf("parseNumberList(%q, %d): shape %v but %d values", s, depth, l.Shape, len(l.Values))
		}
		if len(l.Values) > len(s) {
			t.Fatalf("parseNumberList(%q, %d): %d values from %d bytes", s, depth, len(l.Values), len(s))
		}
		// What parsed reads back the same from its JSON spelling (NaN aside).
		var b []byte
		var write func(level, off int) int
		write = func(level, off int) int {
			b = append(b, '[')
			for i := range l.Shape[level] {
				if i > 0 {
					b = append(b, ',')
				}
				if level == depth-1 {
					v := l.Values[off]
					off++
					switch {
					case v != v:
						b = append(b, "nan"...)
					case math.IsInf(v, 0):
						b = append(b, strconv.FormatFloat(v, 'g', -1, 64)...)
					default:
						b = appendNumber(b, v, 64)
					}
				} else {
					off = write(level+1, off)
				}
			}
			b = append(b, ']')
			return off
		}
		if l.Shape[0] > 0 && slices.Contains(l.Shape, 0) {
			return // "[[]]" and the like have no spelling that keeps the inner zeros
		}
		write(0, 0)
		again, err := parseNumberList[float64](string(b), depth)
		if err != nil {
			t.Fatalf("parseNumberList(%q) = %v, but its respelling %q fails: %v", s, l, b, err)
		}
		if !slices.Equal(again.Shape, l.Shape) || len(again.Values) != len(l.Values) {
			t.Fatalf("respelling %q of %q: shape %v, want %v", b, s, again.Shape, l.Shape)
		}
		for i, v := range again.Values {
			if v != l.Values[i] && !(v != v && l.Values[i] != l.Values[i]) {
				t.Fatalf("respelling %q of %q: value %d is %v, want %v", b, s, i, v, l.Values[i])
			}
		}
	})
}
