package server

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/metadata"
)

// checkIdentityOutput asserts what every identity rule promises, whatever the input: a
// principal is non-empty, bounded, printable and valid for its source; a refusal is
// errNoIdentity or an *IdentityError whose problem is short, printable ASCII.
func checkIdentityOutput(t *testing.T, p Principal, err error) {
	t.Helper()
	if err != nil {
		if p != (Principal{}) {
			t.Fatalf("error %v with principal %+v", err, p)
		}
		if errors.Is(err, errNoIdentity) {
			return
		}
		var ie *IdentityError
		if !errors.As(err, &ie) {
			t.Fatalf("error %T %v is neither errNoIdentity nor *IdentityError", err, err)
		}
		if ie.Problem == "" || len(ie.Problem) > 400 {
			t.Fatalf("problem is %d bytes: %q", len(ie.Problem), ie.Problem)
		}
		for _, r := range ie.Problem {
			if r < 0x20 || r > 0x7e {
				t.Fatalf("problem has a character outside printable ASCII: %q", ie.Problem)
			}
		}
		return
	}
	n := p.Name
	if n == "" || len(n) > maxPrincipalLen || !utf8.ValidString(n) || strings.ContainsFunc(n, func(r rune) bool { return !unicode.IsPrint(r) }) {
		t.Fatalf("principal %q (%d bytes) is empty, too long or not printable", n, len(n))
	}
	switch p.Source {
	case sourceSPIFFE, "istio-spiffe":
		if id, err := spiffeid.FromString(n); err != nil || id.Path() == "" {
			t.Fatalf("SPIFFE principal %q is not a workload's SPIFFE ID: %v", n, err)
		}
	case sourceDNS, "istio-dns", "linkerd":
		if !isDNSName(n) {
			t.Fatalf("%s principal %q is not a DNS name", p.Source, n)
		}
	case sourceCN, "istio-cn":
		if hasSPIFFEScheme(n) || strings.Contains(n, "://") || strings.TrimSpace(n) != n {
			t.Fatalf("CN principal %q looks like a URI or has surrounding spaces", n)
		}
	default:
		t.Fatalf("principal %q has unknown source %q", n, p.Source)
	}
}

func mustURIs(t *testing.T, raw ...string) []*url.URL {
	t.Helper()
	var out []*url.URL
	for _, r := range raw {
		u, err := url.Parse(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// TestPrincipalOf: the certificate rules, without sockets.
func TestPrincipalOf(t *testing.T) {
	const id = "spiffe://td.example/ns/web/sa/frontend"
	twoCNs := pkix.Name{Names: []pkix.AttributeTypeAndValue{{Type: oidCommonName, Value: "a"}, {Type: oidCommonName, Value: "b"}}, CommonName: "b"}
	for _, tc := range []struct {
		name    string
		cert    x509.Certificate
		want    Principal
		problem string // "" = accepted
	}{
		{"SPIFFE ID beats DNS and CN", x509.Certificate{URIs: mustURIs(t, id), DNSNames: []string{"a.example"}, Subject: pkix.Name{CommonName: "cn"}}, Principal{id, "spiffe"}, ""},
		{"SPIFFE ID with a look-alike CN", x509.Certificate{URIs: mustURIs(t, id), Subject: pkix.Name{CommonName: "spiffe://td.example/ns/admin"}}, Principal{id, "spiffe"}, ""},
		{"upper-case scheme", x509.Certificate{URIs: mustURIs(t, "SPIFFE://td.example/ns/web/sa/frontend")}, Principal{id, "spiffe"}, ""},
		{"non-SPIFFE URI is ignored", x509.Certificate{URIs: mustURIs(t, "https://x.example/a"), DNSNames: []string{"b.example"}}, Principal{"b.example", "dns"}, ""},
		{"first DNS SAN", x509.Certificate{DNSNames: []string{"b.example", "c.example"}, Subject: pkix.Name{CommonName: "cn"}}, Principal{"b.example", "dns"}, ""},
		{"CN", x509.Certificate{Subject: pkix.Name{CommonName: "Batch job #7"}}, Principal{"Batch job #7", "cn"}, ""},
		{"CN with an escaped-looking value", x509.Certificate{Subject: pkix.Name{CommonName: `Caller, Inc.`}}, Principal{"Caller, Inc.", "cn"}, ""},

		{"CA:TRUE", x509.Certificate{URIs: mustURIs(t, id), BasicConstraintsValid: true, IsCA: true}, Principal{}, "is a CA certificate"},
		{"keyCertSign", x509.Certificate{URIs: mustURIs(t, id), KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}, Principal{}, "is a CA certificate"},
		{"two URIs", x509.Certificate{URIs: mustURIs(t, id, id)}, Principal{}, "has 2 URI SANs"},
		{"SPIFFE and https URIs", x509.Certificate{URIs: mustURIs(t, "https://x.example", id)}, Principal{}, "has 2 URI SANs"},
		{"dot-dot segment", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns/web/../admin")}, Principal{}, "dot segments"},
		{"dot segment", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/./ns")}, Principal{}, "dot segments"},
		{"percent-encoding", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns/w%65b")}, Principal{}, "not a valid SPIFFE ID"},
		{"percent-encoded slash", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns%2Fweb")}, Principal{}, "not a valid SPIFFE ID"},
		{"upper-case trust domain", x509.Certificate{URIs: mustURIs(t, "spiffe://TD.example/ns")}, Principal{}, "trust domain"},
		{"trailing slash", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns/")}, Principal{}, "trailing slash"},
		{"empty segment", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns//web")}, Principal{}, "empty segments"},
		{"query", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns?a=b")}, Principal{}, "not a valid SPIFFE ID"},
		{"fragment", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/ns#a")}, Principal{}, "not a valid SPIFFE ID"},
		{"userinfo", x509.Certificate{URIs: mustURIs(t, "spiffe://u:p@td.example/ns")}, Principal{}, "not a valid SPIFFE ID"},
		{"port", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example:443/ns")}, Principal{}, "not a valid SPIFFE ID"},
		{"no trust domain", x509.Certificate{URIs: mustURIs(t, "spiffe:///ns")}, Principal{}, "not a valid SPIFFE ID"},
		{"opaque", x509.Certificate{URIs: mustURIs(t, "spiffe:td.example/ns")}, Principal{}, "not a valid SPIFFE ID"},
		{"trust domain only", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example")}, Principal{}, "names a trust domain"},
		{"SPIFFE ID too long", x509.Certificate{URIs: mustURIs(t, "spiffe://td.example/"+strings.Repeat("a", 600))}, Principal{}, "longer than 512 bytes"},
		{"DNS look-alike", x509.Certificate{DNSNames: []string{id}}, Principal{}, "looks like a SPIFFE ID"},
		{"DNS look-alike, upper case", x509.Certificate{DNSNames: []string{strings.ToUpper(id)}}, Principal{}, "looks like a SPIFFE ID"},
		{"DNS with a space", x509.Certificate{DNSNames: []string{"a b.example"}}, Principal{}, "not a DNS name"},
		{"DNS wildcard", x509.Certificate{DNSNames: []string{"*.example"}}, Principal{}, "not a DNS name"},
		{"DNS trailing dot", x509.Certificate{DNSNames: []string{"a.example."}}, Principal{}, "not a DNS name"},
		{"DNS leading hyphen", x509.Certificate{DNSNames: []string{"-a.example"}}, Principal{}, "not a DNS name"},
		{"DNS label too long", x509.Certificate{DNSNames: []string{strings.Repeat("a", 64) + ".example"}}, Principal{}, "not a DNS name"},
		{"DNS empty", x509.Certificate{DNSNames: []string{""}, Subject: pkix.Name{CommonName: "cn"}}, Principal{}, "not a DNS name"},
		{"DNS too long", x509.Certificate{DNSNames: []string{strings.Repeat("a.", 200) + "example"}}, Principal{}, "longer than 253 bytes"},
		{"CN look-alike", x509.Certificate{Subject: pkix.Name{CommonName: id}}, Principal{}, "looks like a SPIFFE ID"},
		{"CN look-alike without slashes", x509.Certificate{Subject: pkix.Name{CommonName: "Spiffe:td.example/ns"}}, Principal{}, "looks like a SPIFFE ID"},
		{"CN URI", x509.Certificate{Subject: pkix.Name{CommonName: "https://x.example"}}, Principal{}, "looks like a URI"},
		{"CN control character", x509.Certificate{Subject: pkix.Name{CommonName: "a\nb"}}, Principal{}, "not printable"},
		{"CN zero-width space", x509.Certificate{Subject: pkix.Name{CommonName: "a\u200bb"}}, Principal{}, "not printable"},
		{"CN no-break space", x509.Certificate{Subject: pkix.Name{CommonName: "a\u00a0b"}}, Principal{}, "not printable"},
		{"CN invalid UTF-8", x509.Certificate{Subject: pkix.Name{CommonName: "a\xffb"}}, Principal{}, "not printable"},
		{"CN surrounding space", x509.Certificate{Subject: pkix.Name{CommonName: "cn "}}, Principal{}, "begins or ends with a space"},
		{"CN too long", x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("c", 513)}}, Principal{}, "longer than 512 bytes"},
		{"two CNs", x509.Certificate{Subject: twoCNs}, Principal{}, "2 CNs"},
		{"nothing", x509.Certificate{}, Principal{}, "names no caller"},
		{"only a non-SPIFFE URI", x509.Certificate{URIs: mustURIs(t, "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66")}, Principal{}, "names no caller"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PrincipalOf(&tc.cert)
			checkIdentityOutput(t, p, err)
			if tc.problem == "" {
				if err != nil || p != tc.want {
					t.Fatalf("PrincipalOf = %+v, %v; want %+v", p, err, tc.want)
				}
				return
			}
			var ie *IdentityError
			if !errors.As(err, &ie) || !strings.Contains(ie.Problem, tc.problem) {
				t.Fatalf("PrincipalOf = %+v, %v; want an IdentityError about %q", p, err, tc.problem)
			}
		})
	}
}

// xfccQuote quotes a value as Envoy does in x-forwarded-client-cert, so that a
// distinguished name's own backslash escapes reach subjectCN.
func xfccQuote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// TestMeshPrincipalRules: the sidecar headers are held to the certificate rules.
func TestMeshPrincipalRules(t *testing.T) {
	const id = "spiffe://cluster.local/ns/web/sa/frontend"
	const by = "By=spiffe://cluster.local/ns/gen/sa/genservice;"
	for _, tc := range []struct {
		mode, header, value string
		want                Principal
		problem             string // "" = accepted, "-" = errNoIdentity
	}{
		{MeshIstio, "x-forwarded-client-cert", by + "URI=" + id, Principal{id, "istio-spiffe"}, ""},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=SPIFFE://cluster.local/ns/web/sa/frontend", Principal{id, "istio-spiffe"}, ""},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=urn:x;DNS=a.example", Principal{"a.example", "istio-dns"}, ""},
		{MeshIstio, "x-forwarded-client-cert", by + "Subject=" + xfccQuote(`CN=Caller\, Inc.+UID=7,O=corp`), Principal{"Caller, Inc.", "istio-cn"}, ""},
		{MeshIstio, "x-forwarded-client-cert", by + "Subject=" + xfccQuote(`CN=\C3\89quipe,O=corp`), Principal{"Équipe", "istio-cn"}, ""},
		{MeshIstio, "x-forwarded-client-cert", by + `Subject="O=corp"`, Principal{}, "-"},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=urn:x", Principal{}, "-"},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=" + id + ";URI=urn:x", Principal{}, "2 URI SANs"},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=spiffe://cluster.local/ns/web/sa/x/../frontend", Principal{}, "dot segments"},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=spiffe://cluster.local/ns/web/sa/%66rontend", Principal{}, "not a valid SPIFFE ID"},
		{MeshIstio, "x-forwarded-client-cert", by + "URI=spiffe://cluster.local/" + strings.Repeat("a", 30<<10), Principal{}, "longer than 512 bytes"},
		{MeshIstio, "x-forwarded-client-cert", by + "DNS=" + id, Principal{}, "looks like a SPIFFE ID"},
		{MeshIstio, "x-forwarded-client-cert", by + `DNS="a\"b"`, Principal{}, "not a DNS name"},
		{MeshIstio, "x-forwarded-client-cert", by + `Subject="CN=` + id + `"`, Principal{}, "looks like a SPIFFE ID"},
		{MeshIstio, "x-forwarded-client-cert", by + `Subject="CN=a,CN=b"`, Principal{}, "2 CNs"},
		{MeshIstio, "x-forwarded-client-cert", by + "Subject=" + xfccQuote(`CN=a\07b`), Principal{}, "not printable"},
		{MeshIstio, "x-forwarded-client-cert", by + "Subject=" + xfccQuote(`CN=a\`), Principal{}, "not a distinguished name"},
		{MeshIstio, "x-forwarded-client-cert", by + `Subject="junk"`, Principal{}, "not a distinguished name"},
		{MeshLinkerd, "l5d-client-id", " web.default.serviceaccount.identity.linkerd.cluster.local ", Principal{"web.default.serviceaccount.identity.linkerd.cluster.local", "linkerd"}, ""},
		{MeshLinkerd, "l5d-client-id", id, Principal{}, "looks like a SPIFFE ID"},
		{MeshLinkerd, "l5d-client-id", "web default", Principal{}, "not a DNS name"},
		{MeshLinkerd, "l5d-client-id", "web.default\x7f", Principal{}, "not a DNS name"},
		{MeshLinkerd, "l5d-client-id", strings.Repeat("a.", 3000), Principal{}, "longer than 253 bytes"},
	} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(tc.header, tc.value))
		p, err := meshPrincipal(ctx, tc.mode)
		checkIdentityOutput(t, p, err)
		var ie *IdentityError
		switch {
		case tc.problem == "" && (err != nil || p != tc.want):
			t.Errorf("%s %.100q: %+v, %v; want %+v", tc.mode, tc.value, p, err, tc.want)
		case tc.problem == "-" && !errors.Is(err, errNoIdentity):
			t.Errorf("%s %.100q: %+v, %v; want no identity", tc.mode, tc.value, p, err)
		case tc.problem != "" && tc.problem != "-" && (!errors.As(err, &ie) || !strings.Contains(ie.Problem, tc.problem)):
			t.Errorf("%s %.100q: %+v, %v; want an IdentityError about %q", tc.mode, tc.value, p, err, tc.problem)
		}
	}
}

// FuzzMeshPrincipal: whatever a header holds, mesh mode yields a bounded principal that
// is valid for its source, no identity, or a short printable problem; never a panic.
func FuzzMeshPrincipal(f *testing.F) {
	for _, s := range []string{
		`By=spiffe://cluster.local/ns/gen/sa/genservice;URI=spiffe://cluster.local/ns/web/sa/frontend`,
		`By=spiffe://a;URI=spiffe://first,By=spiffe://b;Subject="CN=caller,OU=x;y=\"z\"";DNS=a.example;DNS=b`,
		`Subject="CN=\C3\89quipe\, Inc.+UID=1,O=corp"`, `Subject="CN=spiffe://td/x"`, `DNS=spiffe://td/x`,
		`URI=spiffe://td/a/../b`, `URI=SPIFFE://td/a;URI=urn:x`, `Subject="CN=a\"`,
		"web.default.serviceaccount.identity.linkerd.cluster.local", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		for _, tc := range []struct{ mode, header string }{{MeshIstio, "x-forwarded-client-cert"}, {MeshLinkerd, "l5d-client-id"}} {
			ctx := metadata.NewIncomingContext(context.Background(), metadata.MD{tc.header: {h}})
			p, err := meshPrincipal(ctx, tc.mode)
			checkIdentityOutput(t, p, err)
		}
		if cn, n, err := subjectCN(h); err == nil && n == 0 && cn != "" {
			t.Fatalf("subjectCN(%q) = %q with no CN", h, cn)
		}
	})
}
