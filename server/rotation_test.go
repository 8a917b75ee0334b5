package server_test

// Rotation of everything a running genservice holds, the Kubernetes way, under steady
// traffic: server certificate, client CA bundle and backend API key, each a Secret
// volume whose ..data symlink is swapped. Also the rot* helpers shared by
// authz_e2e_test.go and mesh_e2e_test.go (prefixed so they cannot clash with other
// helpers of package server_test).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"genservice/internal/logbuf"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/internal/secretdir"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

// ---- shared helpers ----

// rotLogBuf is a goroutine-safe JSON log sink.
type rotLogBuf struct{ logbuf.Buffer }

func (l *rotLogBuf) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines decodes the log lines whose msg is msg ("" = all).
func (l *rotLogBuf) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if msg == "" || m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// rotCallLine waits for the "call" log line of requestID (the line is written after
// the response is sent).
func (l *rotLogBuf) rotCallLine(t testing.TB, requestID string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, m := range l.lines(t, "call") {
			if m["requestId"] == requestID {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call log line for request %s; logs:\n%s", requestID, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rotCA(t testing.TB, name string) *certgen.CA {
	t.Helper()
	ca, err := certgen.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func rotServerLeaf(t testing.TB, ca *certgen.CA) *certgen.Leaf {
	t.Helper()
	l, err := ca.Issue(certgen.LeafOptions{CommonName: "genservice", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func rotClientLeaf(t testing.TB, ca *certgen.CA, principal string) *certgen.Leaf {
	t.Helper()
	l, err := ca.Issue(certgen.LeafOptions{CommonName: "caller", URIs: []string{principal}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rotEnv is a running genservice (real TLS on loopback unless in mesh mode) with its
// gateway simulator.
type rotEnv struct {
	sim      *livepeertest.Server
	srv      *server.Server
	addr     string
	logs     *rotLogBuf
	serverCA *certgen.CA
	clientCA *certgen.CA
}

type rotOptions struct {
	key  string             // the simulator's and the static key's value
	keys livepeer.KeySource // overrides the static key
	logs *rotLogBuf         // default: a new buffer
	edit func(*server.Config)
}

const rotKey = "sk-live-rotation-0f1e2d3c"

func rotStart(t testing.TB, o rotOptions) *rotEnv {
	t.Helper()
	if o.key == "" {
		o.key = rotKey
	}
	if o.logs == nil {
		o.logs = &rotLogBuf{}
	}
	env := &rotEnv{logs: o.logs, serverCA: rotCA(t, "rot server CA"), clientCA: rotCA(t, "rot client CA")}
	var err error
	if env.sim, err = livepeertest.New(livepeertest.Config{APIKey: o.key}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.sim.Close)
	keys := o.keys
	if keys == nil {
		k, err := livepeer.ParseKey(o.key)
		if err != nil {
			t.Fatal(err)
		}
		keys = livepeer.StaticKey(k)
	}
	up, err := livepeer.New(livepeer.Config{GatewayURL: env.sim.URL(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := rotServerLeaf(t, env.serverCA).WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := env.clientCA.WriteFile(dir, "client-ca")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		TLS:      server.TLSFiles{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile},
		Upstream: up,
		Logger:   env.logs.logger(),
	}
	if o.edit != nil {
		o.edit(&cfg)
	}
	if env.srv, err = server.New(cfg); err != nil {
		t.Fatalf("server.New: %v", err)
	}
	env.addr = rotServe(t, env.srv)
	return env
}

// rotServe serves srv on a loopback port until the test ends.
func rotServe(t testing.TB, srv *server.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx, 0)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// client issues a client certificate for principal from the client CA.
func (env *rotEnv) client(t testing.TB, principal string) *tls.Certificate {
	t.Helper()
	return &rotClientLeaf(t, env.clientCA, principal).TLS
}

// dial opens a TLS connection (closed at cleanup) presenting cert (nil: none).
func (env *rotEnv) dial(t testing.TB, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conf := &tls.Config{RootCAs: env.serverCA.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return rotDial(t, env.addr, credentials.NewTLS(conf))
}

func rotDial(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func rotT2I(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) error {
	_, err := generationv1.NewGenerationServiceClient(conn).TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"}, opts...)
	return err
}

func rotCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// rotStatus asserts code and ErrorInfo reason (domain genservice) and returns both.
func rotStatus(t testing.TB, err error, code codes.Code, reason string) (*status.Status, *errdetails.ErrorInfo) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok {
		t.Fatalf("want %v/%s, got %v", code, reason, err)
	}
	if st.Code() != code {
		t.Fatalf("code = %v, want %v (%q)", st.Code(), code, st.Message())
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	if info == nil {
		t.Fatalf("%v %q has no ErrorInfo", st.Code(), st.Message())
	}
	if info.GetReason() != reason || info.GetDomain() != server.DefaultErrorDomain {
		t.Fatalf("ErrorInfo = %s/%s, want %s/%s (%q)", info.GetDomain(), info.GetReason(), server.DefaultErrorDomain, reason, st.Message())
	}
	return st, info
}

func rotDetail[T any](st *status.Status) (T, bool) {
	for _, d := range st.Details() {
		if v, ok := d.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// rotWait polls cond until it holds or timeout passes.
func rotWait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ---- the rotation test ----

// rotCaller calls TextToImage at a steady rate on one ordinary grpc ClientConn (no
// WaitForReady, no retry policy) and counts every non-OK status as a failure.
type rotCaller struct {
	conn     *grpc.ClientConn
	interval time.Duration

	calls, failed atomic.Int64
	mu            sync.Mutex
	failures      []string
	lastSerial    *big.Int
	serials       map[string]int // server certificate serial (hex) -> calls
	stop, done    chan struct{}
}

func (c *rotCaller) run(start time.Time) {
	defer close(c.done)
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var p peer.Peer
		err := rotT2I(ctx, c.conn, grpc.Peer(&p))
		cancel()
		c.calls.Add(1)
		c.mu.Lock()
		if err != nil {
			c.failed.Add(1)
			st := status.Convert(err)
			c.failures = append(c.failures, fmt.Sprintf("t=%v %v: %s", time.Since(start).Round(time.Millisecond), st.Code(), st.Message()))
		} else if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			c.lastSerial = info.State.PeerCertificates[0].SerialNumber
			c.serials[c.lastSerial.Text(16)]++
		}
		c.mu.Unlock()
	}
}

// progress waits until n more calls have completed (whatever their outcome).
func (c *rotCaller) progress(t *testing.T, n int64) {
	t.Helper()
	target := c.calls.Load() + n
	rotWait(t, 10*time.Second, fmt.Sprintf("%d more calls", n), func() bool { return c.calls.Load() >= target })
}

func rotWaitReload(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("reload after %s failed: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no reload within 5s after %s", what)
	}
}

// rotServingSerial dials a fresh TLS connection and returns the server certificate's
// serial.
func rotServingSerial(t *testing.T, addr string, roots *x509.CertPool, cert tls.Certificate) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"},
		Certificates: []tls.Certificate{cert},
	})
	if err != nil {
		t.Fatalf("tls.Dial: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ~5s")
	}
	const (
		principal = "spiffe://genservice.test/ns/web/sa/frontend"
		k1        = "sk-live-rotation-K1-aaaa1111"
		k2        = "sk-live-rotation-K2-bbbb2222"
		runFor    = 5 * time.Second
	)
	root := t.TempDir()
	caS := rotCA(t, "server CA S")
	ca1, ca2 := rotCA(t, "client CA 1"), rotCA(t, "client CA 2")
	a1, a2 := rotServerLeaf(t, caS), rotServerLeaf(t, caS)
	c1, c2 := rotClientLeaf(t, ca1, principal), rotClientLeaf(t, ca2, principal)
	if a1.Cert.SerialNumber.Cmp(a2.Cert.SerialNumber) == 0 {
		t.Fatal("A1 and A2 have the same serial")
	}

	tlsSec := secretdir.New(t, filepath.Join(root, "tls"), map[string][]byte{"tls.crt": a1.CertPEM, "tls.key": a1.KeyPEM})
	caSec := secretdir.New(t, filepath.Join(root, "client-ca"), map[string][]byte{"ca.crt": ca1.CertPEM})
	keySec := secretdir.New(t, filepath.Join(root, "api-key"), map[string][]byte{"api-key": []byte(k1 + "\n")})

	sim, err := livepeertest.New(livepeertest.Config{APIKey: k1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	// Wired as cmd/genservice/serve.go does.
	ctx, cancel := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	t.Cleanup(func() { cancel(); watchers.Wait() })
	logs := &rotLogBuf{}
	log := logs.logger()
	keyReloads := make(chan error, 100)
	fk, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: keySec.Path("api-key"), Logger: log, OnReload: func(err error) { keyReloads <- err }})
	if err != nil {
		t.Fatal(err)
	}
	watchers.Go(func() { fk.Watch(ctx) })
	up, err := livepeer.New(livepeer.Config{GatewayURL: sim.URL(), Keys: fk, UserAgent: "genservice/rotation-test"})
	if err != nil {
		t.Fatal(err)
	}
	tlsReloads := make(chan error, 100)
	srv, err := server.New(server.Config{
		TLS:              server.TLSFiles{CertFile: tlsSec.Path("tls.crt"), KeyFile: tlsSec.Path("tls.key"), ClientCAFile: caSec.Path("ca.crt")},
		Upstream:         up,
		Logger:           log,
		MaxConnectionAge: time.Second,
		// The grace must outlast the longest call (here the 1 s per-call deadline): at
		// its end grpc closes the connection and cuts whatever is still running.
		MaxConnectionAgeGrace: 1500 * time.Millisecond,
		OnTLSReload:           func(err error) { tlsReloads <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	watchers.Go(func() { srv.WatchTLS(ctx) })
	addr := rotServe(t, srv)

	// The client trusts CA-S and presents whatever certificate it currently holds, as a
	// client reloading its own files would; a new certificate is used from the next
	// handshake on.
	var clientCert atomic.Pointer[tls.Certificate]
	clientCert.Store(&c1.TLS)
	var handshakes, handshakesC2 atomic.Int64
	conn := rotDial(t, addr, credentials.NewTLS(&tls.Config{
		RootCAs: caS.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			handshakes.Add(1)
			c := clientCert.Load()
			if c == &c2.TLS {
				handshakesC2.Add(1)
			}
			return c, nil
		},
	}))

	start := time.Now()
	caller := &rotCaller{conn: conn, interval: 20 * time.Millisecond, serials: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go caller.run(start)
	stopped := false
	stopCaller := func() {
		if !stopped {
			stopped = true
			close(caller.stop)
			<-caller.done
		}
	}
	t.Cleanup(stopCaller)
	at := func() time.Duration { return time.Since(start).Round(time.Millisecond) }

	caller.progress(t, 15)

	// (a) Server certificate A1 -> A2 (same CA-S, new serial).
	tlsSec.Update(t, map[string][]byte{"tls.crt": a2.CertPEM, "tls.key": a2.KeyPEM})
	rotWaitReload(t, tlsReloads, "the server certificate swap")
	if got := rotServingSerial(t, addr, caS.Pool(), c1.TLS); got.Cmp(a2.Cert.SerialNumber) != 0 {
		t.Fatalf("fresh connection got serial %x, want A2 %x", got, a2.Cert.SerialNumber)
	}
	t.Logf("%v: (a) serving A2", at())
	caller.progress(t, 25)

	// (b) Client CA: CA1 -> CA1+CA2 (overlap) -> client switches to a CA2 certificate
	// -> CA1 dropped.
	caSec.Update(t, map[string][]byte{"ca.crt": append(bytes.Clone(ca1.CertPEM), ca2.CertPEM...)})
	rotWaitReload(t, tlsReloads, "the CA1+CA2 bundle")
	t.Logf("%v: (b1) client CA bundle CA1+CA2", at())
	caller.progress(t, 15)
	clientCert.Store(&c2.TLS)
	// MaxConnectionAge moves the client to a new connection, which presents C2.
	rotWait(t, 5*time.Second, "a handshake with the CA2 certificate", func() bool { return handshakesC2.Load() > 0 })
	t.Logf("%v: (b2) client reconnected with its CA2 certificate", at())
	caller.progress(t, 15)
	caSec.Update(t, map[string][]byte{"ca.crt": ca2.CertPEM})
	rotWaitReload(t, tlsReloads, "dropping CA1")
	t.Logf("%v: (b3) client CA bundle CA2 only", at())
	caller.progress(t, 15)

	// (c) API key K1 -> K2: the Secret is updated and the gateway switches to K2 at the
	// same moment (the old key revoked). Calls that still carry K1 get a 401, re-read
	// the file and retry with K2.
	hitsBefore := sim.Hits(livepeer.PipelineTextToImage)
	callsBefore := caller.calls.Load()
	keySec.Update(t, map[string][]byte{"api-key": []byte(k2 + "\n")})
	sim.SetAPIKey(k2)
	fpK2 := func() string { k, _ := livepeer.ParseKey(k2); return k.Fingerprint() }()
	rotWait(t, 5*time.Second, "the FileKey to hold K2", func() bool { return fk.Key().Fingerprint() == fpK2 })
	t.Logf("%v: (c) API key K2 in use", at())

	// Keep the traffic going for the rest of the run (a duration, not a synchronisation).
	if rest := runFor - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	stopCaller()

	calls, failed := caller.calls.Load(), caller.failed.Load()
	retries := int64(sim.Hits(livepeer.PipelineTextToImage)-hitsBefore) - (calls - callsBefore)
	t.Logf("rotation: calls=%d failed=%d duration=%v handshakes=%d (with CA2 cert %d) 401-refresh-retries=%d server-cert-serials=%v",
		calls, failed, at(), handshakes.Load(), handshakesC2.Load(), retries, caller.serials)
	for _, f := range caller.failures {
		t.Errorf("failed call: %s", f)
	}
	if failed != 0 {
		t.Errorf("%d of %d calls failed during rotation, want 0", failed, calls)
	}
	if calls <= 100 {
		t.Errorf("only %d calls made, want > 100", calls)
	}

	// The long-lived client ended on A2 (MaxConnectionAge moved it).
	caller.mu.Lock()
	last := caller.lastSerial
	caller.mu.Unlock()
	if last == nil || last.Cmp(a2.Cert.SerialNumber) != 0 {
		t.Errorf("the client's last call saw server serial %x, want A2 %x", last, a2.Cert.SerialNumber)
	}
	if got := rotServingSerial(t, addr, caS.Pool(), c2.TLS); got.Cmp(a2.Cert.SerialNumber) != 0 {
		t.Errorf("fresh connection sees serial %x, want A2 %x", got, a2.Cert.SerialNumber)
	}

	// The gateway's last requests carry K2.
	reqs := sim.Requests()
	if len(reqs) < 10 {
		t.Fatalf("simulator recorded %d requests", len(reqs))
	}
	for _, r := range reqs[len(reqs)-10:] {
		if got := r.Header.Get("Authorization"); got != "Bearer "+k2 {
			t.Errorf("late request carries %q..., want Bearer K2", got[:min(len(got), 20)])
		}
	}

	// A client with a CA1 certificate is now rejected; one with CA2 is served. A Go
	// client with static Certificates sees that CA1 is not among the CAs the server
	// asks for and sends no certificate: the handshake completes and the call gets
	// UNAUTHENTICATED/CLIENT_CERTIFICATE_REQUIRED. A client that presents it anyway (as
	// OpenSSL-based clients do) fails the handshake: UNAVAILABLE, and a log line.
	rootsS := caS.Pool()
	static := rotDial(t, addr, credentials.NewTLS(&tls.Config{RootCAs: rootsS, ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c1.TLS}}))
	rotStatus(t, rotT2I(rotCtx(t, 3*time.Second), static), codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
	insistent := rotDial(t, addr, credentials.NewTLS(&tls.Config{RootCAs: rootsS, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c1.TLS, nil }}))
	if err := rotT2I(rotCtx(t, 3*time.Second), insistent); status.Code(err) != codes.Unavailable {
		t.Errorf("client presenting its CA1 certificate: %v, want UNAVAILABLE (handshake rejected)", err)
	}
	rotWait(t, 3*time.Second, "the handshake failure log line", func() bool {
		for _, l := range logs.lines(t, "TLS handshake failed") {
			if l["reason"] == "client certificate from an unknown CA" {
				return true
			}
		}
		return false
	})
	fresh := rotDial(t, addr, credentials.NewTLS(&tls.Config{RootCAs: rootsS, ServerName: "localhost", MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c2.TLS}}))
	if err := rotT2I(rotCtx(t, 3*time.Second), fresh); err != nil {
		t.Errorf("CA2 client after rotation: %v", err)
	}

	// Reload log lines: three TLS reloads (A2, CA1+CA2, CA2), one key reload, no
	// rejected files, and the key never printed.
	if lines := logs.lines(t, "TLS files reloaded"); len(lines) != 3 {
		t.Errorf("%d TLS reload log lines, want 3: %v", len(lines), lines)
	}
	for _, msg := range []string{"TLS files rejected; keeping the current certificate and client CA", "API key file is invalid; keeping the current key"} {
		if n := len(logs.lines(t, msg)); n != 0 {
			t.Errorf("%d %q log lines", n, msg)
		}
	}
	if all := logs.String(); strings.Contains(all, k1) || strings.Contains(all, k2) {
		t.Error("a key appears in the logs")
	}
	for len(keyReloads) > 0 {
		if err := <-keyReloads; err != nil {
			t.Errorf("key reload error: %v", err)
		}
	}
}

// TestRotationClientCAResumption: a CA1 client that resumes a TLS session cached
// before CA1 was dropped must not be let in by the resumption.
func TestRotationClientCAResumption(t *testing.T) {
	const principal = "spiffe://genservice.test/ns/web/sa/frontend"
	root := t.TempDir()
	caS, ca1, ca2 := rotCA(t, "server CA"), rotCA(t, "client CA 1"), rotCA(t, "client CA 2")
	a1 := rotServerLeaf(t, caS)
	c1 := rotClientLeaf(t, ca1, principal)
	tlsSec := secretdir.New(t, filepath.Join(root, "tls"), map[string][]byte{"tls.crt": a1.CertPEM, "tls.key": a1.KeyPEM})
	caSec := secretdir.New(t, filepath.Join(root, "client-ca"), map[string][]byte{"ca.crt": ca1.CertPEM})
	sim, err := livepeertest.New(livepeertest.Config{APIKey: rotKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	k, _ := livepeer.ParseKey(rotKey)
	up, err := livepeer.New(livepeer.Config{GatewayURL: sim.URL(), Keys: livepeer.StaticKey(k)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		TLS:      server.TLSFiles{CertFile: tlsSec.Path("tls.crt"), KeyFile: tlsSec.Path("tls.key"), ClientCAFile: caSec.Path("ca.crt")},
		Upstream: up, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := rotServe(t, srv)
	cache := tls.NewLRUClientSessionCache(8)
	// The client presents C1 whatever CAs the server asks for.
	conf := &tls.Config{RootCAs: caS.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13, ClientSessionCache: cache,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c1.TLS, nil }}

	conn1 := rotDial(t, addr, credentials.NewTLS(conf))
	if err := rotT2I(rotCtx(t, 3*time.Second), conn1); err != nil {
		t.Fatalf("CA1 client before the drop: %v", err)
	}
	_ = conn1.Close()
	// Make sure a ticket was cached (TLS 1.3 tickets arrive after the handshake).
	conn2 := rotDial(t, addr, credentials.NewTLS(conf))
	var p peer.Peer
	if err := rotT2I(rotCtx(t, 3*time.Second), conn2, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	if !p.AuthInfo.(credentials.TLSInfo).State.DidResume {
		t.Fatal("the second connection did not resume; the test needs a cached session")
	}
	_ = conn2.Close()

	caSec.Update(t, map[string][]byte{"ca.crt": ca2.CertPEM})
	if err := srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	conn3 := rotDial(t, addr, credentials.NewTLS(conf))
	err = rotT2I(rotCtx(t, 3*time.Second), conn3, grpc.Peer(&p))
	if err == nil {
		t.Fatalf("CA1 client served after CA1 was dropped (resumed: %v)", p.AuthInfo.(credentials.TLSInfo).State.DidResume)
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("CA1 client after the drop: %v, want UNAVAILABLE (full handshake, certificate rejected)", err)
	}
}

// TestRotationOnTLSReloadAfterSwap: OnTLSReload(nil) reports a completed reload, so the
// new certificate must be the one served when it runs (a metric of the serving
// certificate's expiry, a test dialing to check, must not see the old one).
func TestRotationOnTLSReloadAfterSwap(t *testing.T) {
	root := t.TempDir()
	caS, ca1 := rotCA(t, "server CA"), rotCA(t, "client CA")
	a1 := rotServerLeaf(t, caS)
	a2, err := caS.Issue(certgen.LeafOptions{CommonName: "genservice", DNSNames: []string{"localhost"}, Server: true, NotAfter: time.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tlsSec := secretdir.New(t, filepath.Join(root, "tls"), map[string][]byte{"tls.crt": a1.CertPEM, "tls.key": a1.KeyPEM})
	caSec := secretdir.New(t, filepath.Join(root, "client-ca"), map[string][]byte{"ca.crt": ca1.CertPEM})
	k, _ := livepeer.ParseKey(rotKey)
	up, err := livepeer.New(livepeer.Config{GatewayURL: "http://127.0.0.1:1", Keys: livepeer.StaticKey(k)})
	if err != nil {
		t.Fatal(err)
	}
	var srv *server.Server
	var seen time.Time
	srv, err = server.New(server.Config{
		TLS:      server.TLSFiles{CertFile: tlsSec.Path("tls.crt"), KeyFile: tlsSec.Path("tls.key"), ClientCAFile: caSec.Path("ca.crt")},
		Upstream: up, Logger: slog.New(slog.DiscardHandler),
		OnTLSReload: func(err error) {
			if err == nil {
				seen = srv.CertificateNotAfter()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tlsSec.Update(t, map[string][]byte{"tls.crt": a2.CertPEM, "tls.key": a2.KeyPEM})
	if err := srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if !srv.CertificateNotAfter().Equal(a2.Cert.NotAfter) {
		t.Fatalf("after ReloadTLS the serving certificate expires %v, want A2's %v", srv.CertificateNotAfter(), a2.Cert.NotAfter)
	}
	if !seen.Equal(a2.Cert.NotAfter) {
		t.Errorf("OnTLSReload(nil) saw the serving certificate expiring %v (A1's %v), want A2's %v: the callback ran before the swap", seen, a1.Cert.NotAfter, a2.Cert.NotAfter)
	}
}
