package livepeer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
)

// PlaceholderKey is the example key from the Livepeer documentation. Deployments copied
// from the docs sometimes keep it; it can never authenticate, so it is refused up front.
const PlaceholderKey = "your-api-key-here"

// APIKey holds the backend API key. Every way of printing it (fmt verbs, %#v, slog)
// yields "[REDACTED]", so a key that ends up in a log call or an error by mistake
// does not leak. Use Fingerprint to identify a key in logs and errors.
//
// The secret sits behind a pointer: fmt does not call Format on values it reaches by
// reflection (unexported struct fields, types defined from APIKey such as StaticKey),
// and there a pointer prints as an address, never as the string.
type APIKey struct {
	secret *string
}

func (k APIKey) raw() string {
	if k.secret == nil {
		return ""
	}
	return *k.secret
}

// Key validation errors. Each says what is wrong without showing the key.
var (
	ErrKeyEmpty       = errors.New("the API key is empty")
	ErrKeyWhitespace  = errors.New("the API key has leading or trailing whitespace")
	ErrKeyBearer      = errors.New(`the API key starts with "Bearer"; give the bare key, genservice adds the "Bearer " scheme itself`)
	ErrKeyPlaceholder = errors.New(`the API key is the documentation's placeholder "your-api-key-here"; use a real backend key from Livepeer Studio`)
	ErrKeyControl     = errors.New("the API key contains whitespace or control characters")
	// ErrKeyNotPrintable: a key is printable ASCII (0x21-0x7E). Anything else is a
	// copy-and-paste accident (a typographic dash or quote, a non-breaking space, a
	// byte-order mark, another encoding) that can never authenticate, and it would make
	// the Authorization header and the redaction of the key depend on an encoding.
	ErrKeyNotPrintable = errors.New("the API key contains a character outside printable ASCII (for example a typographic dash or quote, a non-ASCII letter or invalid UTF-8, as copying from a web page or a document may add); a Livepeer API key is plain ASCII")
	// ErrKeyFileTooLarge: see MaxKeyFileSize.
	ErrKeyFileTooLarge = fmt.Errorf("the key file is larger than %d bytes; it must hold only the API key (and at most one trailing newline)", MaxKeyFileSize)
)

// MaxKeyFileSize caps the key file. A key is ~20-40 characters; 4 KiB is a hundred
// times that and still fits an HTTP header everywhere (proxies commonly cap headers at
// 8 KiB). A larger file is not a key but a wrong path (a log, a bundle, a device), and
// reading it whole would cost memory at start-up and on every reload.
const MaxKeyFileSize = 4 << 10

// ParseKey validates raw as a backend API key. It refuses an empty key, surrounding
// whitespace, a "Bearer " prefix, the documentation placeholder, embedded spaces or
// control characters (which would corrupt the Authorization header), and anything else
// outside printable ASCII.
func ParseKey(raw string) (APIKey, error) {
	switch {
	case raw == "":
		return APIKey{}, ErrKeyEmpty
	case strings.TrimSpace(raw) != raw:
		return APIKey{}, ErrKeyWhitespace
	case len(raw) >= 6 && strings.EqualFold(raw[:6], "bearer"):
		return APIKey{}, ErrKeyBearer
	case raw == PlaceholderKey:
		return APIKey{}, ErrKeyPlaceholder
	}
	for _, r := range raw {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return APIKey{}, ErrKeyControl
		}
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] < 0x21 || raw[i] > 0x7e {
			return APIKey{}, ErrKeyNotPrintable
		}
	}
	return APIKey{secret: &raw}, nil
}

// ParseKeyFile validates the contents of a key file. A single trailing newline (as left
// by editors and `echo`) is stripped; anything else is validated as by ParseKey.
// Contents over MaxKeyFileSize are refused unread.
func ParseKeyFile(contents []byte) (APIKey, error) {
	if len(contents) > MaxKeyFileSize {
		return APIKey{}, ErrKeyFileTooLarge
	}
	s := string(contents)
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	return ParseKey(s)
}

// IsZero reports whether k holds no key.
func (k APIKey) IsZero() bool { return k.raw() == "" }

// Fingerprint identifies the key without revealing it: "sha256:" and the first 8 hex
// digits of the SHA-256 of the key. Operators compare it with the fingerprint of the key
// they meant to deploy (printf %s "$KEY" | sha256sum).
func (k APIKey) Fingerprint() string {
	if k.raw() == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(k.raw()))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// authorization returns the Authorization header value. Unexported so that only the
// client in this package can see the secret.
func (k APIKey) authorization() string { return "Bearer " + k.raw() }

// Equal reports whether two keys hold the same secret.
func (k APIKey) Equal(o APIKey) bool { return k.raw() == o.raw() }

const redacted = "[REDACTED]"

// String implements fmt.Stringer.
func (APIKey) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (APIKey) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb, including %v, %x and %q, redacts.
func (APIKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (APIKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps encoders (JSON, YAML) from serialising the secret.
func (APIKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// KeySource supplies the current backend key. Implementations must be safe for
// concurrent use; a call keeps the key it started with even if the source changes.
type KeySource interface {
	// Key returns the key to use for a new upstream request.
	Key() APIKey
}

// StaticKey is a KeySource that always returns the same key.
type StaticKey APIKey

// Key implements KeySource.
func (s StaticKey) Key() APIKey { return APIKey(s) }

// String, GoString, Format and LogValue redact, as for APIKey.
func (StaticKey) String() string               { return redacted }
func (StaticKey) GoString() string             { return redacted }
func (StaticKey) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (StaticKey) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (StaticKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }
