package server

import (
	"context"
	"errors"
	"net/url"
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

// meshPrincipal reads the caller's identity from the sidecar's header.
func meshPrincipal(ctx context.Context, mode string) (Principal, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return Principal{}, false
	}
	switch mode {
	case MeshIstio:
		vals := md.Get("x-forwarded-client-cert")
		if len(vals) == 0 {
			return Principal{}, false
		}
		// Envoy appends one element per hop; the last was added by our own sidecar and
		// describes the peer it verified.
		elems, err := ParseXFCC(vals[len(vals)-1])
		if err != nil || len(elems) == 0 {
			return Principal{}, false
		}
		return xfccPrincipal(elems[len(elems)-1])
	case MeshLinkerd:
		vals := md.Get("l5d-client-id")
		if len(vals) == 0 || strings.TrimSpace(vals[len(vals)-1]) == "" {
			return Principal{}, false
		}
		return Principal{Name: strings.TrimSpace(vals[len(vals)-1]), Source: "linkerd"}, true
	}
	return Principal{}, false
}

// XFCCElement is one element of an x-forwarded-client-cert header: its keys (By, Hash,
// Cert, Chain, Subject, URI, DNS) and their values; DNS may repeat.
type XFCCElement map[string][]string

// xfccPrincipal picks the client identity from an element: the SPIFFE URI, else the
// first DNS SAN, else the subject's CN.
func xfccPrincipal(e XFCCElement) (Principal, bool) {
	for _, u := range e["uri"] {
		if pu, err := url.Parse(u); err == nil && strings.EqualFold(pu.Scheme, "spiffe") {
			return Principal{Name: u, Source: "istio-spiffe"}, true
		}
	}
	for _, u := range e["uri"] {
		if u != "" {
			return Principal{Name: u, Source: "istio-uri"}, true
		}
	}
	for _, d := range e["dns"] {
		if d != "" {
			return Principal{Name: d, Source: "istio-dns"}, true
		}
	}
	for _, s := range e["subject"] {
		for _, part := range strings.Split(s, ",") {
			if cn, ok := strings.CutPrefix(strings.TrimSpace(part), "CN="); ok && cn != "" {
				return Principal{Name: cn, Source: "istio-cn"}, true
			}
		}
	}
	return Principal{}, false
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
