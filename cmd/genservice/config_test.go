package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"genservice/internal/secretdir"
	"genservice/livepeer"
	"genservice/server"
)

const canaryKey = "canary-key-123456789"

// env is a fake environment.
type env map[string]string

func (e env) get(k string) string { return e[k] }

// files is a fake file system for the key file.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	s, ok := f[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return []byte(s), nil
}

var tlsArgs = []string{"--tls-cert", "/etc/genservice/tls.crt", "--tls-key", "/etc/genservice/tls.key", "--client-ca", "/etc/genservice/ca.crt"}

func withTLS(args ...string) []string { return append(append([]string{}, tlsArgs...), args...) }

func keyEnv(extra env) env {
	e := env{"LIVEPEER_API_KEY": canaryKey}
	for k, v := range extra {
		e[k] = v
	}
	return e
}

func mustParse(t *testing.T, args []string, e env, f files) *serveConfig {
	t.Helper()
	c, err := parseServe(args, e.get, f.read)
	if err != nil {
		t.Fatalf("parseServe(%q): %v", args, err)
	}
	return c
}

func parseErr(t *testing.T, args []string, e env, f files) string {
	t.Helper()
	c, err := parseServe(args, e.get, f.read)
	if err == nil {
		t.Fatalf("parseServe(%q) = %+v, want an error", args, c)
	}
	msg := err.Error()
	if strings.Contains(msg, canaryKey) || strings.Contains(msg, "canary-key") {
		t.Errorf("error shows the key: %s", msg)
	}
	return msg
}

func wantAll(t *testing.T, msg string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not mention %q", msg, s)
		}
	}
}

func TestParseServeDefaults(t *testing.T) {
	c := mustParse(t, withTLS(), keyEnv(nil), nil)
	if c.Listen != ":8443" || c.GatewayURL != livepeer.DefaultGatewayURL || c.MaxMessageSize != server.DefaultMaxMessageSize ||
		c.ShutdownGrace != 30*time.Second || c.DrainDelay != 5*time.Second || c.LogLevel != slog.LevelInfo ||
		c.ErrorDomain != server.DefaultErrorDomain || c.MaxAttempts != 2 || c.ConnectTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	if c.TLS.CertFile != "/etc/genservice/tls.crt" || c.TLS.KeyFile != "/etc/genservice/tls.key" || c.TLS.ClientCAFile != "/etc/genservice/ca.crt" {
		t.Errorf("TLS = %+v", c.TLS)
	}
	if !c.Key.Equal(mustKey(canaryKey)) || c.KeyOrigin != "LIVEPEER_API_KEY" {
		t.Errorf("key origin %q, fingerprint %s", c.KeyOrigin, c.Key.Fingerprint())
	}
	if s := fmt.Sprintf("%+v %#v", c, c); strings.Contains(s, canaryKey) {
		t.Errorf("printing the config shows the key: %s", s)
	}
}

func TestParseServeRequiredTLSFlags(t *testing.T) {
	msg := parseErr(t, nil, keyEnv(nil), nil)
	wantAll(t, msg, "--tls-cert", "GENSERVICE_TLS_CERT", "--tls-key", "GENSERVICE_TLS_KEY", "--client-ca", "GENSERVICE_CLIENT_CA")

	msg = parseErr(t, []string{"--tls-key", "k", "--client-ca", "ca"}, keyEnv(nil), nil)
	wantAll(t, msg, "--tls-cert", "GENSERVICE_TLS_CERT")
	if strings.Contains(msg, "--tls-key") || strings.Contains(msg, "--client-ca") {
		t.Errorf("error names flags that were given: %s", msg)
	}

	// The same flags from the environment.
	c := mustParse(t, nil, keyEnv(env{"GENSERVICE_TLS_CERT": "/a.crt", "GENSERVICE_TLS_KEY": "/a.key", "GENSERVICE_CLIENT_CA": "/ca.crt"}), nil)
	if c.TLS.CertFile != "/a.crt" || c.TLS.KeyFile != "/a.key" || c.TLS.ClientCAFile != "/ca.crt" {
		t.Errorf("TLS from env = %+v", c.TLS)
	}
}

func TestParseServeGatewayURL(t *testing.T) {
	for _, bad := range []string{"ftp://gw.example", "gw.example", "https://user:pw@gw.example", "https://gw.example/x?y=1"} {
		msg := parseErr(t, withTLS("--gateway-url", bad), keyEnv(nil), nil)
		wantAll(t, msg, "--gateway-url")
		if strings.Contains(msg, "pw@") {
			t.Errorf("error shows URL credentials: %s", msg)
		}
	}
	c := mustParse(t, withTLS(), keyEnv(env{"LIVEPEER_GATEWAY_URL": "http://127.0.0.1:8935"}), nil)
	if c.GatewayURL != "http://127.0.0.1:8935" {
		t.Errorf("LIVEPEER_GATEWAY_URL: GatewayURL = %q", c.GatewayURL)
	}
	// (https: plaintext to a non-loopback host is refused, TestParseServePlaintextGateway.)
	c = mustParse(t, withTLS(), keyEnv(env{"LIVEPEER_GATEWAY_URL": "https://a:1", "GENSERVICE_GATEWAY_URL": "https://b:2"}), nil)
	if c.GatewayURL != "https://b:2" {
		t.Errorf("GENSERVICE_GATEWAY_URL should win over LIVEPEER_GATEWAY_URL: %q", c.GatewayURL)
	}
	c = mustParse(t, withTLS("--gateway-url", "https://c:3"), keyEnv(env{"LIVEPEER_GATEWAY_URL": "https://a:1", "GENSERVICE_GATEWAY_URL": "https://b:2"}), nil)
	if c.GatewayURL != "https://c:3" {
		t.Errorf("the flag should win: %q", c.GatewayURL)
	}
	msg := parseErr(t, withTLS(), keyEnv(env{"LIVEPEER_GATEWAY_URL": "ftp://x"}), nil)
	wantAll(t, msg, "LIVEPEER_GATEWAY_URL")
}

func TestParseServeKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   env
		files files
		want  []string
	}{
		{"missing", env{}, nil, []string{"LIVEPEER_API_KEY_FILE", "LIVEPEER_API_KEY"}},
		{"both set", env{"LIVEPEER_API_KEY": canaryKey, "LIVEPEER_API_KEY_FILE": "/k"}, files{"/k": canaryKey}, []string{"LIVEPEER_API_KEY_FILE", "LIVEPEER_API_KEY", "only one"}},
		{"env trailing newline", env{"LIVEPEER_API_KEY": canaryKey + "\n"}, nil, []string{"LIVEPEER_API_KEY", livepeer.ErrKeyWhitespace.Error()}},
		{"env leading space", env{"LIVEPEER_API_KEY": " " + canaryKey}, nil, []string{"LIVEPEER_API_KEY", livepeer.ErrKeyWhitespace.Error()}},
		{"env Bearer", env{"LIVEPEER_API_KEY": "Bearer " + canaryKey}, nil, []string{"LIVEPEER_API_KEY", livepeer.ErrKeyBearer.Error()}},
		{"env placeholder", env{"LIVEPEER_API_KEY": livepeer.PlaceholderKey}, nil, []string{"LIVEPEER_API_KEY", livepeer.ErrKeyPlaceholder.Error()}},
		{"env embedded space", env{"LIVEPEER_API_KEY": "canary-key 123456789"}, nil, []string{"LIVEPEER_API_KEY", livepeer.ErrKeyControl.Error()}},
		{"file Bearer", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": "Bearer " + canaryKey + "\n"}, []string{"LIVEPEER_API_KEY_FILE", "/run/secrets/k", livepeer.ErrKeyBearer.Error()}},
		{"file two newlines", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": canaryKey + "\n\n"}, []string{"LIVEPEER_API_KEY_FILE", livepeer.ErrKeyWhitespace.Error()}},
		{"file trailing space", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": canaryKey + " \n"}, []string{"LIVEPEER_API_KEY_FILE", livepeer.ErrKeyWhitespace.Error()}},
		{"file placeholder", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": livepeer.PlaceholderKey + "\n"}, []string{"LIVEPEER_API_KEY_FILE", livepeer.ErrKeyPlaceholder.Error()}},
		{"file empty", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": "\n"}, []string{"LIVEPEER_API_KEY_FILE", livepeer.ErrKeyEmpty.Error()}},
		{"file unreadable", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/missing"}, files{}, []string{"LIVEPEER_API_KEY_FILE", "cannot read", "/run/secrets/missing"}},
		{"env en dash", env{"LIVEPEER_API_KEY": "canary\u2013key-123456789"}, nil, []string{"LIVEPEER_API_KEY", "printable ASCII"}},
		{"env invalid UTF-8", env{"LIVEPEER_API_KEY": canaryKey + "\xff"}, nil, []string{"LIVEPEER_API_KEY", "printable ASCII"}},
		{"file non-ASCII", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": canaryKey + "é\n"}, []string{"LIVEPEER_API_KEY_FILE", "/run/secrets/k", "printable ASCII"}},
		{"file too large", env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": canaryKey + strings.Repeat("x", 5000)}, []string{"LIVEPEER_API_KEY_FILE", "/run/secrets/k", "larger than 4096 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := parseErr(t, withTLS(), tc.env, tc.files)
			wantAll(t, msg, tc.want...)
			if strings.Contains(msg, "123456789") {
				t.Errorf("error shows part of the key: %s", msg)
			}
		})
	}
}

func TestParseServeKeyFile(t *testing.T) {
	for _, contents := range []string{canaryKey, canaryKey + "\n", canaryKey + "\r\n"} {
		c := mustParse(t, withTLS(), env{"LIVEPEER_API_KEY_FILE": "/run/secrets/k"}, files{"/run/secrets/k": contents})
		if !c.Key.Equal(mustKey(canaryKey)) {
			t.Errorf("key file %q: wrong key (fingerprint %s)", contents, c.Key.Fingerprint())
		}
		if c.KeyOrigin != "file /run/secrets/k" {
			t.Errorf("KeyOrigin = %q", c.KeyOrigin)
		}
	}
}

// TestParseServePlaintextGateway: an http:// gateway URL to a host that is not loopback
// would send the Bearer key in cleartext; it is refused unless
// --allow-plaintext-gateway says an encrypted tunnel (a mesh sidecar) carries it.
func TestParseServePlaintextGateway(t *testing.T) {
	remote := []string{"http://gateway.internal:8937", "http://10.0.0.5:8937/api", "http://[2001:db8::1]:8937",
		"http://localhost.example.com", "http://127.0.0.1.nip.io", "HTTP://gw.example"}
	for _, u := range remote {
		msg := parseErr(t, withTLS("--gateway-url", u), keyEnv(nil), nil)
		wantAll(t, msg, "--gateway-url", "LIVEPEER_GATEWAY_URL", "cleartext", "--allow-plaintext-gateway", "GENSERVICE_ALLOW_PLAINTEXT_GATEWAY")
		msg = parseErr(t, withTLS(), keyEnv(env{"LIVEPEER_GATEWAY_URL": u}), nil)
		wantAll(t, msg, "LIVEPEER_GATEWAY_URL", "--allow-plaintext-gateway")
		// The flag (or its variable) says the network is protected.
		c := mustParse(t, withTLS("--gateway-url", u, "--allow-plaintext-gateway"), keyEnv(nil), nil)
		if c.GatewayURL != u {
			t.Errorf("--allow-plaintext-gateway: GatewayURL = %q, want %q", c.GatewayURL, u)
		}
		mustParse(t, withTLS(), keyEnv(env{"LIVEPEER_GATEWAY_URL": u, "GENSERVICE_ALLOW_PLAINTEXT_GATEWAY": "true"}), nil)
	}
	// Loopback needs no flag: the demo and the tests run a local simulator over http.
	for _, u := range []string{"http://127.0.0.1:8937", "http://127.9.8.7/x", "http://[::1]:8937", "http://localhost:8937",
		"http://LocalHost", "https://gateway.internal:8937", livepeer.DefaultGatewayURL} {
		mustParse(t, withTLS("--gateway-url", u), keyEnv(nil), nil)
	}
	// The default is off.
	parseErr(t, withTLS("--gateway-url", remote[0]), keyEnv(env{"GENSERVICE_ALLOW_PLAINTEXT_GATEWAY": "false"}), nil)
}

// TestParseServeRealKeyFileReader: serve's own reader (the one main passes) accepts a
// Kubernetes Secret volume, where the file is a symlink to a regular file, and refuses a
// FIFO at once instead of blocking.
func TestParseServeRealKeyFileReader(t *testing.T) {
	sec := secretdir.New(t, t.TempDir(), map[string][]byte{"api-key": []byte(canaryKey + "\n")})
	c, err := parseServe(withTLS(), env{"LIVEPEER_API_KEY_FILE": sec.Path("api-key")}.get, readKeyFile)
	if err != nil || !c.Key.Equal(mustKey(canaryKey)) {
		t.Fatalf("Secret volume key file: %v", err)
	}
	fifo := filepath.Join(t.TempDir(), "api-key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := parseServe(withTLS(), env{"LIVEPEER_API_KEY_FILE": fifo}.get, readKeyFile)
		done <- err
	}()
	select {
	case err := <-done:
		wantAll(t, fmt.Sprint(err), "LIVEPEER_API_KEY_FILE", fifo, "named pipe", "not a regular file")
	case <-time.After(time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close() // release the blocked reader
		}
		<-done
		t.Fatal("reading a FIFO key file blocked")
	}
}

// The key is never a flag: flags show in ps.
func TestNoKeyFlag(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	serveFlags(fs, &serveConfig{})
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "key") && f.Name != "tls-key" {
			t.Errorf("flag --%s looks like it takes the API key", f.Name)
		}
	})
	if _, err := parseServe(withTLS("--api-key", canaryKey), env{}.get, files{}.read); err == nil {
		t.Error("--api-key accepted")
	}
}

func TestParseServeEnvAndFlags(t *testing.T) {
	c := mustParse(t, withTLS(), keyEnv(env{"GENSERVICE_LISTEN": "127.0.0.1:9443"}), nil)
	if c.Listen != "127.0.0.1:9443" {
		t.Errorf("GENSERVICE_LISTEN: Listen = %q", c.Listen)
	}
	c = mustParse(t, withTLS("--listen", ":7443"), keyEnv(env{"GENSERVICE_LISTEN": "127.0.0.1:9443"}), nil)
	if c.Listen != ":7443" {
		t.Errorf("flag should win over env: Listen = %q", c.Listen)
	}
	c = mustParse(t, withTLS("--listen=:7443"), keyEnv(env{"GENSERVICE_LISTEN": ""}), nil)
	if c.Listen != ":7443" {
		t.Errorf("--listen=: Listen = %q", c.Listen)
	}
	c = mustParse(t, withTLS(), keyEnv(env{
		"GENSERVICE_DRAIN_DELAY":              "0s",
		"GENSERVICE_SHUTDOWN_GRACE":           "1m",
		"GENSERVICE_ERROR_DOMAIN":             "gen.example.com",
		"GENSERVICE_UPSTREAM_MAX_ATTEMPTS":    "1",
		"GENSERVICE_UPSTREAM_CONNECT_TIMEOUT": "3s",
		"GENSERVICE_GATEWAY_CA":               "/etc/gw-ca.pem",
	}), nil)
	if c.DrainDelay != 0 || c.ShutdownGrace != time.Minute || c.ErrorDomain != "gen.example.com" || c.MaxAttempts != 1 ||
		c.ConnectTimeout != 3*time.Second || c.GatewayCA != "/etc/gw-ca.pem" {
		t.Errorf("from env: %+v", c)
	}

	for _, tc := range []struct {
		args []string
		env  env
		want []string
	}{
		{withTLS("--drain-delay", "-1s"), nil, []string{"--drain-delay", "GENSERVICE_DRAIN_DELAY"}},
		{withTLS("--shutdown-grace", "-1s"), nil, []string{"--shutdown-grace"}},
		{withTLS("--upstream-max-attempts", "0"), nil, []string{"--upstream-max-attempts", "GENSERVICE_UPSTREAM_MAX_ATTEMPTS"}},
		{withTLS("--upstream-max-attempts", "11"), nil, []string{"--upstream-max-attempts"}},
		{withTLS("--upstream-connect-timeout", "0s"), nil, []string{"--upstream-connect-timeout"}},
		{withTLS("--error-domain", " "), nil, []string{"--error-domain"}},
		{withTLS("--listen", ""), nil, []string{"--listen", "GENSERVICE_LISTEN"}},
		{withTLS(), env{"GENSERVICE_DRAIN_DELAY": "soon"}, []string{"GENSERVICE_DRAIN_DELAY", "soon"}},
		{withTLS(), env{"GENSERVICE_UPSTREAM_MAX_ATTEMPTS": "many"}, []string{"GENSERVICE_UPSTREAM_MAX_ATTEMPTS"}},
		{withTLS("stray"), nil, []string{"stray"}},
	} {
		msg := parseErr(t, tc.args, keyEnv(tc.env), nil)
		wantAll(t, msg, tc.want...)
	}
	// Several problems are reported together.
	msg := parseErr(t, []string{"--drain-delay", "-1s"}, env{}, nil)
	wantAll(t, msg, "--tls-cert", "--drain-delay", "LIVEPEER_API_KEY")
}

func TestParseServeMaxMessageSize(t *testing.T) {
	for in, want := range map[string]int{"16MiB": 16 << 20, "1024": 1024, "4KiB": 4 << 10, "1GiB": 1 << 30, "100B": 100, " 8MiB": 8 << 20} {
		// --max-media-bytes must fit in the message; keep it small for the small sizes.
		c := mustParse(t, withTLS("--max-message-size", in, "--max-media-bytes", "1"), keyEnv(nil), nil)
		if c.MaxMessageSize != want {
			t.Errorf("--max-message-size %q = %d, want %d", in, c.MaxMessageSize, want)
		}
		c = mustParse(t, withTLS("--max-media-bytes", "1"), keyEnv(env{"GENSERVICE_MAX_MESSAGE_SIZE": in}), nil)
		if c.MaxMessageSize != want {
			t.Errorf("GENSERVICE_MAX_MESSAGE_SIZE %q = %d, want %d", in, c.MaxMessageSize, want)
		}
	}
	for _, bad := range []string{"abc", "0", "-1MiB", "2GiB", "1.5MiB", "MiB", "16 MB"} {
		msg := parseErr(t, withTLS("--max-message-size", bad), keyEnv(nil), nil)
		wantAll(t, msg, "max-message-size")
		msg = parseErr(t, withTLS(), keyEnv(env{"GENSERVICE_MAX_MESSAGE_SIZE": bad}), nil)
		wantAll(t, msg, "GENSERVICE_MAX_MESSAGE_SIZE")
	}
	c := mustParse(t, withTLS("--max-message-size", "1MiB", "--max-media-bytes", "1MiB"), keyEnv(env{"GENSERVICE_MAX_MESSAGE_SIZE": "abc"}), nil)
	if c.MaxMessageSize != 1<<20 {
		t.Errorf("flag should win over a bad env value: %d", c.MaxMessageSize)
	}
}

func TestParseServeLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "WARN": slog.LevelWarn} {
		c := mustParse(t, withTLS("--log-level", in), keyEnv(nil), nil)
		if c.LogLevel != want {
			t.Errorf("--log-level %q = %v", in, c.LogLevel)
		}
	}
	c := mustParse(t, withTLS(), keyEnv(env{"GENSERVICE_LOG_LEVEL": "debug"}), nil)
	if c.LogLevel != slog.LevelDebug {
		t.Errorf("GENSERVICE_LOG_LEVEL: %v", c.LogLevel)
	}
	msg := parseErr(t, withTLS("--log-level", "loud"), keyEnv(nil), nil)
	wantAll(t, msg, "log-level", "debug")
	msg = parseErr(t, withTLS(), keyEnv(env{"GENSERVICE_LOG_LEVEL": "loud"}), nil)
	wantAll(t, msg, "GENSERVICE_LOG_LEVEL")
}

func TestParseServeHelp(t *testing.T) {
	_, err := parseServe([]string{"--help"}, env{}.get, files{}.read)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"tls-cert": "GENSERVICE_TLS_CERT", "max-message-size": "GENSERVICE_MAX_MESSAGE_SIZE", "listen": "GENSERVICE_LISTEN"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
