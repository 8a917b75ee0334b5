package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/internal/logbuf"
	"genservice/livepeer/livepeertest"
)

// binary is the genservice executable built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "genservice-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "genservice")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := exec.Command(gobin, "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building genservice:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runBin executes the binary with exactly the given environment (nothing inherited but
// PATH and HOME) and waits up to timeout.
func runBin(t *testing.T, timeout time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("genservice %q did not exit within %v\nstderr:\n%s", args, timeout, stderr.String())
	}
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("running genservice: %v", err)
	}
	return result{code, stdout.String(), stderr.String()}
}

func (r result) want(t *testing.T, code int, subs ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range subs {
		if !strings.Contains(r.stderr, s) && !strings.Contains(r.stdout, s) {
			t.Errorf("output does not mention %q\nstdout:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
		}
	}
}

// pki is a throwaway CA with a server and a client certificate on disk.
type pki struct {
	dir                           string
	ca                            *certgen.CA
	caCert, serverCert, serverKey string
	otherKey                      string // a key that does not pair with serverCert
	clientCert, clientKey         string
	clientTLS                     tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := certgen.NewCA("genservice test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(certgen.LeafOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(certgen.LeafOptions{CommonName: "other", Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Issue(certgen.LeafOptions{CommonName: "caller", URIs: []string{"spiffe://test.genservice/ns/t/sa/caller"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: dir, ca: ca, clientTLS: cli.TLS}
	if p.caCert, err = ca.WriteFile(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	if p.serverCert, p.serverKey, err = srv.WriteFiles(dir, "server"); err != nil {
		t.Fatal(err)
	}
	if _, p.otherKey, err = other.WriteFiles(dir, "other"); err != nil {
		t.Fatal(err)
	}
	if p.clientCert, p.clientKey, err = cli.WriteFiles(dir, "client"); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pki) args(extra ...string) []string {
	return append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--client-ca", p.caCert}, extra...)
}

func writeKeyFile(t *testing.T, contents string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLIUsage(t *testing.T) {
	runBin(t, 10*time.Second, nil).want(t, 2, "Usage: genservice", "serve", "demo")
	runBin(t, 10*time.Second, nil, "bogus").want(t, 2, `unknown command "bogus"`)
	runBin(t, 10*time.Second, nil, "help").want(t, 0, "Usage: genservice")
	r := runBin(t, 10*time.Second, nil, "version")
	r.want(t, 0)
	if strings.TrimSpace(r.stdout) == "" {
		t.Error("version printed nothing")
	}
	// serve --help documents every flag with its variable, and the key variables.
	r = runBin(t, 10*time.Second, nil, "serve", "--help")
	r.want(t, 0, "LIVEPEER_API_KEY_FILE", "LIVEPEER_API_KEY", "LIVEPEER_GATEWAY_URL")
	for _, f := range []string{"listen", "tls-cert", "tls-key", "client-ca", "gateway-url", "gateway-ca", "max-message-size", "shutdown-grace", "drain-delay", "log-level", "error-domain", "upstream-max-attempts", "upstream-connect-timeout"} {
		r.want(t, 0, "--"+f, envName(f))
	}
}

func TestServeMissingConfiguration(t *testing.T) {
	r := runBin(t, 10*time.Second, nil, "serve")
	r.want(t, 1, "--tls-cert", "GENSERVICE_TLS_CERT", "--tls-key", "--client-ca", "LIVEPEER_API_KEY_FILE", "LIVEPEER_API_KEY")
	if r.stdout != "" {
		t.Errorf("errors went to stdout: %s", r.stdout)
	}
}

func TestServeRefusesBearerKeyFile(t *testing.T) {
	p := newPKI(t)
	keyFile := writeKeyFile(t, "Bearer abc\n")
	r := runBin(t, 10*time.Second, []string{"LIVEPEER_API_KEY_FILE=" + keyFile}, p.args()...)
	r.want(t, 1, "LIVEPEER_API_KEY_FILE", "Bearer")
	if strings.Contains(r.stderr, "abc") || strings.Contains(r.stdout, "abc") {
		t.Errorf("output shows the key:\n%s%s", r.stdout, r.stderr)
	}
}

// TestServeRefusesFIFOKeyFile: a FIFO as LIVEPEER_API_KEY_FILE made start-up block in
// open(2) until a writer came, deaf to SIGTERM. Now serve exits at once, non-zero,
// naming the variable and what is wrong.
func TestServeRefusesFIFOKeyFile(t *testing.T) {
	p := newPKI(t)
	fifo := filepath.Join(t.TempDir(), "api-key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	start := time.Now()
	r := runBin(t, 5*time.Second, []string{"LIVEPEER_API_KEY_FILE=" + fifo}, p.args()...)
	r.want(t, 1, "LIVEPEER_API_KEY_FILE", "named pipe", "not a regular file")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("serve took %v to refuse the FIFO", took)
	}
}

// TestServeRefusesNonASCIIKeys: a key with a byte outside printable ASCII, in the file or
// the variable, is refused without being shown.
func TestServeRefusesNonASCIIKeys(t *testing.T) {
	p := newPKI(t)
	keyFile := writeKeyFile(t, "canary\u2013key-123456789\n")
	r := runBin(t, 10*time.Second, []string{"LIVEPEER_API_KEY_FILE=" + keyFile}, p.args()...)
	r.want(t, 1, "LIVEPEER_API_KEY_FILE", "printable ASCII")
	r2 := runBin(t, 10*time.Second, []string{"LIVEPEER_API_KEY=" + canaryKey + "\u00e9"}, p.args()...)
	r2.want(t, 1, "LIVEPEER_API_KEY", "printable ASCII")
	for _, out := range []string{r.stdout, r.stderr, r2.stdout, r2.stderr} {
		if strings.Contains(out, "123456789") {
			t.Errorf("output shows the key:\n%s", out)
		}
	}
}

func TestServeRefusesBadInlineKey(t *testing.T) {
	p := newPKI(t)
	for _, key := range []string{" " + canaryKey, canaryKey + "\n", "Bearer " + canaryKey, "your-api-key-here"} {
		r := runBin(t, 10*time.Second, []string{"LIVEPEER_API_KEY=" + key}, p.args()...)
		r.want(t, 1, "LIVEPEER_API_KEY")
		if strings.Contains(r.stderr, canaryKey) {
			t.Errorf("stderr shows the key:\n%s", r.stderr)
		}
	}
}

func TestServeTLSErrors(t *testing.T) {
	p := newPKI(t)
	key := []string{"LIVEPEER_API_KEY=" + canaryKey}
	missing := filepath.Join(p.dir, "missing.crt")
	notPEM := filepath.Join(p.dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want, wantNot string
	}{
		{"key does not match cert", p.serverCert, p.otherKey, p.caCert, "--tls-key", "--tls-cert ("},
		{"unreadable cert", missing, p.serverKey, p.caCert, "--tls-cert", "--tls-key ("},
		{"cert not PEM", notPEM, p.serverKey, p.caCert, "--tls-cert", "--tls-key ("},
		{"unreadable key", p.serverCert, missing, p.caCert, "--tls-key", "--tls-cert ("},
		{"unreadable client CA", p.serverCert, p.serverKey, missing, "--client-ca", "--tls-key ("},
		{"client CA not PEM", p.serverCert, p.serverKey, notPEM, "--client-ca", "--tls-cert ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
				"--tls-cert", tc.cert, "--tls-key", tc.key, "--client-ca", tc.ca}
			r := runBin(t, 10*time.Second, key, args...)
			r.want(t, 1, tc.want)
			if strings.Contains(r.stderr, tc.wantNot) {
				t.Errorf("stderr blames the wrong flag (%q):\n%s", tc.wantNot, r.stderr)
			}
			if strings.Contains(r.stderr, "genservice serving") {
				t.Errorf("started despite the TLS error:\n%s", r.stderr)
			}
		})
	}
}

// The canary: whatever goes wrong at start-up, the key is not printed.
func TestServeDoesNotPrintKey(t *testing.T) {
	p := newPKI(t)
	bad := filepath.Join(p.dir, "missing.crt")
	for _, extra := range [][]string{
		{"--tls-cert", bad},
		{"--tls-key", p.otherKey, "--log-level", "debug"},
		{"--gateway-url", "ftp://x"},
		{"--listen", "256.0.0.1:1"},
		{"--max-message-size", "abc"},
	} {
		r := runBin(t, 10*time.Second, []string{"LIVEPEER_API_KEY=" + canaryKey}, p.args(extra...)...)
		if r.code == 0 {
			t.Errorf("%q: exit code 0", extra)
		}
		if strings.Contains(r.stderr+r.stdout, canaryKey) || strings.Contains(r.stderr+r.stdout, "123456789") {
			t.Errorf("%q: output shows the key:\n%s%s", extra, r.stdout, r.stderr)
		}
	}
}

// logLine is one JSON log line of the service.
type logLine map[string]any

func (l logLine) msg() string { s, _ := l["msg"].(string); return s }

// TestServeStartsAndStops runs the real binary against the gateway simulator: it
// serves a call over mTLS with the key from a file, and exits 0 on SIGTERM.
// serveCmd is `genservice serve` with p's certificates, the canary key in a key file and
// a gateway simulator that accepts it, plus extra flags.
func serveCmd(t *testing.T, p *pki, extra ...string) (*exec.Cmd, *livepeertest.Server) {
	t.Helper()
	sim, err := livepeertest.New(livepeertest.Config{APIKey: canaryKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	keyFile := writeKeyFile(t, canaryKey+"\n")
	cmd := exec.Command(binary, p.args(append([]string{"--gateway-url", sim.URL()}, extra...)...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LIVEPEER_API_KEY_FILE=" + keyFile}
	return cmd, sim
}

func TestServeStartsAndStops(t *testing.T) {
	p := newPKI(t)
	cmd, sim := serveCmd(t, p, "--drain-delay", "0", "--shutdown-grace", "5s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan logLine, 100)
	var raw bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		sc := bufio.NewScanner(io.TeeReader(stderr, &raw))
		for sc.Scan() {
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				l = logLine{"msg": "NOT JSON: " + sc.Text()}
			}
			lines <- l
		}
	}()
	go func() {
		<-readDone
		exited <- cmd.Wait()
	}()
	defer func() { _ = cmd.Process.Kill() }() // no-op once it has exited

	var serving logLine
	timeout := time.After(20 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("genservice exited before serving:\n%s", raw.String())
			}
			if strings.HasPrefix(l.msg(), "NOT JSON") {
				t.Errorf("log line is not JSON: %s", l.msg())
			}
			if l.msg() == "genservice serving" {
				serving = l
				break wait
			}
		case <-timeout:
			t.Fatalf("no \"genservice serving\" log line within 20s:\n%s", raw.String())
		}
	}
	addr, _ := serving["listen"].(string)
	if addr == "" {
		t.Fatalf("serving line has no listen address: %v", serving)
	}
	if fp, _ := serving["keyFingerprint"].(string); fp != mustKey(canaryKey).Fingerprint() {
		t.Errorf("keyFingerprint = %q, want %q", fp, mustKey(canaryKey).Fingerprint())
	}

	// One real call through the binary.
	pool := p.ca.Pool()
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{p.clientTLS}, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	res, err := generationv1.NewGenerationServiceClient(cc).TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"})
	cancel()
	cc.Close()
	if err != nil {
		t.Errorf("TextToImage through the binary: %v", err)
	} else if len(res.GetImages()) == 0 {
		t.Errorf("TextToImage returned no images")
	}
	if reqs := sim.Requests(); len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer "+canaryKey {
		t.Errorf("simulator saw %d requests", len(reqs))
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var stopped bool
	deadline := time.After(10 * time.Second)
drain:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break drain
			}
			if l.msg() == "stopped" {
				stopped = true
			}
		case <-deadline:
			t.Fatalf("genservice did not close its stderr within 10s of SIGTERM:\n%s", raw.String())
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, raw.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("genservice did not exit within 10s of SIGTERM:\n%s", raw.String())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("shutdown took %v with --drain-delay 0", el)
	}
	if !stopped {
		t.Errorf("no \"stopped\" log line:\n%s", raw.String())
	}
	if strings.Contains(raw.String(), canaryKey) || strings.Contains(stdout.String(), canaryKey) {
		t.Errorf("the logs show the key:\n%s", raw.String())
	}
}

func TestDemoOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs two servers and a simulator")
	}
	r := runBin(t, 90*time.Second, nil, "demo", "--once",
		"--listen", "127.0.0.1:0", "--listen-revoked", "127.0.0.1:0",
		"--admin-listen", "127.0.0.1:0", "--admin-listen-revoked", "127.0.0.1:0")
	r.want(t, 0, "OK  image", "reason=UPSTREAM_API_KEY_REJECTED", "CLIENT_CERTIFICATE_REQUIRED", "grpcurl")
}

// A second SIGTERM during the shutdown grace exits at once instead of waiting it out.
func TestServeSecondSignalExitsAtOnce(t *testing.T) {
	// A long drain delay: the first signal alone keeps the process for a minute.
	cmd, _ := serveCmd(t, newPKI(t), "--drain-delay", "60s", "--shutdown-grace", "60s")
	var stderr logbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stderr.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q within 20s:\n%s", what, stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("genservice serving")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitFor("shutting down")
	select {
	case <-exited:
		t.Fatalf("exited on the first signal, before the drain delay:\n%s", stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) || exitErr.ExitCode() != 130 {
			t.Errorf("exit: %v, want status 130", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("exited %v after the second signal", d)
		}
		if !strings.Contains(stderr.String(), "second signal") {
			t.Errorf("stderr does not say why it exited:\n%s", stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after a second SIGTERM:\n%s", stderr.String())
	}
}

// `genservice simulate` runs the gateway simulator alone with a key of the caller's
// choosing: the key it was given works, another is refused with 401, and SIGTERM stops it.
func TestSimulate(t *testing.T) {
	runBin(t, 10*time.Second, nil, "simulate").want(t, 1, "LIVEPEER_API_KEY")

	cmd := exec.Command(binary, "simulate", "--listen", "127.0.0.1:0")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LIVEPEER_API_KEY=dev-key-4711"}
	var out logbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	var url string
	deadline := time.Now().Add(20 * time.Second)
	for url == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line:\n%s", out.String())
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, "gateway simulator listening: "); ok {
				url = strings.Fields(rest)[0]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(out.String(), "dev-key-4711") {
		t.Errorf("the key was printed:\n%s", out.String())
	}
	post := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, url+"/text-to-image", strings.NewReader(`{"model_id":"m","prompt":"a harbour"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("dev-key-4711"); code != http.StatusOK {
		t.Errorf("with the chosen key: %d", code)
	}
	if code := post("another-key"); code != http.StatusUnauthorized {
		t.Errorf("with another key: %d", code)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("simulate did not stop on SIGTERM")
	}
}

// A taken admin port moves only the admin listener: the gRPC port the operator asked for
// stays (the demo used to move both).
func TestDemoTakenPortMovesOnlyThatListener(t *testing.T) {
	if testing.Short() {
		t.Skip("demo runs two servers and a simulator")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := free.Addr().String()
	free.Close()
	r := runBin(t, 90*time.Second, nil, "demo", "--once",
		"--listen", grpcAddr, "--listen-revoked", "127.0.0.1:0",
		"--admin-listen", busy.Addr().String(), "--admin-listen-revoked", "127.0.0.1:0")
	r.want(t, 0, "("+busy.Addr().String()+" is taken; using a free port instead)", "genservice          "+grpcAddr)
}
