package server

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Mesh modes: a sidecar terminates mTLS and tells genservice who the caller is in a
// header. Only in these modes are the headers trusted; otherwise they are ignored, since
// any caller could send them.
const (
	MeshNone    = ""
	MeshIstio   = "istio"
	MeshLinkerd = "linkerd"
)

// meshPrincipal reads the caller's identity from the sidecar's header: errNoIdentity
// when there is none, an *IdentityError when the header names no usable caller. The
// header is held to the rules a certificate is (PrincipalOf): the sidecar copies it
// from the peer's certificate, and a principal from it is a log field and a metric
// label like any other.
func meshPrincipal(ctx context.Context, mode string) (Principal, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return Principal{}, errNoIdentity
	}
	switch mode {
	case MeshIstio:
		vals := md.Get("x-forwarded-client-cert")
		if len(vals) == 0 {
			return Principal{}, errNoIdentity
		}
		// Envoy appends one element per hop; the last was added by our own sidecar and
		// describes the peer it verified.
		elems, err := ParseXFCC(vals[len(vals)-1])
		if err != nil || len(elems) == 0 {
			return Principal{}, errNoIdentity
		}
		return xfccPrincipal(elems[len(elems)-1])
	case MeshLinkerd:
		vals := md.Get("l5d-client-id")
		if len(vals) == 0 || strings.TrimSpace(vals[len(vals)-1]) == "" {
			return Principal{}, errNoIdentity
		}
		// Linkerd identities are DNS-like names
		// (sa.ns.serviceaccount.identity.linkerd.cluster.local), never SPIFFE IDs.
		return principal("linkerd")(dnsName(strings.TrimSpace(vals[len(vals)-1]), "l5d-client-id"))
	}
	return Principal{}, errNoIdentity
}

// XFCCElement is one element of an x-forwarded-client-cert header: its keys (By, Hash,
// Cert, Chain, Subject, URI, DNS) and their values; DNS and URI may repeat.
type XFCCElement map[string][]string

// xfccPrincipal picks the client identity from an element by the certificate rules: the
// SPIFFE URI (more than one URI is refused; another scheme is ignored), else the first
// DNS SAN, else the subject's CN. An element naming none of them is no identity.
func xfccPrincipal(e XFCCElement) (Principal, error) {
	var uris []string
	for _, u := range e["uri"] {
		if u != "" {
			uris = append(uris, u)
		}
	}
	if len(uris) > 1 {
		return Principal{}, problemf("x-forwarded-client-cert has %d URI SANs; a SPIFFE X.509-SVID has exactly one", len(uris))
	}
	if len(uris) == 1 && hasSPIFFEScheme(uris[0]) {
		// Schemes are case-insensitive, and crypto/x509 lowercases them: do the same,
		// so a certificate means the same directly and behind a sidecar.
		u := "spiffe" + uris[0][len("spiffe"):]
		return principal("istio-spiffe")(spiffeName(u, "x-forwarded-client-cert URI"))
	}
	for _, d := range e["dns"] {
		if d != "" {
			return principal("istio-dns")(dnsName(d, "x-forwarded-client-cert DNS"))
		}
	}
	for _, s := range e["subject"] {
		cn, n, err := subjectCN(s)
		switch {
		case err != nil:
			return Principal{}, problemf("x-forwarded-client-cert Subject %s is not a distinguished name: %v", quoteName(s), err)
		case n > 1:
			return Principal{}, problemf("x-forwarded-client-cert Subject has %d CNs; a CN used as the principal must be the only one", n)
		case cn != "":
			return principal("istio-cn")(commonName(cn, "x-forwarded-client-cert subject CN"))
		}
	}
	return Principal{}, errNoIdentity
}

// subjectCN returns the CN value of a distinguished name in the RFC 4514 form Envoy
// writes (OpenSSL's RFC 2253 printing: "CN=caller,OU=web,O=corp", special characters
// and non-ASCII bytes backslash-escaped), and how many CN attributes it has.
func subjectCN(dn string) (cn string, count int, err error) {
	i := 0
	for i < len(dn) {
		eq := strings.IndexByte(dn[i:], '=')
		if eq < 0 {
			return "", 0, errors.New("an attribute without '='")
		}
		typ := strings.TrimSpace(dn[i : i+eq])
		i += eq + 1
		var val []byte
		for i < len(dn) && dn[i] != ',' && dn[i] != '+' {
			c := dn[i]
			if c != '\\' {
				val = append(val, c)
				i++
				continue
			}
			if i+1 >= len(dn) {
				return "", 0, errors.New("a trailing backslash")
			}
			if i+2 < len(dn) && isHex(dn[i+1]) && isHex(dn[i+2]) {
				h, _ := strconv.ParseUint(dn[i+1:i+3], 16, 8)
				val = append(val, byte(h))
				i += 3
				continue
			}
			val = append(val, dn[i+1]) // an escaped special character: , + " \ < > ; = # space
			i += 2
		}
		if i < len(dn) {
			i++ // the separator
		}
		if strings.EqualFold(typ, "CN") || typ == "2.5.4.3" {
			if count == 0 {
				cn = string(val)
			}
			count++
		}
	}
	return cn, count, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

var errXFCC = errors.New("malformed x-forwarded-client-cert")

// ParseXFCC parses an x-forwarded-client-cert header: elements separated by commas,
// key=value pairs separated by semicolons, values optionally double-quoted (quoted
// values may contain , ; = and backslash-escaped quotes). Keys are returned lowercase.
func ParseXFCC(h string) ([]XFCCElement, error) {
	var elems []XFCCElement
	cur := XFCCElement{}
	i := 0
	for i <= len(h) {
		// key
		j := i
		for j < len(h) && h[j] != '=' && h[j] != ',' && h[j] != ';' {
			j++
		}
		key := strings.ToLower(strings.TrimSpace(h[i:j]))
		if j >= len(h) || h[j] != '=' {
			if key != "" {
				return nil, errXFCC
			}
			// empty pair (e.g. trailing separator)
			if j < len(h) && h[j] == ',' {
				if len(cur) > 0 {
					elems = append(elems, cur)
				}
				cur = XFCCElement{}
			}
			i = j + 1
			if j >= len(h) {
				break
			}
			continue
		}
		if key == "" {
			return nil, errXFCC
		}
		// value
		j++
		var val strings.Builder
		if j < len(h) && h[j] == '"' {
			j++
			closed := false
			for j < len(h) {
				c := h[j]
				if c == '\\' && j+1 < len(h) {
					val.WriteByte(h[j+1])
					j += 2
					continue
				}
				if c == '"' {
					closed = true
					j++
					break
				}
				val.WriteByte(c)
				j++
			}
			if !closed {
				return nil, errXFCC
			}
			for j < len(h) && h[j] == ' ' {
				j++
			}
			if j < len(h) && h[j] != ';' && h[j] != ',' {
				return nil, errXFCC
			}
		} else {
			k := j
			for k < len(h) && h[k] != ';' && h[k] != ',' {
				k++
			}
			val.WriteString(strings.TrimSpace(h[j:k]))
			j = k
		}
		cur[key] = append(cur[key], val.String())
		if j < len(h) && h[j] == ',' {
			elems = append(elems, cur)
			cur = XFCCElement{}
		}
		if j >= len(h) {
			break
		}
		i = j + 1
	}
	if len(cur) > 0 {
		elems = append(elems, cur)
	}
	return elems, nil
}
