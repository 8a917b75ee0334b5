package server

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Principal is the verified identity of a caller.
type Principal struct {
	// Name is the SPIFFE ID (spiffe:// URI SAN) if present, else the first DNS SAN, else
	// the subject common name.
	Name string
	// Source says where Name came from: "spiffe", "dns", "cn" (or a mesh header later).
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

// PrincipalOf derives the principal from a verified leaf certificate.
func PrincipalOf(cert *x509.Certificate) (Principal, bool) {
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			return Principal{Name: u.String(), Source: "spiffe"}, true
		}
	}
	if len(cert.DNSNames) > 0 && cert.DNSNames[0] != "" {
		return Principal{Name: cert.DNSNames[0], Source: "dns"}, true
	}
	if cert.Subject.CommonName != "" {
		return Principal{Name: cert.Subject.CommonName, Source: "cn"}, true
	}
	return Principal{}, false
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
	var p Principal
	var ok bool
	if s.mesh != MeshNone {
		p, ok = meshPrincipal(ctx, s.mesh)
	} else {
		p, ok = peerPrincipal(ctx)
	}
	if !ok {
		return Principal{}, errNoIdentity
	}
	return p, nil
}

// peerPrincipal returns the principal of the connection's verified client certificate.
// The TLS layer has already verified the chain against the client CA (the listener uses
// VerifyClientCertIfGiven), so a certificate present here is trusted; a connection
// without one has no principal.
func peerPrincipal(ctx context.Context) (Principal, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Principal{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Principal{}, false
	}
	return PrincipalOf(info.State.VerifiedChains[0][0])
}

// isHealthMethod reports methods that need no client certificate: probes and load
// balancers check health without one.
func isHealthMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/")
}
