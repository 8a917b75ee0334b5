package livepeer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

const testSecret = "sk-live-0123456789abcdef-SECRET"

func TestParseKeyAccepts(t *testing.T) {
	for _, raw := range []string{
		testSecret,
		"a1b2c3d4-e5f6-7890-abcd-ef0123456789", // Studio keys are UUIDs
		"x",
		"!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", // every printable ASCII punctuation
		"Bear",                             // shorter than "bearer"
	} {
		k, err := ParseKey(raw)
		if err != nil {
			t.Errorf("ParseKey(%q) = %v, want nil", raw, err)
			continue
		}
		if k.IsZero() {
			t.Errorf("ParseKey(%q) returned a zero key", raw)
		}
		if k.authorization() != "Bearer "+raw {
			t.Errorf("ParseKey(%q).authorization() = %q", raw, k.authorization())
		}
		if !k.Equal(mustParseKey(t, raw)) {
			t.Errorf("ParseKey(%q) not Equal to itself", raw)
		}
	}
}

func TestParseKeyRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      error
	}{
		{"empty", "", ErrKeyEmpty},
		{"leading space", " " + testSecret, ErrKeyWhitespace},
		{"trailing space", testSecret + " ", ErrKeyWhitespace},
		{"trailing newline", testSecret + "\n", ErrKeyWhitespace},
		{"trailing CRLF", testSecret + "\r\n", ErrKeyWhitespace},
		{"leading tab", "\t" + testSecret, ErrKeyWhitespace},
		{"only spaces", "   ", ErrKeyWhitespace},
		{"Bearer prefix", "Bearer xyz", ErrKeyBearer},
		{"bearer prefix lower case", "bearer xyz", ErrKeyBearer},
		{"BEARER prefix", "BEARER " + testSecret, ErrKeyBearer},
		{"Bearer without space", "Bearer" + testSecret, ErrKeyBearer},
		{"placeholder", "your-api-key-here", ErrKeyPlaceholder},
		{"embedded space", "sk-live 0123456789", ErrKeyControl},
		{"embedded newline", "sk-live\n0123456789", ErrKeyControl},
		{"embedded CR", "sk-live\r0123456789", ErrKeyControl},
		{"embedded tab", "sk-live\t0123456789", ErrKeyControl},
		{"embedded NUL", "sk-live\x000123456789", ErrKeyControl},
		{"embedded ESC", "sk-live\x1b0123456789", ErrKeyControl},
		{"embedded DEL", "sk-live\x7f0123456789", ErrKeyControl},
		{"embedded C1 control", "sk-live\u00850123456789", ErrKeyControl},
		{"embedded no-break space", "sk-live\u00a00123456789", ErrKeyControl},
		{"embedded line separator", "sk-live\u20280123456789", ErrKeyControl},
		// A key is printable ASCII: anything else is a copy-and-paste accident.
		{"non-ASCII letters", "key-with-ünïcödé", ErrKeyNotPrintable},
		{"en dash", "sk\u2013live-0123456789", ErrKeyNotPrintable},
		{"byte-order mark", "\ufeffsk-live-0123456789", ErrKeyNotPrintable},
		{"invalid UTF-8", "sk-live-0123456789\xff", ErrKeyNotPrintable},
		{"fullwidth letters", "ｓｋ-live-0123456789", ErrKeyNotPrintable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKey(tc.raw)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseKey(%q) = %v, want %v", tc.raw, err, tc.want)
			}
			if !k.IsZero() {
				t.Errorf("ParseKey(%q) returned a non-zero key with its error", tc.raw)
			}
			assertNoKeyIn(t, err.Error(), tc.raw)
		})
	}
}

// The sentinel errors are distinct, so callers (and start-up messages) can say which.
func TestKeyErrorsDistinct(t *testing.T) {
	all := []error{ErrKeyEmpty, ErrKeyWhitespace, ErrKeyBearer, ErrKeyPlaceholder, ErrKeyControl}
	seen := map[string]bool{}
	for i, a := range all {
		if seen[a.Error()] {
			t.Errorf("duplicate key error text %q", a.Error())
		}
		seen[a.Error()] = true
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = true", a, b)
			}
		}
	}
}

// assertNoKeyIn fails if msg shows the key (or its non-whitespace core).
func assertNoKeyIn(t *testing.T, msg, raw string) {
	t.Helper()
	core := strings.TrimSpace(raw)
	core = strings.TrimPrefix(strings.TrimPrefix(core, "Bearer "), "bearer ")
	for _, s := range []string{raw, core} {
		if s == PlaceholderKey {
			continue // public, and naming it is the point of ErrKeyPlaceholder
		}
		if len(s) >= 8 && strings.Contains(msg, s) {
			t.Errorf("message %q contains the key %q", msg, s)
		}
	}
	for _, part := range []string{"0123456789", "xyz"} {
		if strings.Contains(raw, part) && strings.Contains(msg, part) {
			t.Errorf("message %q contains part of the key (%q)", msg, part)
		}
	}
}

func TestParseKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		contents string
		want     error
	}{
		{"no newline", testSecret, nil},
		{"one LF", testSecret + "\n", nil},
		{"one CRLF", testSecret + "\r\n", nil},
		{"two LF", testSecret + "\n\n", ErrKeyWhitespace},
		{"two CRLF", testSecret + "\r\n\r\n", ErrKeyWhitespace},
		{"trailing space", testSecret + " ", ErrKeyWhitespace},
		{"trailing space then LF", testSecret + " \n", ErrKeyWhitespace},
		{"trailing tab then LF", testSecret + "\t\n", ErrKeyWhitespace},
		{"leading LF", "\n" + testSecret, ErrKeyWhitespace},
		{"leading space", " " + testSecret + "\n", ErrKeyWhitespace},
		{"empty file", "", ErrKeyEmpty},
		{"only LF", "\n", ErrKeyEmpty},
		{"only CRLF", "\r\n", ErrKeyEmpty},
		{"Bearer", "Bearer abc\n", ErrKeyBearer},
		{"placeholder", PlaceholderKey + "\n", ErrKeyPlaceholder},
		{"two lines", testSecret + "\nsecond\n", ErrKeyControl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeyFile([]byte(tc.contents))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("ParseKeyFile(%q) = %v", tc.contents, err)
				}
				if !k.Equal(mustParseKey(t, testSecret)) {
					t.Fatalf("ParseKeyFile(%q) did not yield the bare key", tc.contents)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseKeyFile(%q) = %v, want %v", tc.contents, err, tc.want)
			}
			assertNoKeyIn(t, err.Error(), tc.contents)
		})
	}
}

func mustParseKey(t testing.TB, raw string) APIKey {
	t.Helper()
	k, err := ParseKey(raw)
	if err != nil {
		t.Fatalf("ParseKey(%q): %v", raw, err)
	}
	return k
}

func assertRedacted(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, testSecret) || strings.Contains(out, "SECRET") {
		t.Errorf("%s leaks the key: %s", what, out)
	}
	if !strings.Contains(out, redacted) {
		t.Errorf("%s = %q, want it to contain %q", what, out, redacted)
	}
}

func TestKeyRedactedByFmt(t *testing.T) {
	k := mustParseKey(t, testSecret)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%-20v"} {
		assertRedacted(t, "Sprintf("+verb+", key)", fmt.Sprintf(verb, k))
		assertRedacted(t, "Sprintf("+verb+", &key)", fmt.Sprintf(verb, &k))
	}
	// fmt handles %p before calling Format, so the output need not say [REDACTED],
	// but it must not show the key either.
	for _, v := range []any{k, &k} {
		if out := fmt.Sprintf("%p", v); strings.Contains(out, testSecret) {
			t.Errorf("Sprintf(%%p, %T) leaks the key: %s", v, out)
		}
	}
	assertRedacted(t, "Sprint", fmt.Sprint(k))
	assertRedacted(t, "Sprintln", fmt.Sprintln(k))
	assertRedacted(t, "String", k.String())
	assertRedacted(t, "GoString", k.GoString())
	assertRedacted(t, "Errorf %w-less", fmt.Errorf("bad key %v", k).Error())
	assertRedacted(t, "slice", fmt.Sprintf("%v", []APIKey{k}))
	assertRedacted(t, "map", fmt.Sprintf("%v", map[string]APIKey{"k": k}))
}

func TestKeyRedactedInStructs(t *testing.T) {
	k := mustParseKey(t, testSecret)
	type exported struct {
		Name string
		Key  APIKey
		Ptr  *APIKey
	}
	v := exported{Name: "cfg", Key: k, Ptr: &k}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assertRedacted(t, "exported field "+verb, fmt.Sprintf(verb, v))
		assertRedacted(t, "pointer to struct "+verb, fmt.Sprintf(verb, &v))
	}
	var src KeySource = StaticKey(k)
	type withSource struct{ Keys KeySource }
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		// A Config{Keys: StaticKey(k)} printed by mistake must not leak either.
		out := fmt.Sprintf(verb, withSource{src})
		if strings.Contains(out, testSecret) {
			t.Errorf("StaticKey inside a struct, %s, leaks the key: %s", verb, out)
		}
		if out := fmt.Sprintf(verb, src); strings.Contains(out, testSecret) {
			t.Errorf("StaticKey %s leaks the key: %s", verb, out)
		}
	}
}

// fmt cannot call methods on unexported fields; it prints them with reflection. A key
// held in an unexported field of some struct (the usual way to hold it) must still not
// leak when that struct is printed.
func TestKeyRedactedInUnexportedField(t *testing.T) {
	k := mustParseKey(t, testSecret)
	type holder struct {
		name string
		key  APIKey
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		if out := fmt.Sprintf(verb, holder{"x", k}); strings.Contains(out, testSecret) {
			t.Errorf("unexported APIKey field, %s, leaks the key: %s", verb, out)
		}
	}
}

func TestKeyRedactedBySlog(t *testing.T) {
	k := mustParseKey(t, testSecret)
	type nested struct {
		Key APIKey
	}
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		t.Run(h.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(h.new(&buf))
			log.Info("key", "key", k)
			log.Info("key", slog.Any("key", k), slog.Any("ptr", &k))
			log.Info("key", "nested", nested{k})
			log.With("key", k).Info("with")
			log.Info("group", slog.Group("g", slog.Any("key", k)))
			log.Info("fmt", "msg", fmt.Sprintf("%v", k))
			out := buf.String()
			if strings.Contains(out, testSecret) {
				t.Fatalf("slog %s output leaks the key:\n%s", h.name, out)
			}
			if n := strings.Count(out, redacted); n < 7 {
				t.Errorf("slog %s output has %d %q, want ≥ 7:\n%s", h.name, n, redacted, out)
			}
		})
	}
}

func TestKeyRedactedByJSON(t *testing.T) {
	k := mustParseKey(t, testSecret)
	for _, v := range []any{
		k,
		&k,
		struct{ Key APIKey }{k},
		struct {
			Key *APIKey `json:"key"`
		}{&k},
		map[string]APIKey{"k": k},
		[]APIKey{k},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		assertRedacted(t, fmt.Sprintf("json.Marshal(%T)", v), string(b))
	}
	// A StaticKey has no MarshalText of its own; it must not leak either.
	b, err := json.Marshal(struct{ Keys KeySource }{StaticKey(k)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testSecret) {
		t.Errorf("json.Marshal of a StaticKey leaks the key: %s", b)
	}
}

var fingerprintRE = regexp.MustCompile(`^sha256:[0-9a-f]{8}$`)

func TestFingerprint(t *testing.T) {
	a := mustParseKey(t, testSecret)
	b := mustParseKey(t, testSecret+"2")
	fa := a.Fingerprint()
	if !fingerprintRE.MatchString(fa) {
		t.Fatalf("Fingerprint = %q, want sha256:<8 hex>", fa)
	}
	if fa != mustParseKey(t, testSecret).Fingerprint() || fa != a.Fingerprint() {
		t.Error("Fingerprint is not stable")
	}
	if fb := b.Fingerprint(); fb == fa || !fingerprintRE.MatchString(fb) {
		t.Errorf("fingerprints of different keys: %q and %q", fa, fb)
	}
	// Operators check it with: printf %s "$KEY" | sha256sum
	sum := sha256.Sum256([]byte(testSecret))
	if want := "sha256:" + hex.EncodeToString(sum[:])[:8]; fa != want {
		t.Errorf("Fingerprint = %q, want %q (prefix of sha256sum)", fa, want)
	}
	if strings.Contains(fa, testSecret) {
		t.Error("fingerprint contains the key")
	}
	if got := (APIKey{}).Fingerprint(); got != "none" {
		t.Errorf("zero key Fingerprint = %q, want none", got)
	}
	if !(APIKey{}).IsZero() {
		t.Error("zero key IsZero = false")
	}
}

func TestStaticKey(t *testing.T) {
	k := mustParseKey(t, testSecret)
	var src KeySource = StaticKey(k)
	if !src.Key().Equal(k) {
		t.Error("StaticKey.Key() differs from the key")
	}
}
