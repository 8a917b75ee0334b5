package server_test

// Identities are what they claim to be (DESIGN §5): end to end over real mTLS, a
// certificate that chains to the client CA but does not name a usable caller is refused
// with UNAUTHENTICATED / CLIENT_CERTIFICATE_REQUIRED and a `problem` that says why, and
// never reaches the policy, a rate bucket or the gateway.

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/livepeer"
)

// identityRefusedPrefix starts the message of every refused identity.
const identityRefusedPrefix = "the caller's identity is not usable: "

// requireUnusableIdentity asserts err is the refusal of a presented but unusable
// identity whose problem contains problem, within the status size budget.
func requireUnusableIdentity(t testing.TB, err error, problem string) *status.Status {
	t.Helper()
	st, info := rotStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
	got := info.GetMetadata()["problem"]
	if !strings.Contains(got, problem) {
		t.Errorf("problem = %q, want it to contain %q (message %q)", got, problem, st.Message())
	}
	if !strings.HasPrefix(st.Message(), identityRefusedPrefix) {
		t.Errorf("message %q does not start with %q", st.Message(), identityRefusedPrefix)
	}
	if strings.Contains(st.Message(), "a client certificate is required") {
		t.Errorf("message %q says a certificate is required, but one was presented", st.Message())
	}
	size := 0
	for _, a := range st.Proto().GetDetails() {
		size += proto.Size(a)
	}
	if size >= maxDetailsBytes || len(st.Message()) > 1024 {
		t.Errorf("status too large: details %d bytes, message %d bytes", size, len(st.Message()))
	}
	if strings.ContainsFunc(got+st.Message(), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		t.Errorf("problem or message has control characters: %q", st.Message())
	}
	return st
}

// TestIdentity_UnusableCertificates: each certificate verifies against the client CA
// (the handshake succeeds) but is not a usable caller identity: look-alike SPIFFE IDs in
// the CN or a DNS SAN, more than one URI SAN, SPIFFE IDs that break the SPIFFE ID rules,
// CA certificates, DNS SANs that are not DNS names, unprintable or oversized CNs, no
// name at all. Every call is refused with a problem naming the fault; nothing is logged
// as a principal and nothing reaches the gateway.
func TestIdentity_UnusableCertificates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const td = "spiffe://genservice.test"
	for _, tc := range []struct {
		name    string
		opts    certgen.LeafOptions
		problem string
	}{
		{"CN looks like a SPIFFE ID", certgen.LeafOptions{CommonName: defaultPrincipal}, "looks like a SPIFFE ID"},
		{"CN looks like a SPIFFE ID in upper case", certgen.LeafOptions{CommonName: "SPIFFE://genservice.test/ns/e2e/sa/caller"}, "looks like a SPIFFE ID"},
		{"CN looks like a URI", certgen.LeafOptions{CommonName: "https://caller.e2e.test/"}, "looks like a URI"},
		{"DNS SAN looks like a SPIFFE ID", certgen.LeafOptions{CommonName: "caller", DNSNames: []string{defaultPrincipal}}, "looks like a SPIFFE ID"},
		{"DNS SAN is not a DNS name", certgen.LeafOptions{DNSNames: []string{"caller e2e.test"}}, "is not a DNS name"},
		{"DNS SAN is a wildcard", certgen.LeafOptions{DNSNames: []string{"*.e2e.test"}}, "is not a DNS name"},
		{"DNS SAN with an empty label", certgen.LeafOptions{DNSNames: []string{"caller..e2e.test"}}, "is not a DNS name"},
		{"two SPIFFE URI SANs", certgen.LeafOptions{URIs: []string{defaultPrincipal, td + "/ns/e2e/sa/other"}}, "2 URI SANs"},
		{"a SPIFFE and another URI SAN", certgen.LeafOptions{URIs: []string{"https://e2e.test/x", defaultPrincipal}}, "2 URI SANs"},
		{"SPIFFE ID with a dot-dot segment", certgen.LeafOptions{URIs: []string{td + "/ns/e2e/sa/caller/../other"}}, "dot segments"},
		{"SPIFFE ID with a dot segment", certgen.LeafOptions{URIs: []string{td + "/ns/./e2e/sa/caller"}}, "dot segments"},
		{"SPIFFE ID percent-encoded", certgen.LeafOptions{URIs: []string{td + "/ns/e2e/sa/call%65r"}}, "not a valid SPIFFE ID"},
		{"SPIFFE ID with an upper-case trust domain", certgen.LeafOptions{URIs: []string{"spiffe://Genservice.test/ns/e2e/sa/caller"}}, "trust domain"},
		{"SPIFFE ID with a trailing slash", certgen.LeafOptions{URIs: []string{defaultPrincipal + "/"}}, "trailing slash"},
		{"SPIFFE ID with an empty segment", certgen.LeafOptions{URIs: []string{td + "/ns//sa/caller"}}, "empty segments"},
		{"SPIFFE ID with a query", certgen.LeafOptions{URIs: []string{defaultPrincipal + "?x=1"}}, "not a valid SPIFFE ID"},
		{"SPIFFE ID with a fragment", certgen.LeafOptions{URIs: []string{defaultPrincipal + "#x"}}, "not a valid SPIFFE ID"},
		{"SPIFFE ID with userinfo", certgen.LeafOptions{URIs: []string{"spiffe://admin@genservice.test/ns/e2e/sa/caller"}}, "not a valid SPIFFE ID"},
		{"SPIFFE ID with a port", certgen.LeafOptions{URIs: []string{"spiffe://genservice.test:8443/ns/e2e/sa/caller"}}, "not a valid SPIFFE ID"},
		{"SPIFFE ID of a trust domain", certgen.LeafOptions{URIs: []string{td}}, "names a trust domain"},
		{"SPIFFE ID too long", certgen.LeafOptions{URIs: []string{td + "/ns/e2e/sa/" + strings.Repeat("a", 600)}}, "longer than 512 bytes"},
		{"CA certificate", certgen.LeafOptions{URIs: []string{defaultPrincipal}, CA: true}, "is a CA certificate"},
		{"keyCertSign without CA:TRUE", certgen.LeafOptions{URIs: []string{defaultPrincipal}, CertSign: true}, "is a CA certificate"},
		{"no name at all", certgen.LeafOptions{}, "names no caller"},
		{"only a non-SPIFFE URI", certgen.LeafOptions{URIs: []string{"https://e2e.test/x"}}, "names no caller"},
		{"CN with a control character", certgen.LeafOptions{CommonName: "caller\x07"}, "not printable"},
		{"CN with an invisible character", certgen.LeafOptions{CommonName: "call\u200ber"}, "not printable"},
		{"CN with surrounding spaces", certgen.LeafOptions{CommonName: " caller "}, "begins or ends with a space"},
		{"CN too long", certgen.LeafOptions{CommonName: strings.Repeat("c", 600)}, "longer than 512 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf := h.pki.issueClient(t, tc.opts)
			conn := h.dial(t, &leaf.TLS)
			id := rid(t, "refused")
			_, err := generationv1.NewGenerationServiceClient(conn).TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id), &generationv1.TextToImageRequest{Prompt: "p"})
			requireUnusableIdentity(t, err, tc.problem)
			if got := h.callLine(t, id).str("principal"); got != "" {
				t.Errorf("refused call logged principal %q", got)
			}
		})
	}
	t.Cleanup(func() {
		if n := len(h.sim.Requests()); n != 0 {
			t.Errorf("simulator received %d requests from refused identities", n)
		}
	})
}

// TestIdentity_LookalikeGetsNoAuthorizationOrBucket: a certificate whose CN or DNS SAN
// spells a SPIFFE ID the policy allows is not that SPIFFE ID: it is refused, and it does
// not spend the real principal's rate bucket.
func TestIdentity_LookalikeGetsNoAuthorizationOrBucket(t *testing.T) {
	// One call per 100 s: any call the look-alikes were allowed would leave the real
	// principal rate limited.
	env := rotStartWithPolicy(t, "rules:\n  - principals: [\""+rotLimited+"\"]\n    methods: [TextToImage]\n    rate: 0.01\n    burst: 1\n", nil)
	for _, o := range []certgen.LeafOptions{
		{CommonName: rotLimited},
		{DNSNames: []string{rotLimited}},
		{CommonName: "x", DNSNames: []string{strings.ToUpper(rotLimited)}},
	} {
		o.Client = true
		leaf, err := env.clientCA.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		err = rotT2I(rotCtx(t, 5*time.Second), env.dial(t, &leaf.TLS))
		requireUnusableIdentity(t, err, "looks like a SPIFFE ID")
	}
	if hits := env.sim.Hits(livepeer.PipelineTextToImage); hits != 0 {
		t.Fatalf("look-alike certificates reached the gateway %d times", hits)
	}
	real := env.dial(t, env.client(t, rotLimited))
	if err := rotT2I(rotCtx(t, 5*time.Second), real); err != nil {
		t.Fatalf("the real SPIFFE ID after the look-alikes: %v (its bucket was spent by someone else)", err)
	}
	// The bucket is real: the second call of the real principal is limited.
	rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), real), codes.ResourceExhausted, "CALLER_RATE_LIMITED")
}

// TestIdentity_DotSegmentsCannotEscapePrefix: a prefix rule for the assistant's
// workloads must not admit `assistant/../web/sa/frontend`. The certificate is refused as
// an identity, so the policy never sees it; a real workload under the prefix is allowed.
func TestIdentity_DotSegmentsCannotEscapePrefix(t *testing.T) {
	const prefix = "spiffe://genservice.test/ns/x/sa/assistant/"
	env := rotStartWithPolicy(t, "rules:\n  - principals: [\""+prefix+"*\"]\n    methods: [\"*\"]\n", nil)
	for _, tc := range []struct{ uri, problem string }{
		{prefix + "../web/sa/frontend", "dot segments"},
		{prefix + "./../../../web/sa/frontend", "dot segments"},
		{prefix + "%2e%2e/web/sa/frontend", "not a valid SPIFFE ID"},
	} {
		err := rotT2I(rotCtx(t, 5*time.Second), env.dial(t, env.client(t, tc.uri)))
		requireUnusableIdentity(t, err, tc.problem)
	}
	if hits := env.sim.Hits(livepeer.PipelineTextToImage); hits != 0 {
		t.Fatalf("dot-segment identities reached the gateway %d times", hits)
	}
	if err := rotT2I(rotCtx(t, 5*time.Second), env.dial(t, env.client(t, prefix+"worker"))); err != nil {
		t.Fatalf("a workload under the prefix: %v", err)
	}
}

// TestIdentity_LegitimateCertificatesKeepTheirPrincipal: ordinary certificates keep the
// principal they had, so existing policies mean the same: a SPIFFE ID (whatever the CN
// and DNS SANs say, even a SPIFFE-looking CN), a DNS name (a single non-SPIFFE URI SAN
// is ignored), a CN with spaces and non-ASCII letters.
func TestIdentity_LegitimateCertificatesKeepTheirPrincipal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		opts certgen.LeafOptions
		want string
	}{
		{"SPIFFE ID with a look-alike CN", certgen.LeafOptions{CommonName: "spiffe://genservice.test/ns/e2e/sa/admin", URIs: []string{defaultPrincipal}}, defaultPrincipal},
		{"SPIFFE ID with an upper-case scheme", certgen.LeafOptions{URIs: []string{"SPIFFE://genservice.test/ns/e2e/sa/caller"}}, defaultPrincipal},
		{"DNS name with a non-SPIFFE URI", certgen.LeafOptions{URIs: []string{"urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"}, DNSNames: []string{"batch-1.jobs.e2e.test"}}, "batch-1.jobs.e2e.test"},
		{"single-label DNS name", certgen.LeafOptions{DNSNames: []string{"reporting"}}, "reporting"},
		{"CN with spaces and accents", certgen.LeafOptions{CommonName: "Équipe Données 7"}, "Équipe Données 7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaf := h.pki.issueClient(t, tc.opts)
			id := rid(t, "ok")
			if _, err := generationv1.NewGenerationServiceClient(h.dial(t, &leaf.TLS)).TextToSpeech(withRequestID(ctxTimeout(t, 10*time.Second), id), &generationv1.TextToSpeechRequest{Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			if got := h.callLine(t, id).str("principal"); got != tc.want {
				t.Errorf("principal = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMeshIdentity_Unusable: in mesh mode the sidecar's header is held to the same
// rules as a certificate: a SPIFFE-looking DNS or CN in x-forwarded-client-cert, or a
// SPIFFE ID in l5d-client-id, is not the SPIFFE principal the policy allows; SPIFFE IDs
// must follow the SPIFFE ID rules; names are bounded (a 30 KB URI must not become a log
// field or a Prometheus label). Each is refused with a problem; none reaches the gateway.
func TestMeshIdentity_Unusable(t *testing.T) {
	huge := "spiffe://cluster.local/ns/web/sa/" + strings.Repeat("a", 30<<10)
	envs := map[string]*rotMeshEnv{}
	for _, tc := range []struct {
		mesh, header, value, problem string
	}{
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";DNS=" + rotMeshFrontend, "looks like a SPIFFE ID"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + `;Subject="CN=` + rotMeshFrontend + `,O=corp"`, "looks like a SPIFFE ID"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";URI=" + rotMeshFrontend + ";URI=" + rotMeshOther, "2 URI SANs"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";URI=" + rotMeshOther + "/../frontend", "dot segments"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";URI=spiffe://Cluster.local/ns/web/sa/frontend", "trust domain"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";URI=" + huge, "longer than 512 bytes"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";DNS=" + strings.Repeat("a.", 20<<10) + "example", "longer than"},
		{"istio", "x-forwarded-client-cert", "By=" + rotMeshBy + ";DNS=web frontend", "is not a DNS name"},
		{"linkerd", "l5d-client-id", rotMeshFrontend, "looks like a SPIFFE ID"},
		{"linkerd", "l5d-client-id", "frontend.web.serviceaccount.identity.linkerd.cluster.local/../admin", "is not a DNS name"},
		{"linkerd", "l5d-client-id", strings.Repeat("frontend.", 3<<10) + "local", "longer than"},
	} {
		env := envs[tc.mesh]
		if env == nil {
			env = rotStartMesh(t, tc.mesh)
			envs[tc.mesh] = env
		}
		p, err := env.call(t, tc.header, tc.value)
		requireUnusableIdentity(t, err, tc.problem)
		if p != "" {
			t.Errorf("%s %.80s: logged principal %.80q", tc.mesh, tc.value, p)
		}
		if hits := env.sim.Hits(livepeer.PipelineTextToImage); hits != 0 {
			t.Errorf("%s %.80s: reached the gateway", tc.mesh, tc.value)
		}
	}
}
