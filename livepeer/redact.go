package livepeer

import "strings"

// Redaction of the key from text that leaves the process (DESIGN §6).
//
// Gateways echo the key they were sent: Studio answers an unknown key with
// "no token <key> found", and proxies quote the Authorization header. They do not echo
// it byte for byte: JSON may \u-escape it, a control character inside it is dropped by
// Sanitize (which rejoins the two halves), and a cut may leave all but one character.
// So redaction runs on the decoded, sanitized text (never on the raw body), and it
// hides every long fragment of the key, not only the whole key.
//
// The rule: every run of at least minKeyFragment consecutive characters of the key (the
// whole key if it is shorter), compared without regard to ASCII case, is the key.
//
//   - Why a fixed 8 and not a share of the key such as half: in decoded and sanitized
//     text the only things that can still split the key are characters the gateway put
//     there (a space, a line wrap, a quote). With "half the key", a key cut in three
//     pieces would get through whole; with 8, each visible piece is at most 7
//     characters (28 bits of a hexadecimal key), and a gateway would have to break
//     the key every 7 characters to get it through.
//   - Why that is not too eager: keys are random (Studio's are UUIDs, ~36 characters).
//     The chance that 8 given characters of ordinary text equal one of the ~30 windows
//     of a random key is about 30/36^8 ≈ 10^-11 (36 letters once case is ignored). Only
//     a fixed, public prefix such as "sk-live-" can match by itself, and hiding it costs
//     the reader nothing.
//   - Why case-insensitive: a proxy or a log pipeline that upper-cases the text still
//     carries the key, and for the hexadecimal keys Studio issues case carries no
//     information at all; ignoring case only shrinks the alphabet of the estimate above.
//
// Cost: the text is scanned once, and each of its windows is compared with the windows
// of the (short) key, most comparisons ending at the first byte: about len(text) ×
// len(key) byte comparisons and no allocation unless something is redacted, on error
// paths only and on text already capped (MaxMessageLen for upstream messages, 1 KiB
// for a transport error).
const minKeyFragment = 8

// keyRedactor hides the long fragments of one or more keys.
type keyRedactor struct {
	keys []APIKey
	n    int // window length: minKeyFragment, or the shortest key if shorter
}

// newKeyRedactor returns a redactor for keys (zero keys are ignored). It allocates
// nothing: redaction runs on every upstream error.
func newKeyRedactor(keys ...APIKey) keyRedactor {
	n := 0
	for _, k := range keys {
		if l := len(k.raw()); l > 0 && (n == 0 || l < n) {
			n = l
		}
	}
	return keyRedactor{keys: keys, n: min(n, minKeyFragment)}
}

// isFragment reports whether w (len r.n) is a run of some key, ignoring ASCII case.
func (r keyRedactor) isFragment(w string) bool {
	first := lowerASCII(w[0])
	for _, k := range r.keys {
		raw := k.raw()
		for j := 0; j+len(w) <= len(raw); j++ {
			if lowerASCII(raw[j]) == first && asciiEqualFold(raw[j+1:j+len(w)], w[1:]) {
				return true
			}
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func asciiEqualFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

// marker is what replaces a fragment: "[REDACTED]", unless the key could form a
// fragment with it (a key holding "redacted", or a bracket that could join the text
// next to the marker). Then it is "…", which no key can share a character with
// (ParseKey admits printable ASCII only). Either way one pass leaves no fragment: a
// window that was no fragment before still is none, and a window that now overlaps the
// marker holds a character no key window matches.
func (r keyRedactor) marker() string {
	for _, k := range r.keys {
		if strings.ContainsAny(k.raw(), "[]…") {
			return "…"
		}
	}
	for i := 0; i+r.n <= len(redacted); i++ {
		if r.isFragment(redacted[i : i+r.n]) {
			return "…"
		}
	}
	return redacted
}

// redact replaces every maximal stretch of s covered by key fragments with a marker.
// s is returned unchanged (and nothing allocated) when it holds none.
func (r keyRedactor) redact(s string) string {
	n := r.n
	if n == 0 || len(s) < n {
		return s
	}
	var b strings.Builder
	mark := ""
	last := 0            // s[last:] is not written yet
	start, end := -1, -1 // the covered stretch being extended
	for i := 0; i+n <= len(s); i++ {
		if !r.isFragment(s[i : i+n]) {
			continue
		}
		if start >= 0 && i <= end {
			end = i + n // overlaps or touches the stretch: extend it
			continue
		}
		if start >= 0 {
			b.WriteString(s[last:start])
			b.WriteString(mark)
			last = end
		} else {
			mark = r.marker()
		}
		start, end = i, i+n
	}
	if start < 0 {
		return s
	}
	b.WriteString(s[last:start])
	b.WriteString(mark)
	b.WriteString(s[end:])
	return b.String()
}

// text redacts s and keeps it within MaxMessageLen. Truncating after redaction only
// removes a suffix, so it cannot rebuild a fragment.
func (r keyRedactor) text(s string) string {
	return truncate(r.redact(s))
}

// parseErrorBody is ParseErrorBody followed by redaction of keys from everything it
// returns. This is the only way the client reads error bodies.
func parseErrorBody(body []byte, keys ...APIKey) (string, []Violation) {
	msg, violations := ParseErrorBody(body)
	r := newKeyRedactor(keys...)
	for i := range violations {
		violations[i].Field = r.text(violations[i].Field)
		violations[i].Message = r.text(violations[i].Message)
	}
	return r.text(msg), violations
}

// RedactText replaces every long fragment of the key in s (decoded, sanitized text
// about to leave the process) with "[REDACTED]"; see minKeyFragment for the rule.
func (k APIKey) RedactText(s string) string { return newKeyRedactor(k).redact(s) }
