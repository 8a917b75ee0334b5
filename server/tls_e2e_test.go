package server_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/server"
)

// TestTLS_NoClientCertificate: without a client certificate the handshake succeeds,
// health checks work, and every other RPC (all of GenerationService, reflection) fails
// with UNAUTHENTICATED / CLIENT_CERTIFICATE_REQUIRED naming the method; nothing reaches
// the gateway.
func TestTLS_NoClientCertificate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	conn := h.dial(t, nil)
	ctx := ctxTimeout(t, 10*time.Second)

	for _, service := range []string{"", generationv1.GenerationService_ServiceDesc.ServiceName} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q without a certificate = %v, %v; want SERVING", service, resp, err)
		}
	}

	c := generationv1.NewGenerationServiceClient(conn)
	for _, r := range unaryRPCs {
		_, err := r.call(ctx, c)
		st := requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
		requireMeta(t, st, map[string]string{"method": r.method})
		if !strings.Contains(st.Message(), "client certificate") {
			t.Errorf("%s: message %q does not say what is missing", r.name, st.Message())
		}
	}

	stream, err := c.LlmStream(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
	if err == nil {
		_, err = stream.Recv()
	}
	requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")

	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err == nil {
		_ = refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = refl.Recv()
	}
	requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")

	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("simulator received %d requests", n)
	}
	for _, l := range h.calls(t, "") {
		if l.str("principal") != "" {
			t.Errorf("call without a certificate logged principal %q", l.str("principal"))
		}
	}
}

// requireHandshakeFailure asserts that a call over conn fails at the transport: the
// server refused the certificate (or the protocol version), so no RPC ran.
func requireHandshakeFailure(t *testing.T, h *harness, conn *grpc.ClientConn) {
	t.Helper()
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := generationv1.NewGenerationServiceClient(conn).TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "p"})
	// In TLS 1.3 the client may finish its side before the server's alert arrives, so
	// the message is a TLS alert, a reset or a broken pipe: only the code is stable.
	st := requireStatus(t, err, codes.Unavailable, "")
	t.Logf("refused: %s", st.Message())
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("simulator received %d requests", n)
	}
	if n := len(h.calls(t, "")); n != 0 {
		t.Errorf("%d calls were logged for a refused connection", n)
	}
}

// TestTLS_RefusedClientCertificates: certificates that do not verify fail the handshake.
func TestTLS_RefusedClientCertificates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cert func(t *testing.T, h *harness) *tls.Certificate
	}{
		{"foreign CA", func(t *testing.T, h *harness) *tls.Certificate {
			other, err := certgen.NewCA("some other CA", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := other.Issue(certgen.LeafOptions{URIs: []string{defaultPrincipal}, Client: true})
			if err != nil {
				t.Fatal(err)
			}
			return &leaf.TLS
		}},
		{"expired", func(t *testing.T, h *harness) *tls.Certificate {
			leaf := h.pki.issueClient(t, certgen.LeafOptions{CommonName: "expired",
				NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			return &leaf.TLS
		}},
		{"not yet valid", func(t *testing.T, h *harness) *tls.Certificate {
			leaf := h.pki.issueClient(t, certgen.LeafOptions{CommonName: "future",
				NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
			return &leaf.TLS
		}},
		{"server-only key usage", func(t *testing.T, h *harness) *tls.Certificate {
			leaf, err := h.pki.ca.Issue(certgen.LeafOptions{CommonName: "not-a-client", Server: true})
			if err != nil {
				t.Fatal(err)
			}
			return &leaf.TLS
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			// Present the certificate whatever the server's list of acceptable CAs says
			// (as grpcurl and other stacks do; Go's client would withhold a foreign one).
			cert := tc.cert(t, h)
			conf := h.clientTLS(nil)
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			requireHandshakeFailure(t, h, h.dialTLS(t, conf))
		})
	}
}

// TestTLS_ForeignCertificateWithheld: Go's TLS client only presents a certificate whose
// issuer the server lists as acceptable, so a caller holding only a foreign certificate
// connects without one and gets the clear CLIENT_CERTIFICATE_REQUIRED status.
func TestTLS_ForeignCertificateWithheld(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	other, err := certgen.NewCA("some other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := other.Issue(certgen.LeafOptions{URIs: []string{defaultPrincipal}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	c := generationv1.NewGenerationServiceClient(h.dial(t, &leaf.TLS))
	_, err = c.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
	requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("simulator received %d requests", n)
	}
}

// TestTLS_OldProtocolRefused: a TLS 1.2-only client cannot connect (TLS 1.3 only).
func TestTLS_OldProtocolRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	conf := h.clientTLS(&h.pki.client.TLS)
	conf.MinVersion, conf.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	requireHandshakeFailure(t, h, h.dialTLS(t, conf))
}

// TestTLS_HandshakeLogReasons: a failed handshake is logged with a reason an operator
// can act on; a connection without a client certificate is not a failed handshake.
func TestTLS_HandshakeLogReasons(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		conf   func(t *testing.T, h *harness) *tls.Config
		reason string // "" = no handshake failure may be logged
	}{
		{"TLS 1.2 only client", func(t *testing.T, h *harness) *tls.Config {
			conf := h.clientTLS(&h.pki.client.TLS)
			conf.MinVersion, conf.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
			return conf
		}, "client does not support TLS 1.3"},
		{"client certificate from a foreign CA", func(t *testing.T, h *harness) *tls.Config {
			other, err := certgen.NewCA("some other CA", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := other.Issue(certgen.LeafOptions{URIs: []string{defaultPrincipal}, Client: true})
			if err != nil {
				t.Fatal(err)
			}
			conf := h.clientTLS(nil)
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }
			return conf
		}, "client certificate from an unknown CA"},
		{"client does not trust the server", func(t *testing.T, h *harness) *tls.Config {
			untrusted, err := certgen.NewCA("untrusted", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			conf := h.clientTLS(&h.pki.client.TLS)
			conf.RootCAs = untrusted.Pool()
			return conf
		}, "client rejected the server's certificate"},
		{"no client certificate", func(t *testing.T, h *harness) *tls.Config { return h.clientTLS(nil) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			conn := h.dialTLS(t, tc.conf(t, h))
			failures := func() []logLine {
				var out []logLine
				for _, l := range h.lines(t) {
					if l.str("msg") == "TLS handshake failed" {
						out = append(out, l)
					}
				}
				return out
			}
			if tc.reason == "" {
				_, err := generationv1.NewGenerationServiceClient(conn).TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
				requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
				if f := failures(); len(f) != 0 {
					t.Errorf("a connection without a client certificate was logged as a failed handshake: %v", f)
				}
				return
			}
			requireHandshakeFailure(t, h, conn)
			eventually(t, 5*time.Second, func() bool { return len(failures()) > 0 }, "a TLS handshake failed log line")
			for _, l := range failures() {
				if l.str("reason") != tc.reason {
					t.Errorf("reason = %q, want %q (error %q)", l.str("reason"), tc.reason, l.str("error"))
				}
			}
		})
	}
}

// TestTLS_ServerIdentity: the client verifies the server's certificate: a client that
// does not trust the harness CA fails.
func TestTLS_ServerIdentity(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	conf := h.clientTLS(&h.pki.client.TLS)
	other, err := certgen.NewCA("untrusted", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	conf.RootCAs = other.Pool()
	requireHandshakeFailure(t, h, h.dialTLS(t, conf))
}

// TestTLS_Principal: the principal is the SPIFFE URI SAN when present, else the first
// DNS SAN, else the subject CN; it is what the call's log line reports.
func TestTLS_Principal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		opts certgen.LeafOptions
		want string
	}{
		// One URI SAN: an X.509-SVID has exactly one, and a second is refused
		// (TestIdentity_UnusableCertificates).
		{"spiffe beats DNS and CN", certgen.LeafOptions{CommonName: "cn-a", DNSNames: []string{"a.example", "b.example"},
			URIs: []string{"spiffe://prod.example/ns/team/sa/api"}}, "spiffe://prod.example/ns/team/sa/api"},
		{"first DNS SAN beats CN and non-SPIFFE URIs", certgen.LeafOptions{CommonName: "cn-b", DNSNames: []string{"first.example", "second.example"},
			URIs: []string{"https://not-spiffe.example/x"}}, "first.example"},
		{"CN as a last resort", certgen.LeafOptions{CommonName: "batch-job-7"}, "batch-job-7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf := h.pki.issueClient(t, tc.opts)
			c := generationv1.NewGenerationServiceClient(h.dial(t, &leaf.TLS))
			id := rid(t, "p")
			if _, err := c.TextToSpeech(withRequestID(ctxTimeout(t, 5*time.Second), id), &generationv1.TextToSpeechRequest{Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			if got := h.callLine(t, id).str("principal"); got != tc.want {
				t.Errorf("principal = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTLS_OversizedMessage: a request above MaxMessageSize is refused with
// RESOURCE_EXHAUSTED before any handler runs, so nothing reaches the gateway.
func TestTLS_OversizedMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.MaxMessageSize = 1 << 20 }))
	ctx := ctxTimeout(t, 10*time.Second)
	big := make([]byte, 2<<20)
	copy(big, pngBytes)
	_, err := h.client.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "p", Image: &generationv1.InputFile{Content: big}})
	requireStatus(t, err, codes.ResourceExhausted, "")
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("simulator received %d requests", n)
	}
	// Just under the limit still works.
	if _, err := h.client.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "p", Image: &generationv1.InputFile{Content: big[:900<<10]}}); err != nil {
		t.Errorf("900 KiB upload with a 1 MiB limit: %v", err)
	}
}

// TestTLS_Reflection: grpcurl-style reflection (v1) lists GenerationService and
// resolves its file.
func TestTLS_Reflection(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"livepeer.generation.v1.GenerationService", "grpc.health.v1.Health"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "livepeer.generation.v1.GenerationService"}}); err != nil {
		t.Fatal(err)
	}
	resp, err = stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 {
		t.Errorf("no file descriptor for GenerationService: %v", resp)
	}
	// The descriptors carry the contract's comments, so grpcurl describe shows them.
	var comments []string
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &fd); err != nil {
			t.Fatal(err)
		}
		for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
			comments = append(comments, loc.GetLeadingComments())
		}
	}
	if all := strings.Join(comments, "\n"); !strings.Contains(all, "GenerationService runs Livepeer AI generation pipelines") || !strings.Contains(all, "TLS 1.3") {
		t.Errorf("reflection serves no comments for GenerationService (%d comment locations)", len(comments))
	}
	_ = stream.CloseSend()
}
