package livepeer

import (
	"net/http"
	"testing"
)

// TestNewAppliesTheDefaults: a zero Config gets the Default* values, the ones
// genservice's flags show and start with.
func TestNewAppliesTheDefaults(t *testing.T) {
	c, err := New(Config{Keys: StaticKey{}})
	if err != nil {
		t.Fatal(err)
	}
	if c.maxAttempts != DefaultMaxAttempts || c.maxResp != DefaultMaxResponseBytes {
		t.Errorf("max attempts %d, max response %d; want %d, %d", c.maxAttempts, c.maxResp, DefaultMaxAttempts, DefaultMaxResponseBytes)
	}
	tr, ok := c.http.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T", c.http.Transport)
	}
	if tr.TLSHandshakeTimeout != DefaultConnectTimeout || tr.MaxIdleConnsPerHost != DefaultMaxIdleConnsPerHost {
		t.Errorf("connect timeout %v, idle conns per host %d; want %v, %d", tr.TLSHandshakeTimeout, tr.MaxIdleConnsPerHost, DefaultConnectTimeout, DefaultMaxIdleConnsPerHost)
	}
	if f := c.NewMediaFetcher(MediaConfig{}); f.maxBytes != DefaultMaxMediaBytes {
		t.Errorf("media cap %d, want %d", f.maxBytes, DefaultMaxMediaBytes)
	}
}
