package livepeertest

import (
	"math"
	"strconv"
	"strings"
)

// Studio's multipart coercion (UPSTREAM §12.1): [ST] validateFormData runs
// every text field through JavaScript's Number.parseFloat before ajv sees
// it. parseFloat is far looser than strconv.ParseFloat: it skips leading
// white space, reads the longest prefix that is a decimal literal (or
// "Infinity") and ignores the rest, so "4k photo" is 4.

// jsParseFloat implements ECMAScript Number.parseFloat (ECMA-262
// §21.1.2.12): leading StrWhiteSpaceChar skipped, an optional sign, then
// "Infinity" or the longest StrUnsignedDecimalLiteral prefix (digits with an
// optional "." and fraction, or "." and digits, then an exponent only if
// digits follow the "e"); NaN when no digit is found. Hex, "0b", "0o" and
// numeric separators are not decimal literals, so "0x10" is 0 and "1_0" is 1.
func jsParseFloat(s string) float64 {
	s = strings.TrimLeftFunc(s, isJSWhiteSpace)
	i, neg := 0, false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	if strings.HasPrefix(s[i:], "Infinity") {
		if neg {
			return math.Inf(-1)
		}
		return math.Inf(1)
	}
	start := i
	intDigits := countDigits(s[i:])
	i += intDigits
	fracDigits := 0
	if i < len(s) && s[i] == '.' {
		fracDigits = countDigits(s[i+1:])
		if intDigits > 0 || fracDigits > 0 {
			i += 1 + fracDigits
		}
	}
	if intDigits == 0 && fracDigits == 0 {
		return math.NaN()
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if n := countDigits(s[j:]); n > 0 {
			i = j + n
		}
	}
	// The prefix is valid Go float syntax ("1.", ".5", "1.e3" included);
	// out-of-range values come back as ±Inf or 0 with ErrRange, which is
	// what JavaScript yields too.
	f, _ := strconv.ParseFloat(s[start:i], 64)
	if neg {
		f = -f
	}
	return f
}

func countDigits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// isJSWhiteSpace reports ECMAScript's StrWhiteSpaceChar: WhiteSpace
// (tab, vertical tab, form feed, space, U+00A0, U+FEFF and the Unicode
// "Space_Separator" characters) and LineTerminator (LF, CR, U+2028,
// U+2029). Go's unicode.IsSpace differs (it includes U+0085 and lacks
// U+FEFF), hence the explicit list.
func isJSWhiteSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r',
		'\u00a0', '\ufeff', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000':
		return true
	}
	return r >= '\u2000' && r <= '\u200a'
}

// studioCoerce is the value ajv validates for one multipart text field
// (UPSTREAM §12.1): the parseFloat number if it is not NaN, else a boolean
// for exactly "true"/"false", else the string itself.
func studioCoerce(s string) any {
	if f := jsParseFloat(s); !math.IsNaN(f) {
		return f
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	return s
}

// ajvTypeOK is ajv's type check of a coerced value. Studio compiles its
// validators with ajv 8 defaults ([ST] schema/compile-schemas.js), whose
// strictNumbers option is on: "number" and "integer" reject NaN and
// ±Infinity, so "Infinity" in a number field fails with "must be number".
func ajvTypeOK(k kind, v any) bool {
	switch k {
	case kString:
		_, ok := v.(string)
		return ok
	case kBoolean:
		_, ok := v.(bool)
		return ok
	case kNumber:
		f, ok := v.(float64)
		return ok && !math.IsInf(f, 0) && !math.IsNaN(f)
	case kInteger:
		f, ok := v.(float64)
		return ok && !math.IsInf(f, 0) && !math.IsNaN(f) && f == math.Trunc(f)
	}
	return false
}
