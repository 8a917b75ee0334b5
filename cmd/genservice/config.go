package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"genservice/app"
	"genservice/livepeer"
	"genservice/server"
)

// serveConfig is app.Config: serve's flags and variables fill one in.
type serveConfig = app.Config

// envPrefix prefixes the environment variable of every flag: --tls-cert is also
// GENSERVICE_TLS_CERT.
const envPrefix = "GENSERVICE_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Defaults of the settings that belong to serve itself; the others are the Default*
// values of the package that owns the setting (server, livepeer).
const (
	defaultListen      = ":8443"
	defaultAdminListen = "127.0.0.1:9090"
	// The pod's termination grace must cover drain delay plus shutdown grace
	// (deploy/kubernetes checks it against these values: 35s).
	defaultShutdownGrace = 30 * time.Second
	defaultDrainDelay    = 5 * time.Second
	defaultLogLevel      = slog.LevelInfo
)

// byteSize is a flag value in bytes that also accepts KiB/MiB/GiB suffixes.
type byteSize int

// String prints whole KiB, MiB and GiB with their suffix, as Set accepts them, so that
// --help shows "16MiB" rather than 16777216.
func (b *byteSize) String() string {
	n := int(*b)
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.Itoa(n/u.mult) + u.suffix
		}
	}
	return strconv.Itoa(n)
}

func (b *byteSize) Set(s string) error {
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		return errors.New("must be a positive size in bytes, optionally with KiB, MiB or GiB")
	}
	if n > (1<<31-1)/mult {
		return errors.New("must be below 2 GiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// hostList collects --media-allow-host values.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.ContainsAny(part, "/@ ") {
			return fmt.Errorf("%q is not a host or host:port", part)
		}
		*h = append(*h, part)
	}
	return nil
}

// timeoutMap parses pipeline=duration pairs.
type timeoutMap map[string]time.Duration

func (t *timeoutMap) String() string {
	parts := make([]string, 0, len(*t))
	for k, v := range *t {
		parts = append(parts, k+"="+v.String())
	}
	return strings.Join(parts, ",")
}

func (t *timeoutMap) Set(s string) error {
	if *t == nil {
		*t = map[string]time.Duration{}
	}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%q: want pipeline=duration", part)
		}
		if _, known := livepeer.DefaultTimeouts[name]; !known {
			return fmt.Errorf("unknown pipeline %q (known: %s)", name, strings.Join(livepeer.Pipelines, ", "))
		}
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return fmt.Errorf("%q: the duration must be positive, like 90s or 10m", part)
		}
		(*t)[name] = d
	}
	return nil
}

type levelFlag struct{ l *slog.Level }

func (f levelFlag) String() string {
	if f.l == nil {
		return strings.ToLower(defaultLogLevel.String())
	}
	return strings.ToLower(f.l.String())
}

func (f levelFlag) Set(s string) error {
	if err := f.l.UnmarshalText([]byte(s)); err != nil {
		return errors.New(`must be one of "debug", "info", "warn", "error"`)
	}
	return nil
}

// serveFlags defines serve's flags on fs, writing into c. Every default is a named
// value (a Default* of the package that owns the setting, or serve's own default*), and
// --help prints it from the flag's default (serveUsage), so help, flag and library
// cannot disagree.
func serveFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.Listen, "listen", defaultListen, "address of the mTLS gRPC listener")
	fs.StringVar(&c.TLS.CertFile, "tls-cert", "", "PEM file with the server certificate chain (required)")
	fs.StringVar(&c.TLS.KeyFile, "tls-key", "", "PEM file with the server certificate's private key (required)")
	fs.StringVar(&c.TLS.ClientCAFile, "client-ca", "", "PEM bundle of the CAs that issue callers' client certificates (required)")
	fs.StringVar(&c.GatewayURL, "gateway-url", livepeer.DefaultGatewayURL, "base URL of the Livepeer gateway; also LIVEPEER_GATEWAY_URL")
	fs.BoolVar(&c.AllowPlaintextGateway, "allow-plaintext-gateway", false, "allow an http:// --gateway-url to a non-loopback host, which carries the backend API key in cleartext: only for a gateway reached through a mesh sidecar or another encrypted tunnel")
	fs.StringVar(&c.GatewayCA, "gateway-ca", "", "PEM bundle trusted for the gateway's TLS certificate instead of the system roots (optional)")
	c.MaxMessageSize = server.DefaultMaxMessageSize
	fs.Var((*byteSize)(&c.MaxMessageSize), "max-message-size", "largest request message a caller may send, after decompression, in bytes or with KiB/MiB/GiB (Studio takes files up to 10 MiB)")
	c.MaxSendSize = server.DefaultMaxSendMessageSize
	fs.Var((*byteSize)(&c.MaxSendSize), "max-send-message-size", "largest response message, in bytes or with KiB/MiB/GiB; inline media counts against it")
	fs.IntVar(&c.MaxCertless, "max-conns-without-cert", server.DefaultMaxConnsWithoutCert, "cap on connections whose peer presented no client certificate (they may only check health); beyond it new ones are closed after the handshake")
	fs.IntVar(&c.MaxWatchers, "max-watchers-without-cert", server.DefaultMaxWatchersWithoutIdentity, "cap on health Watch streams from peers without a client certificate (or, in mesh mode, without an identity header)")
	fs.DurationVar(&c.MaxConnIdle, "max-connection-idle", server.DefaultMaxConnectionIdle, "close connections that have had no call for this long")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", defaultShutdownGrace, "on SIGTERM, how long in-flight calls may run before they are cut")
	fs.DurationVar(&c.DrainDelay, "drain-delay", defaultDrainDelay, "on SIGTERM, how long health reports NOT_SERVING before the listener stops taking calls")
	c.LogLevel = defaultLogLevel
	fs.Var(levelFlag{&c.LogLevel}, "log-level", `log level: "debug", "info", "warn" or "error"`)
	fs.StringVar(&c.ErrorDomain, "error-domain", server.DefaultErrorDomain, "google.rpc.ErrorInfo domain on every error status")
	fs.IntVar(&c.MaxAttempts, "upstream-max-attempts", livepeer.DefaultMaxAttempts, "attempts per gateway call for retryable failures (connect errors, 502/503/504, 429 with a Retry-After that fits the deadline); 1 disables retries")
	fs.DurationVar(&c.ConnectTimeout, "upstream-connect-timeout", livepeer.DefaultConnectTimeout, "limit on connecting to the gateway, TLS handshake included")
	fs.Var((*hostList)(&c.MediaAllow), "media-allow-host", "host (or host:port) besides the gateway's that inline_media may fetch results from; repeat or separate with commas")
	c.MaxMediaBytes = livepeer.DefaultMaxMediaBytes
	fs.Var((*byteSize)(&c.MaxMediaBytes), "max-media-bytes", "largest result file fetched for inline_media; must fit in --max-send-message-size")
	fs.Var((*timeoutMap)(&c.Timeouts), "pipeline-timeout", "per-pipeline limit when the caller sets no deadline, e.g. text-to-image=90s,image-to-video=15m (defaults: "+defaultTimeouts()+")")
	fs.StringVar(&c.AdminListen, "admin-listen", defaultAdminListen, "plain-HTTP admin listener for /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&c.PolicyFile, "policy", "", "authorization policy file (YAML, see README); without one every caller with a certificate from the client CA may call every RPC")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", server.DefaultMaxInFlight, "cap on concurrent upstream calls across all callers; beyond it calls fail fast with UNAVAILABLE/OVERLOADED (0: no cap)")
	fs.StringVar(&c.Mesh, "mesh", "", `"istio" or "linkerd": a sidecar terminates mTLS, the listener is plaintext and the caller's identity comes from the sidecar's header`)
	fs.BoolVar(&c.AllowNonLoopbackMesh, "mesh-allow-non-loopback", false, "in mesh mode, allow a plaintext listener on a non-loopback address (only if the pod network cannot reach it except through the sidecar)")
	fs.DurationVar(&c.MaxConnAge, "max-connection-age", server.DefaultMaxConnectionAge, "clients reconnect after this long, picking up rotated certificates and new replicas")
	fs.DurationVar(&c.MaxConnGrace, "max-connection-age-grace", server.DefaultMaxConnectionAgeGrace, "how long calls on an aged connection may still run; keep it above the longest call (--pipeline-timeout) or long generations are cut")
	fs.DurationVar(&c.StreamIdle, "stream-idle-timeout", livepeer.DefaultStreamIdleTimeout, "longest gap between two LlmStream events before the call fails with UPSTREAM_TIMEOUT")
}

// defaultTimeouts lists livepeer.DefaultTimeouts for --help, in pipeline order.
func defaultTimeouts() string {
	parts := make([]string, 0, len(livepeer.Pipelines))
	for _, p := range livepeer.Pipelines {
		if d, ok := livepeer.DefaultTimeouts[p]; ok {
			parts = append(parts, p+"="+d.String())
		}
	}
	return strings.Join(parts, ",")
}

// applyEnv sets every flag not given on the command line from its GENSERVICE_ variable
// (flags win over the environment). Errors name the variable.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := envName(f.Name)
		v := getenv(name)
		if v == "" && f.Name == "gateway-url" {
			name, v = "LIVEPEER_GATEWAY_URL", getenv("LIVEPEER_GATEWAY_URL")
		}
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", name, v, unwrapFlagErr(err)))
		}
	})
	return errors.Join(errs...)
}

func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// validate checks the flags and loads the key. Every message names the flag or
// variable at fault and never shows the key.
func validate(c *serveConfig, getenv func(string) string, readFile func(string) ([]byte, error)) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Listen == "" {
		bad("--listen (GENSERVICE_LISTEN) must not be empty")
	}
	switch c.Mesh {
	case "":
		for _, f := range []struct{ flag, val string }{{"tls-cert", c.TLS.CertFile}, {"tls-key", c.TLS.KeyFile}, {"client-ca", c.TLS.ClientCAFile}} {
			if f.val == "" {
				bad("--%s (%s) is required", f.flag, envName(f.flag))
			}
		}
	case server.MeshIstio, server.MeshLinkerd:
		if !c.AllowNonLoopbackMesh && !loopbackListen(c.Listen) {
			bad("--mesh=%s serves plaintext and trusts the sidecar's identity header, so --listen (GENSERVICE_LISTEN) must be a loopback address such as 127.0.0.1:8443 (the sidecar forwards to it); got %q. Pass --mesh-allow-non-loopback only if nothing but the sidecar can reach the port", c.Mesh, c.Listen)
		}
	default:
		bad("--mesh (GENSERVICE_MESH) must be \"istio\" or \"linkerd\", got %q", c.Mesh)
	}
	if c.MaxMediaBytes > c.MaxSendSize {
		bad("--max-media-bytes (GENSERVICE_MAX_MEDIA_BYTES) must not exceed --max-send-message-size (%d bytes): inline media travels in the response message", c.MaxSendSize)
	}
	if c.MaxCertless < 1 {
		bad("--max-conns-without-cert (GENSERVICE_MAX_CONNS_WITHOUT_CERT) must be at least 1 (health checks need a connection)")
	}
	if c.MaxWatchers < 1 {
		bad("--max-watchers-without-cert (GENSERVICE_MAX_WATCHERS_WITHOUT_CERT) must be at least 1")
	}
	if c.MaxConnIdle <= 0 {
		bad("--max-connection-idle (GENSERVICE_MAX_CONNECTION_IDLE) must be positive")
	}
	if c.MaxInFlight < 0 {
		bad("--max-in-flight (GENSERVICE_MAX_IN_FLIGHT) must not be negative")
	}
	if c.MaxConnAge <= 0 {
		bad("--max-connection-age (GENSERVICE_MAX_CONNECTION_AGE) must be positive")
	}
	if c.MaxConnGrace <= 0 {
		bad("--max-connection-age-grace (GENSERVICE_MAX_CONNECTION_AGE_GRACE) must be positive")
	}
	if u, err := livepeer.ParseGatewayURL(c.GatewayURL); err != nil {
		bad("--gateway-url (GENSERVICE_GATEWAY_URL or LIVEPEER_GATEWAY_URL): %v", err)
	} else if u.Scheme == "http" && !c.AllowPlaintextGateway && !loopbackHost(u.Hostname()) {
		// Every request carries "Authorization: Bearer <key>": over plain http to
		// another host, anyone on the path reads the key (DESIGN §6).
		bad("--gateway-url (GENSERVICE_GATEWAY_URL or LIVEPEER_GATEWAY_URL) is plain http:// to %s, which is not a loopback address: the backend API key would cross the network in cleartext. Use https://, or pass --allow-plaintext-gateway (GENSERVICE_ALLOW_PLAINTEXT_GATEWAY=true) if the gateway is reached through a mesh sidecar or another encrypted tunnel", u.Host)
	}
	if c.ShutdownGrace < 0 {
		bad("--shutdown-grace (GENSERVICE_SHUTDOWN_GRACE) must not be negative")
	}
	if c.DrainDelay < 0 {
		bad("--drain-delay (GENSERVICE_DRAIN_DELAY) must not be negative")
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 10 {
		bad("--upstream-max-attempts (GENSERVICE_UPSTREAM_MAX_ATTEMPTS) must be between 1 and 10")
	}
	if c.ConnectTimeout <= 0 {
		bad("--upstream-connect-timeout (GENSERVICE_UPSTREAM_CONNECT_TIMEOUT) must be positive")
	}
	if c.StreamIdle <= 0 {
		bad("--stream-idle-timeout (GENSERVICE_STREAM_IDLE_TIMEOUT) must be positive")
	}
	if strings.TrimSpace(c.ErrorDomain) == "" {
		bad("--error-domain (GENSERVICE_ERROR_DOMAIN) must not be empty")
	}
	if err := loadKey(c, getenv, readFile); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// loopbackListen reports whether a listen address binds only loopback.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a URL's host (without port or brackets) is loopback:
// 127.0.0.0/8, ::1, or the name localhost. Other names, even ones that end in
// localhost or that resolve to a loopback address today, are not: DNS can change.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readKeyFile is how `genservice serve` reads LIVEPEER_API_KEY_FILE: regular files only
// (a FIFO would hang start-up), at most livepeer.MaxKeyFileSize bytes.
var readKeyFile = livepeer.ReadKeyFile

// loadKey reads the backend key from LIVEPEER_API_KEY_FILE (preferred: rotatable) or
// LIVEPEER_API_KEY. There is deliberately no flag: flags show in ps.
func loadKey(c *serveConfig, getenv func(string) string, readFile func(string) ([]byte, error)) error {
	file, inline := getenv("LIVEPEER_API_KEY_FILE"), getenv("LIVEPEER_API_KEY")
	switch {
	case file != "" && inline != "":
		return errors.New("both LIVEPEER_API_KEY and LIVEPEER_API_KEY_FILE are set; set only one")
	case file != "":
		data, err := readFile(file)
		if err != nil {
			return fmt.Errorf("LIVEPEER_API_KEY_FILE: cannot read the key file: %w", err)
		}
		k, err := livepeer.ParseKeyFile(data)
		if err != nil {
			return fmt.Errorf("LIVEPEER_API_KEY_FILE (%s): %v", file, err)
		}
		c.Key, c.KeyOrigin, c.KeyFile = k, "file "+file, file
	case inline != "":
		k, err := livepeer.ParseKey(inline)
		if err != nil {
			return fmt.Errorf("LIVEPEER_API_KEY: %v", err)
		}
		c.Key, c.KeyOrigin = k, "LIVEPEER_API_KEY"
	default:
		return errors.New("no backend API key: set LIVEPEER_API_KEY_FILE to a file holding the Livepeer API key (or LIVEPEER_API_KEY to the key)")
	}
	return nil
}

// parseServe parses serve's arguments and environment into a validated config.
func parseServe(args []string, getenv func(string) string, readFile func(string) ([]byte, error)) (*serveConfig, error) {
	fs := flag.NewFlagSet("genservice serve", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { serveUsage(fs) }
	c := &serveConfig{}
	serveFlags(fs, c)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (serve takes only flags)", fs.Arg(0))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}
	if err := validate(c, getenv, readFile); err != nil {
		return nil, err
	}
	return c, nil
}

func serveUsage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintf(out, `Usage: genservice serve [flags]

Serves livepeer.generation.v1.GenerationService over mTLS and calls the Livepeer gateway
with the backend API key.

The key is read from LIVEPEER_API_KEY_FILE (a file holding only the key; preferred) or
LIVEPEER_API_KEY. It is never a flag. Every flag can also be set through the variable
shown after it; a flag on the command line wins.

Flags:
`)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "0" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(out, "  --%s  [%s]\n      %s%s\n", f.Name, envName(f.Name), f.Usage, def)
	})
}
