package livepeer

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxMessageLen caps an upstream message carried in an error: gRPC details must stay
// small (trailers are capped at 8 KiB by some clients) and a gateway may echo input.
const MaxMessageLen = 256

// maxErrorBody is how much of an error response body is read for parsing.
const maxErrorBody = 64 << 10

// ParseErrorBody extracts a message and field violations from any of the upstream error
// shapes (UPSTREAM.md §4.1). It knows no key: the client redacts its results (see
// parseErrorBody) before they leave the process.
//
//	runner      {"detail":{"msg":"..."}}
//	validation  {"detail":[{"loc":[...],"msg":"...","type":"..."}]}
//	gateway     {"error":{"message":"..."}}
//	studio      {"errors":["...", ...]}
//	auth proxy  {"error":"Unauthorized","message":"Invalid API key"}
//
// Anything else (HTML from a load balancer, plain text) becomes a short sanitized text.
// The message never exceeds MaxMessageLen bytes.
func ParseErrorBody(body []byte) (message string, violations []Violation) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", nil
	}
	var v struct {
		Detail  json.RawMessage `json:"detail"`
		Error   json.RawMessage `json:"error"`
		Errors  json.RawMessage `json:"errors"`
		Message json.RawMessage `json:"message"`
	}
	if body[0] != '{' || json.Unmarshal(body, &v) != nil {
		return plainText(body), nil
	}
	var parts []string
	add := func(s string) {
		// go-livepeer relays runner 400s as ": <message>"; drop the leading separator.
		if s = strings.TrimLeft(Sanitize(s), ": "); s != "" {
			parts = append(parts, s)
		}
	}
	// Runner: detail is an object with msg, or a list of validation errors.
	if len(v.Detail) > 0 {
		var d struct {
			Msg string `json:"msg"`
		}
		var list []struct {
			Loc []any  `json:"loc"`
			Msg string `json:"msg"`
		}
		var s string
		switch {
		case json.Unmarshal(v.Detail, &d) == nil && d.Msg != "":
			add(d.Msg)
		case json.Unmarshal(v.Detail, &list) == nil:
			for _, item := range list {
				violations = append(violations, Violation{Field: locPath(item.Loc), Message: truncate(Sanitize(item.Msg))})
			}
			if len(list) > 0 {
				add(list[0].Msg)
			}
		case json.Unmarshal(v.Detail, &s) == nil:
			add(s)
		}
	}
	// Gateway {"error":{"message"}} or auth {"error":"Unauthorized","message":...}.
	if len(v.Error) > 0 {
		var e struct {
			Message string `json:"message"`
		}
		var s string
		if json.Unmarshal(v.Error, &e) == nil && e.Message != "" {
			add(e.Message)
		} else if json.Unmarshal(v.Error, &s) == nil && len(v.Message) == 0 {
			add(s)
		}
	}
	if len(v.Message) > 0 {
		var s string
		if json.Unmarshal(v.Message, &s) == nil {
			add(s)
		}
	}
	// Studio: a list of strings, each possibly a JSON-encoded ajv error.
	if len(v.Errors) > 0 {
		var list []json.RawMessage
		if json.Unmarshal(v.Errors, &list) == nil {
			for _, raw := range list {
				msg, field := studioError(raw)
				if field != "" {
					violations = append(violations, Violation{Field: field, Message: truncate(Sanitize(msg))})
				}
				add(msg)
			}
		}
	}
	return truncate(strings.Join(parts, "; ")), violations
}

// studioError reads one entry of Studio's errors list: a plain string, or an ajv error
// object (possibly JSON-encoded inside the string) with instancePath and message.
func studioError(raw json.RawMessage) (msg, field string) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if !strings.HasPrefix(strings.TrimSpace(s), "{") {
			return s, ""
		}
		raw = json.RawMessage(s)
	}
	var ajv struct {
		InstancePath string `json:"instancePath"`
		Message      string `json:"message"`
		Params       struct {
			MissingProperty    string `json:"missingProperty"`
			AdditionalProperty string `json:"additionalProperty"`
		} `json:"params"`
	}
	if json.Unmarshal(raw, &ajv) != nil || ajv.Message == "" {
		return s, ""
	}
	field = fieldPath(strings.Split(strings.TrimPrefix(ajv.InstancePath, "/"), "/"))
	switch {
	case ajv.Params.MissingProperty != "":
		field = joinField(field, ajv.Params.MissingProperty)
	case ajv.Params.AdditionalProperty != "":
		field = joinField(field, ajv.Params.AdditionalProperty)
	}
	field = truncate(Sanitize(field))
	if field == "" {
		field = "body"
	}
	return ajv.Message, field
}

func joinField(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// locPath turns a FastAPI loc such as ["body", "messages", 0, "content"] into
// "body.messages[0].content".
func locPath(loc []any) string {
	parts := make([]string, 0, len(loc))
	for _, p := range loc {
		switch p := p.(type) {
		case string:
			parts = append(parts, p)
		case float64:
			parts = append(parts, strconv.FormatFloat(p, 'f', -1, 64))
		}
	}
	return truncate(Sanitize(fieldPath(parts)))
}

// fieldPath joins path segments the way request fields are named in statuses: names
// with dots, numeric segments as indexes ("messages[0].role").
func fieldPath(parts []string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if _, err := strconv.ParseUint(p, 10, 32); err == nil && b.Len() > 0 {
			b.WriteString("[" + p + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// plainText reduces a non-JSON body (often an HTML error page) to a short line.
func plainText(body []byte) string {
	s := string(body)
	if strings.HasPrefix(s, "<") {
		// HTML: keep the title if there is one, else say what it was. Only ASCII is
		// lower-cased so that offsets in lower are offsets in s.
		lower := asciiLower(s)
		if i := strings.Index(lower, "<title>"); i >= 0 {
			if j := strings.Index(lower[i:], "</title>"); j > 0 {
				return truncate(Sanitize(s[i+len("<title>") : i+j]))
			}
		}
		return "non-JSON (HTML) error page"
	}
	return truncate(Sanitize(s))
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// Sanitize makes upstream text safe to put in a status message or log: invalid UTF-8 and
// control characters are dropped, runs of whitespace collapse to one space.
func Sanitize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r == utf8.RuneError || (unicode.IsControl(r) && !unicode.IsSpace(r)) {
			continue
		}
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// truncate cuts s to MaxMessageLen bytes on a rune boundary, marking the cut.
func truncate(s string) string { return truncateTo(s, MaxMessageLen) }

// truncateTo cuts s to max bytes on a rune boundary, marking the cut.
func truncateTo(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// ParseRetryAfter parses a Retry-After header value: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3). A date in the past means zero. Absurd values are capped at a day
// so a broken header cannot park a caller forever.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	const maxDelay = 24 * time.Hour
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxDelay/time.Second) {
			return maxDelay, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	switch {
	case d < 0:
		return 0, true
	case d > maxDelay:
		return maxDelay, true
	}
	// HTTP dates have one-second resolution: round up so the caller does not come back early.
	if d%time.Second != 0 {
		d = d.Truncate(time.Second) + time.Second
	}
	return d, true
}
