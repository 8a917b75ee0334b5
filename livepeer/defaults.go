package livepeer

import "time"

// Defaults of the settings in Config that genservice's flags also set. The flags read
// these constants, so a flag's default and the client's default cannot disagree.
//
// New in client.go still spells the same values out; defaults_test.go fails if the two
// ever differ, until New reads these constants itself.
const (
	// DefaultMaxAttempts: one retry of a retryable failure. Generation costs money and
	// a second failure rarely turns into a success at the third attempt.
	DefaultMaxAttempts = 2
	// DefaultConnectTimeout bounds dialing the gateway and its TLS handshake.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultMaxResponseBytes caps a success body; segment-anything-2 masks are large
	// text arrays.
	DefaultMaxResponseBytes = 64 << 20
	// DefaultMaxIdleConnsPerHost sizes the keep-alive pool; Go's default of 2 throttles
	// a proxy.
	DefaultMaxIdleConnsPerHost = 256
)
