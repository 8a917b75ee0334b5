package server

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Principal is the verified identity of a caller.
type Principal struct {
	// Name is the SPIFFE ID (spiffe:// URI SAN) if present, else the first DNS SAN, else
	// the subject common name.
	Name string
	// Source says where Name came from: "spiffe", "dns", "cn", or in mesh mode
	// "istio-spiffe", "istio-dns", "istio-cn", "linkerd".
	Source string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller's principal, if one was established.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// maxPrincipalLen bounds a principal. The principal is a log field and the value of the
// principal label of genservice_call_errors_total, so its size must be bounded here, not
// by whatever a CA or a sidecar header happens to carry (a 30 KB URI would become a
// 30 KB label on every scrape). 512 bytes holds every DNS name (253) and the SPIFFE IDs
// Kubernetes workloads get (a namespace of up to 63 bytes and a service account of up to
// 253 under a trust domain of up to about 170).
const maxPrincipalLen = 512

// Where a certificate's principal came from.
const (
	sourceSPIFFE = "spiffe"
	sourceDNS    = "dns"
	sourceCN     = "cn"
)

// PrincipalOf derives the principal from a verified leaf certificate, or says with an
// *IdentityError why the certificate names no usable caller. The rules (DESIGN §5):
//
//   - a CA certificate (CA:TRUE, or allowed to sign certificates) is not a caller;
//   - more than one URI SAN is refused: an X.509-SVID has exactly one;
//   - a spiffe: URI SAN is the principal, and must be a valid SPIFFE ID naming a
//     workload (not just a trust domain);
//   - a URI SAN of another scheme is no identity genservice knows: it is ignored, like IP
//     and e-mail SANs, and the DNS SAN or CN decides;
//   - else the first DNS SAN, which must be a DNS name;
//   - else the subject CN, which must be one printable, bounded value.
//
// A DNS SAN or CN that spells a SPIFFE ID is refused rather than taken as written: the
// policy would otherwise grant it the SPIFFE ID's rules and share its rate bucket, and
// a CA that lets requesters choose their CN or DNS names would be handing out SPIFFE
// IDs. Valid DNS names and CNs keep their names unprefixed, so existing policies mean
// what they meant.
func PrincipalOf(cert *x509.Certificate) (Principal, error) {
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign != 0 {
		return Principal{}, &IdentityError{"the client certificate is a CA certificate (it may sign certificates), not a caller's"}
	}
	if n := len(cert.URIs); n > 1 {
		return Principal{}, problemf("the client certificate has %d URI SANs; a SPIFFE X.509-SVID has exactly one", n)
	}
	// crypto/x509 parses URI SANs with net/url, which lowercases the scheme.
	if len(cert.URIs) == 1 && strings.EqualFold(cert.URIs[0].Scheme, "spiffe") {
		return principal(sourceSPIFFE)(spiffeName(cert.URIs[0].String(), "URI SAN"))
	}
	if len(cert.DNSNames) > 0 {
		return principal(sourceDNS)(dnsName(cert.DNSNames[0], "DNS SAN"))
	}
	cns := 0
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns > 1 {
		// crypto/x509 keeps the last CN, other stacks (and Envoy's subject string) show
		// the first: which one is the caller would depend on who reads the certificate.
		return Principal{}, problemf("the client certificate's subject has %d CNs; a CN used as the principal must be the only one", cns)
	}
	if cert.Subject.CommonName != "" {
		return principal(sourceCN)(commonName(cert.Subject.CommonName, "subject CN"))
	}
	return Principal{}, &IdentityError{"the client certificate names no caller: it has no SPIFFE URI SAN, no DNS SAN and an empty subject CN"}
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// principal turns a checked name into a Principal from source, or passes the check's
// error on with no principal.
func principal(source string) func(string, error) (Principal, error) {
	return func(name string, err error) (Principal, error) {
		if err != nil {
			return Principal{}, err
		}
		return Principal{Name: name, Source: source}, nil
	}
}

func problemf(format string, args ...any) *IdentityError {
	return &IdentityError{Problem: fmt.Sprintf(format, args...)}
}

// quoteName quotes a presented name for a problem message: ASCII only (no control or
// invisible characters reach the caller or the log) and at most 64 bytes of it, so
// ErrorInfo stays well inside the status size budget.
func quoteName(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.QuoteToASCII(s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.QuoteToASCII(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// hasSPIFFEScheme reports whether s starts with the spiffe: scheme, in any case.
func hasSPIFFEScheme(s string) bool {
	return len(s) >= len("spiffe:") && strings.EqualFold(s[:len("spiffe:")], "spiffe:")
}

// spiffeName checks a SPIFFE ID against the SPIFFE ID rules (go-spiffe's parser: no
// dot segments, percent-encoding, empty segments, trailing slash, query, fragment,
// userinfo or port; a lowercase trust domain) and that it names a workload. Checking
// the syntax is what keeps prefix rules sound: "…/sa/assistant/../web" must not count
// as a workload under "…/sa/assistant/*".
func spiffeName(raw, what string) (string, error) {
	if len(raw) > maxPrincipalLen {
		return "", problemf("%s %s is longer than %d bytes", what, quoteName(raw), maxPrincipalLen)
	}
	id, err := spiffeid.FromString(raw)
	if err != nil {
		return "", problemf("%s %s is not a valid SPIFFE ID: %v", what, quoteName(raw), err)
	}
	if id.Path() == "" {
		return "", problemf("%s %s names a trust domain, not a workload", what, quoteName(raw))
	}
	return id.String(), nil
}

// dnsName checks a name that must be a DNS name: the TLS verifier checks the chain, not
// the syntax of a client's DNS SANs, and a sidecar header is just text.
func dnsName(s, what string) (string, error) {
	switch {
	case len(s) > 253:
		return "", problemf("%s %s is longer than 253 bytes, the longest DNS name", what, quoteName(s))
	case hasSPIFFEScheme(s):
		return "", problemf("%s %s looks like a SPIFFE ID but is not one: only a URI SAN is a SPIFFE ID", what, quoteName(s))
	case !isDNSName(s):
		return "", problemf("%s %s is not a DNS name (letters, digits and hyphens in dot-separated labels)", what, quoteName(s))
	}
	return s, nil
}

// isDNSName reports whether s is a host name in the preferred name syntax (RFC 1034
// §3.5, with RFC 1123's leading digits): no wildcard, no trailing dot, no empty labels.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// commonName checks a CN used as the principal: bounded, printable (no control, format
// or non-ASCII space characters that would make two names look alike in a policy or a
// log), no surrounding spaces, and not a URI, since URIs count only as URI SANs.
func commonName(s, what string) (string, error) {
	switch {
	case len(s) > maxPrincipalLen:
		return "", problemf("%s %s is longer than %d bytes", what, quoteName(s), maxPrincipalLen)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }):
		return "", problemf("%s %s has characters that are not printable", what, quoteName(s))
	case strings.HasPrefix(s, " ") || strings.HasSuffix(s, " "):
		return "", problemf("%s %s begins or ends with a space", what, quoteName(s))
	case hasSPIFFEScheme(s):
		return "", problemf("%s %s looks like a SPIFFE ID but is not one: only a URI SAN is a SPIFFE ID", what, quoteName(s))
	case strings.Contains(s, "://"):
		return "", problemf("%s %s looks like a URI but is not one: only a URI SAN is a URI", what, quoteName(s))
	}
	return s, nil
}

// errNoIdentity means the peer presented no verified identity at all: no client
// certificate, or in mesh mode no identity header from the sidecar.
var errNoIdentity = errors.New("no verified caller identity")

// IdentityError means the peer presented a verified certificate (or a mesh header) that
// does not make a usable principal; Problem says why, in words for the caller.
type IdentityError struct {
	Problem string
}

func (e *IdentityError) Error() string { return "unusable caller identity: " + e.Problem }

// identify returns the caller's principal, errNoIdentity, or an *IdentityError. It is
// the one place both the tap (before the message is read) and the interceptors ask.
func (s *Server) identify(ctx context.Context) (Principal, error) {
	if s.mesh != MeshNone {
		return meshPrincipal(ctx, s.mesh)
	}
	return peerPrincipal(ctx)
}

// peerPrincipal returns the principal of the connection's verified client certificate.
// The TLS layer has already verified the chain against the client CA (the listener uses
// VerifyClientCertIfGiven), so a certificate present here is trusted; a connection
// without one has no principal (errNoIdentity); one that names no usable caller gets an
// *IdentityError from PrincipalOf.
func peerPrincipal(ctx context.Context) (Principal, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Principal{}, errNoIdentity
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Principal{}, errNoIdentity
	}
	return PrincipalOf(info.State.VerifiedChains[0][0])
}

// isHealthMethod reports methods that need no client certificate: probes and load
// balancers check health without one.
func isHealthMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}
