package server_test

// The end-to-end harness: a real genservice server on a loopback socket with real mTLS
// (certificates minted per test with certgen), talking to a real livepeertest gateway
// simulator over HTTP, and real gRPC clients. No bufconn (DESIGN §9).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"genservice/internal/logbuf"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

// testKey is the backend key of ordinary harnesses. The canary test uses its own.
const testKey = "sk-live-e2e-5b7d0c1a9f"

// errorDomain is ErrorInfo.domain of every status (the default).
const errorDomain = "genservice"

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = logbuf.Buffer

// logLine is one decoded JSON log line.
type logLine map[string]any

func (l logLine) str(k string) string {
	v, _ := l[k].(string)
	return v
}

func (l logLine) num(k string) (float64, bool) {
	v, ok := l[k].(float64)
	return v, ok
}

// testPKI is a CA with a server certificate for localhost/127.0.0.1 and a default
// client certificate, written to a temporary directory.
type testPKI struct {
	dir        string
	ca         *certgen.CA
	caFile     string
	serverCert string
	serverKey  string
	client     *certgen.Leaf
}

// defaultPrincipal is the SPIFFE ID in the default client certificate.
const defaultPrincipal = "spiffe://genservice.test/ns/e2e/sa/caller"

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := certgen.NewCA("genservice e2e CA", time.Hour)
	if err != nil {
		t.Fatalf("certgen.NewCA: %v", err)
	}
	caFile, err := ca.WriteFile(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(certgen.LeafOptions{
		CommonName: "genservice",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
		Server:     true,
	})
	if err != nil {
		t.Fatalf("issue server cert: %v", err)
	}
	certFile, keyFile, err := srv.WriteFiles(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, ca: ca, caFile: caFile, serverCert: certFile, serverKey: keyFile}
	p.client = p.issueClient(t, certgen.LeafOptions{
		CommonName: "caller-cn",
		DNSNames:   []string{"caller.e2e.test"},
		URIs:       []string{defaultPrincipal},
	})
	return p
}

// issueClient issues a client certificate from the harness CA and writes it to disk
// (as a caller's files would be).
func (p *testPKI) issueClient(t testing.TB, o certgen.LeafOptions) *certgen.Leaf {
	t.Helper()
	o.Client = true
	leaf, err := p.ca.Issue(o)
	if err != nil {
		t.Fatalf("issue client cert: %v", err)
	}
	if _, _, err := leaf.WriteFiles(p.dir, "client-"+leaf.Cert.SerialNumber.Text(16)); err != nil {
		t.Fatal(err)
	}
	return leaf
}

// harnessConfig collects options before the harness starts.
type harnessConfig struct {
	key         string
	sim         livepeertest.Config
	upstream    livepeer.Config
	server      server.Config
	gatewayURL  string // overrides the simulator's URL (e.g. a closed port)
	beforeServe func(*server.Server)
}

type option func(*harnessConfig)

func withKey(k string) option { return func(c *harnessConfig) { c.key = k } }

func withSim(f func(*livepeertest.Config)) option { return func(c *harnessConfig) { f(&c.sim) } }

func withUpstream(f func(*livepeer.Config)) option {
	return func(c *harnessConfig) { f(&c.upstream) }
}

func withServer(f func(*server.Config)) option { return func(c *harnessConfig) { f(&c.server) } }

func withGatewayURL(u string) option { return func(c *harnessConfig) { c.gatewayURL = u } }

func withBeforeServe(f func(*server.Server)) option {
	return func(c *harnessConfig) { c.beforeServe = f }
}

// harness is one running genservice with its simulator and a default client.
type harness struct {
	key    string
	apiKey livepeer.APIKey
	sim    *livepeertest.Server
	srv    *server.Server
	addr   string
	logs   *syncBuffer
	pki    *testPKI
	conn   *grpc.ClientConn
	client generationv1.GenerationServiceClient

	serveDone    chan error
	serveErr     error
	shutdownOnce sync.Once
}

func newHarness(t testing.TB, opts ...option) *harness {
	t.Helper()
	cfg := harnessConfig{key: testKey}
	for _, o := range opts {
		o(&cfg)
	}
	h := &harness{key: cfg.key, logs: &syncBuffer{}, pki: newPKI(t), serveDone: make(chan error, 1)}
	var err error
	if h.apiKey, err = livepeer.ParseKey(cfg.key); err != nil {
		t.Fatalf("ParseKey: %v", err)
	}

	cfg.sim.APIKey = cfg.key
	if h.sim, err = livepeertest.New(cfg.sim); err != nil {
		t.Fatalf("livepeertest.New: %v", err)
	}
	t.Cleanup(h.sim.Close)

	cfg.upstream.GatewayURL = h.sim.URL()
	if cfg.gatewayURL != "" {
		cfg.upstream.GatewayURL = cfg.gatewayURL
	}
	cfg.upstream.Keys = livepeer.StaticKey(h.apiKey)
	up, err := livepeer.New(cfg.upstream)
	if err != nil {
		t.Fatalf("livepeer.New: %v", err)
	}

	cfg.server.TLS = server.TLSFiles{CertFile: h.pki.serverCert, KeyFile: h.pki.serverKey, ClientCAFile: h.pki.caFile}
	cfg.server.Upstream = up
	cfg.server.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if h.srv, err = server.New(cfg.server); err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if cfg.beforeServe != nil {
		cfg.beforeServe(h.srv)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	go func() { h.serveDone <- h.srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.shutdown(ctx)
		if h.serveErr != nil {
			t.Errorf("Serve returned %v", h.serveErr)
		}
	})

	h.conn = h.dial(t, &h.pki.client.TLS)
	h.client = generationv1.NewGenerationServiceClient(h.conn)
	waitReady(t, h.conn)
	return h
}

// waitReady connects conn and waits until it is READY, so that tests with short
// deadlines do not spend them on the first handshake. It makes no RPC (and so writes no
// call log line).
func waitReady(t testing.TB, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn.Connect()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("connection not ready: %v", st)
		}
	}
}

// shutdown drains the server (once) and waits for Serve to return.
func (h *harness) shutdown(ctx context.Context) {
	h.shutdownOnce.Do(func() {
		h.srv.Shutdown(ctx, 0)
		select {
		case h.serveErr = <-h.serveDone:
		case <-ctx.Done():
			h.serveErr = errors.New("Serve did not return after Shutdown")
		}
	})
}

// clientTLS returns a TLS 1.3 client config trusting the harness CA, for ServerName
// localhost, presenting cert (nil: no client certificate).
func (h *harness) clientTLS(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: h.pki.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// dial connects with cert (nil: none). The connection is closed at cleanup.
func (h *harness) dial(t testing.TB, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	return h.dialTLS(t, h.clientTLS(cert))
}

func (h *harness) dialTLS(t testing.TB, conf *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// lines returns every log line written so far.
func (h *harness) lines(t testing.TB) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(h.logs.Bytes()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		out = append(out, l)
	}
	return out
}

// calls returns the "call" log lines, optionally only those for method.
func (h *harness) calls(t testing.TB, method string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range h.lines(t) {
		if l.str("msg") == "call" && (method == "" || l.str("method") == method) {
			out = append(out, l)
		}
	}
	return out
}

// callLine returns the single call line with the given request id. The server writes
// it when the call has ended, which is just after the client has its status, so it
// waits a little for the line to appear.
func (h *harness) callLine(t testing.TB, requestID string) logLine {
	t.Helper()
	var found []logLine
	find := func() bool {
		found = found[:0]
		for _, l := range h.calls(t, "") {
			if l.str("requestId") == requestID {
				found = append(found, l)
			}
		}
		return len(found) > 0
	}
	deadline := time.Now().Add(3 * time.Second)
	for !find() && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if len(found) != 1 {
		t.Fatalf("want exactly 1 call log line with requestId %q, got %d\nlogs:\n%s", requestID, len(found), h.logs.Bytes())
	}
	return found[0]
}

// waitCallLine waits for the call line of requestID (an alias of callLine, kept for
// the calls the client abandoned, where the wait is longest).
func (h *harness) waitCallLine(t testing.TB, requestID string) logLine {
	t.Helper()
	return h.callLine(t, requestID)
}

// eventually polls cond: used only where the system under test offers no channel to
// wait on (a server-side log line written after the client gave up, a request that
// reached the simulator).
func eventually(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// withRequestID returns ctx carrying an x-request-id for the call.
func withRequestID(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
}

// rid makes a request id unique to the test, using only characters genservice accepts
// in x-request-id (anything else would be replaced by a generated id).
func rid(t testing.TB, suffix string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == ':':
			return r
		}
		return '-'
	}, t.Name()+"."+suffix)
	if len(s) > 120 {
		s = s[len(s)-120:]
	}
	return s
}

// ---- calls: one minimal valid request per RPC ----

// rpc is one unary RPC of GenerationService with a minimal valid request.
type rpc struct {
	name     string
	pipeline string
	method   string
	call     func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error)
}

// pngBytes is a small valid PNG.
var pngBytes = func() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for i := range 4 {
		img.Set(i, i, color.RGBA{200, 10, 10, 255})
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}()

// wavBytes is a RIFF/WAVE header plus a little silence: sniffed as audio/wave.
var wavBytes = func() []byte {
	b := []byte("RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00data\x00\x08\x00\x00")
	return append(b, make([]byte, 2048)...)
}()

func image1() *generationv1.InputFile { return &generationv1.InputFile{Content: pngBytes} }

var unaryRPCs = []rpc{
	{"TextToImage", livepeer.PipelineTextToImage, generationv1.GenerationService_TextToImage_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"}, opts...)
		}},
	{"ImageToImage", livepeer.PipelineImageToImage, generationv1.GenerationService_ImageToImage_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "make it blue", Image: image1()}, opts...)
		}},
	{"ImageToVideo", livepeer.PipelineImageToVideo, generationv1.GenerationService_ImageToVideo_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.ImageToVideo(ctx, &generationv1.ImageToVideoRequest{Image: image1()}, opts...)
		}},
	{"Upscale", livepeer.PipelineUpscale, generationv1.GenerationService_Upscale_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.Upscale(ctx, &generationv1.UpscaleRequest{Prompt: "sharper", Image: image1()}, opts...)
		}},
	{"AudioToText", livepeer.PipelineAudioToText, generationv1.GenerationService_AudioToText_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.AudioToText(ctx, &generationv1.AudioToTextRequest{Audio: &generationv1.InputFile{Content: wavBytes}}, opts...)
		}},
	{"SegmentAnything2", livepeer.PipelineSegmentAnything2, generationv1.GenerationService_SegmentAnything2_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.SegmentAnything2(ctx, &generationv1.SegmentAnything2Request{Image: image1()}, opts...)
		}},
	{"Llm", livepeer.PipelineLLM, generationv1.GenerationService_Llm_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}}, opts...)
		}},
	{"ImageToText", livepeer.PipelineImageToText, generationv1.GenerationService_ImageToText_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.ImageToText(ctx, &generationv1.ImageToTextRequest{Image: image1()}, opts...)
		}},
	{"TextToSpeech", livepeer.PipelineTextToSpeech, generationv1.GenerationService_TextToSpeech_FullMethodName,
		func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) (proto.Message, error) {
			return c.TextToSpeech(ctx, &generationv1.TextToSpeechRequest{Text: "hello there"}, opts...)
		}},
}

func rpcFor(t testing.TB, pipeline string) rpc {
	t.Helper()
	for _, r := range unaryRPCs {
		if r.pipeline == pipeline {
			return r
		}
	}
	t.Fatalf("no RPC for pipeline %q", pipeline)
	return rpc{}
}

// ---- status assertions ----

var lowerCamel = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// maxDetailsBytes is DESIGN §7's budget for a status's details (Java clients cap
// trailers at 8 KiB).
const maxDetailsBytes = 2048

// requireStatus asserts err is a status with code and, unless reason is "", an
// ErrorInfo with that reason in the genservice domain; it always checks the hygiene
// rules of DESIGN §7 on non-OK statuses that carry ErrorInfo.
func requireStatus(t testing.TB, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("want status %v/%s, got success", code, reason)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("want a gRPC status, got %T: %v", err, err)
	}
	if st.Code() != code {
		t.Fatalf("code = %v, want %v (message %q, details %v)", st.Code(), code, st.Message(), st.Details())
	}
	if reason == "" {
		return st
	}
	info := errorInfo(t, st)
	if info.GetReason() != reason {
		t.Fatalf("ErrorInfo.reason = %q, want %q (message %q)", info.GetReason(), reason, st.Message())
	}
	checkHygiene(t, st)
	return st
}

// checkHygiene: ErrorInfo present in our domain, lowerCamelCase metadata keys, details
// under 2 KB, a message that is one readable line.
func checkHygiene(t testing.TB, st *status.Status) {
	t.Helper()
	info := errorInfo(t, st)
	if info.GetDomain() != errorDomain {
		t.Errorf("ErrorInfo.domain = %q, want %q", info.GetDomain(), errorDomain)
	}
	if !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(info.GetReason()) || strings.HasPrefix(info.GetReason(), "ERROR_REASON_") {
		t.Errorf("ErrorInfo.reason %q is not an UPPER_SNAKE enum name without prefix", info.GetReason())
	}
	for k, v := range info.GetMetadata() {
		if !lowerCamel.MatchString(k) {
			t.Errorf("ErrorInfo metadata key %q is not lowerCamelCase", k)
		}
		if v == "" {
			t.Errorf("ErrorInfo metadata %q is empty", k)
		}
	}
	size := 0
	for _, a := range st.Proto().GetDetails() {
		size += proto.Size(a)
	}
	if size >= maxDetailsBytes {
		t.Errorf("serialized details are %d bytes, want < %d", size, maxDetailsBytes)
	}
	msg := st.Message()
	if msg == "" {
		t.Error("status message is empty")
	}
	if strings.ContainsFunc(msg, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Errorf("status message has control characters: %q", msg)
	}
}

func errorInfo(t testing.TB, st *status.Status) *errdetails.ErrorInfo {
	t.Helper()
	var found *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if found != nil {
				t.Errorf("status has more than one ErrorInfo")
			}
			found = ei
		}
	}
	if found == nil {
		t.Fatalf("status %v %q has no ErrorInfo (details %v)", st.Code(), st.Message(), st.Details())
	}
	return found
}

// detail returns the status's detail of type T, if any.
func detail[T proto.Message](st *status.Status) (T, bool) {
	for _, d := range st.Details() {
		if v, ok := d.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

// requireMeta asserts ErrorInfo metadata entries (exact values).
func requireMeta(t testing.TB, st *status.Status, want map[string]string) {
	t.Helper()
	got := errorInfo(t, st).GetMetadata()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("ErrorInfo.metadata[%q] = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// fieldViolations returns BadRequest's field -> description.
func fieldViolations(t testing.TB, st *status.Status) map[string]string {
	t.Helper()
	br, ok := detail[*errdetails.BadRequest](st)
	if !ok {
		t.Fatalf("status has no BadRequest detail: %v", st.Details())
	}
	out := map[string]string{}
	for _, v := range br.GetFieldViolations() {
		out[v.GetField()] = v.GetDescription()
	}
	return out
}

// statusBytes is everything about a status a caller can see: message and the
// serialized grpc-status-details-bin payload.
func statusBytes(err error) []byte {
	st, _ := status.FromError(err)
	b, _ := proto.Marshal(st.Proto())
	return append([]byte(st.Message()+"\n"), b...)
}

// closedPortURL returns an http URL on a loopback port nothing listens on.
func closedPortURL(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/api/beta/generate"
}

// fingerprint is the key's fingerprint as genservice reports it.
func fingerprint(t testing.TB, key string) string {
	t.Helper()
	k, err := livepeer.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint()
}

// ctxTimeout is a context for one call.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
