package server_test

// Mesh mode end to end: a sidecar (Istio, Linkerd) terminates mTLS and passes the
// caller's identity in a header to a plaintext listener. Outside mesh mode those
// headers are just caller-controlled metadata and must be ignored.

import (
	"context"
	"genservice/internal/secretdir"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"genservice/authz"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

const (
	rotMeshFrontend = "spiffe://cluster.local/ns/web/sa/frontend"
	rotMeshOther    = "spiffe://cluster.local/ns/web/sa/other"
	rotMeshBy       = "spiffe://cluster.local/ns/gen/sa/genservice"
	rotLinkerdID    = "frontend.web.serviceaccount.identity.linkerd.cluster.local"
)

// rotMeshEnv is genservice in mesh mode on a plaintext loopback listener, with a policy
// that allows exactly the frontend (Istio SPIFFE ID) and the Linkerd identity.
type rotMeshEnv struct {
	sim  *livepeertest.Server
	logs *rotLogBuf
	addr string
	conn *grpc.ClientConn
	srv  *server.Server
}

func rotStartMesh(t *testing.T, mesh string) *rotMeshEnv {
	t.Helper()
	env := &rotMeshEnv{logs: &rotLogBuf{}}
	var err error
	if env.sim, err = livepeertest.New(livepeertest.Config{APIKey: rotKey}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.sim.Close)
	k, _ := livepeer.ParseKey(rotKey)
	up, err := livepeer.New(livepeer.Config{GatewayURL: env.sim.URL(), Keys: livepeer.StaticKey(k)})
	if err != nil {
		t.Fatal(err)
	}
	policy := secretdir.New(t, filepath.Join(t.TempDir(), "policy"), map[string][]byte{"policy.yaml": []byte(
		"rules:\n  - principals: [\"" + rotMeshFrontend + "\", \"" + rotLinkerdID + "\"]\n    methods: [TextToImage]\n")})
	enf, err := authz.New(authz.Config{Path: policy.Path("policy.yaml"), KnownMethods: server.MethodNames(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// No TLS files at all: mesh mode ignores them.
	if env.srv, err = server.New(server.Config{Upstream: up, Logger: env.logs.logger(), Mesh: mesh, Policy: enf}); err != nil {
		t.Fatalf("server.New in mesh mode %q: %v", mesh, err)
	}
	env.addr = rotServe(t, env.srv)
	env.conn = rotDial(t, env.addr, insecure.NewCredentials())
	return env
}

// call makes a TextToImage with the given metadata pairs and returns the principal
// the call's log line reports.
func (env *rotMeshEnv) call(t *testing.T, kv ...string) (principal string, err error) {
	t.Helper()
	id := "mesh-" + strings.ReplaceAll(t.Name(), "/", "-") + "-" + time.Now().Format("150405.000000000")
	ctx := metadata.AppendToOutgoingContext(rotCtx(t, 5*time.Second), append([]string{"x-request-id", id}, kv...)...)
	err = rotT2I(ctx, env.conn)
	line := env.logs.rotCallLine(t, id)
	p, _ := line["principal"].(string)
	return p, err
}

func TestMeshIstioXFCC(t *testing.T) {
	env := rotStartMesh(t, server.MeshIstio)

	// The sidecar's element: By is genservice's own identity, URI the verified peer.
	p, err := env.call(t, "x-forwarded-client-cert", "By="+rotMeshBy+";Hash=4f3c2b1a;Subject=\"\";URI="+rotMeshFrontend)
	if err != nil {
		t.Fatalf("call with the sidecar's header: %v", err)
	}
	if p != rotMeshFrontend {
		t.Errorf("principal = %q, want %q", p, rotMeshFrontend)
	}

	// Envoy appends one element per hop: the last one (added by our sidecar) counts.
	// A caller-supplied earlier element claiming to be the frontend does not help.
	p, err = env.call(t, "x-forwarded-client-cert",
		"By="+rotMeshBy+";URI="+rotMeshFrontend+",By="+rotMeshBy+";URI="+rotMeshOther)
	_, info := rotStatus(t, err, codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
	if p != rotMeshOther || info.GetMetadata()["principal"] != rotMeshOther {
		t.Errorf("principal = %q (metadata %v), want the last element's %q", p, info.GetMetadata(), rotMeshOther)
	}
	// And the reverse order is allowed.
	if p, err = env.call(t, "x-forwarded-client-cert",
		"By="+rotMeshBy+";URI="+rotMeshOther+",By="+rotMeshBy+";URI="+rotMeshFrontend); err != nil || p != rotMeshFrontend {
		t.Errorf("last element frontend: principal %q, %v", p, err)
	}

	// Quoted values with separators inside, DNS fallback.
	if p, err = env.call(t, "x-forwarded-client-cert", `By=`+rotMeshBy+`;Subject="CN=frontend,OU=web;x";URI=`+rotMeshFrontend); err != nil || p != rotMeshFrontend {
		t.Errorf("quoted subject: principal %q, %v", p, err)
	}

	// No header: the sidecar is not enforcing mTLS for this port.
	for _, kv := range [][]string{
		nil,
		{"x-forwarded-client-cert", ""},
		{"x-forwarded-client-cert", `URI="unterminated`},
		{"x-forwarded-client-cert", "By=" + rotMeshBy + ";Hash=abc"}, // no identity in it
		{"l5d-client-id", rotLinkerdID},                              // the other mesh's header
	} {
		p, err := env.call(t, kv...)
		st, info := rotStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
		if !strings.Contains(st.Message(), "sidecar") || !strings.Contains(st.Message(), "istio") || !strings.Contains(st.Message(), "x-forwarded-client-cert") {
			t.Errorf("%v: message %q should explain the sidecar sent no identity", kv, st.Message())
		}
		if info.GetMetadata()["mesh"] != "istio" {
			t.Errorf("%v: metadata %v", kv, info.GetMetadata())
		}
		if p != "" {
			t.Errorf("%v: principal %q, want none", kv, p)
		}
	}
	// Health needs no identity (kubelet probes through the sidecar carry none).
	if _, err := healthpb.NewHealthClient(env.conn).Check(rotCtx(t, 5*time.Second), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without identity: %v", err)
	}
	// WatchTLS does nothing in mesh mode: it returns at once.
	done := make(chan struct{})
	go func() { env.srv.WatchTLS(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Error("WatchTLS did not return in mesh mode")
	}
	if hits := env.sim.Hits(livepeer.PipelineTextToImage); hits != 3 {
		t.Errorf("gateway hits = %d, want 3 (the allowed calls only)", hits)
	}
}

func TestMeshLinkerd(t *testing.T) {
	env := rotStartMesh(t, server.MeshLinkerd)
	p, err := env.call(t, "l5d-client-id", rotLinkerdID)
	if err != nil || p != rotLinkerdID {
		t.Fatalf("l5d-client-id: principal %q, %v", p, err)
	}
	p, err = env.call(t, "l5d-client-id", "other.web.serviceaccount.identity.linkerd.cluster.local")
	rotStatus(t, err, codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
	if p != "other.web.serviceaccount.identity.linkerd.cluster.local" {
		t.Errorf("principal = %q", p)
	}
	for _, kv := range [][]string{
		nil,
		{"l5d-client-id", "   "},
		{"x-forwarded-client-cert", "By=" + rotMeshBy + ";URI=" + rotMeshFrontend}, // Istio's header means nothing here
	} {
		_, err := env.call(t, kv...)
		st, info := rotStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
		if !strings.Contains(st.Message(), "linkerd") || !strings.Contains(st.Message(), "l5d-client-id") || !strings.Contains(st.Message(), "sidecar") {
			t.Errorf("%v: message %q", kv, st.Message())
		}
		if info.GetMetadata()["mesh"] != "linkerd" {
			t.Errorf("%v: metadata %v", kv, info.GetMetadata())
		}
	}
}

func TestMeshUnknownModeRefused(t *testing.T) {
	k, _ := livepeer.ParseKey(rotKey)
	up, err := livepeer.New(livepeer.Config{GatewayURL: "http://127.0.0.1:1", Keys: livepeer.StaticKey(k)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = server.New(server.Config{Upstream: up, Mesh: "consul"})
	if err == nil || !strings.Contains(err.Error(), "consul") {
		t.Errorf("unknown mesh mode: %v", err)
	}
}

func TestMeshHeadersIgnoredOutsideMeshMode(t *testing.T) {
	// A normal mTLS server: the principal is the client certificate's, whatever
	// identity headers the caller sends.
	const certPrincipal = "spiffe://genservice.test/ns/web/sa/caller"
	pe := rotStartWithPolicy(t, "rules:\n  - principals: [\""+rotMeshFrontend+"\", \""+rotLinkerdID+"\"]\n    methods: [TextToImage]\n", nil)
	conn := pe.dial(t, pe.client(t, certPrincipal))
	for i, kv := range [][]string{
		{"x-forwarded-client-cert", "By=" + rotMeshBy + ";URI=" + rotMeshFrontend},
		{"l5d-client-id", rotLinkerdID},
	} {
		id := "no-mesh-" + string(rune('a'+i))
		ctx := metadata.AppendToOutgoingContext(rotCtx(t, 5*time.Second), append([]string{"x-request-id", id}, kv...)...)
		_, info := rotStatus(t, rotT2I(ctx, conn), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
		if got := info.GetMetadata()["principal"]; got != certPrincipal {
			t.Errorf("%s header: principal %q, want the certificate's %q", kv[0], got, certPrincipal)
		}
		if got := pe.logs.rotCallLine(t, id)["principal"]; got != certPrincipal {
			t.Errorf("%s header: log principal %v", kv[0], got)
		}
	}
	// Without a client certificate, an identity header does not authenticate either.
	anon := pe.dial(t, nil)
	ctx := metadata.AppendToOutgoingContext(rotCtx(t, 5*time.Second), "x-forwarded-client-cert", "By="+rotMeshBy+";URI="+rotMeshFrontend)
	rotStatus(t, rotT2I(ctx, anon), codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
	if hits := pe.sim.Hits(livepeer.PipelineTextToImage); hits != 0 {
		t.Errorf("gateway hits = %d, want 0", hits)
	}
}

// rotXFCCQuote quotes a value the way Envoy does for Subject and similar fields.
func rotXFCCQuote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// FuzzXFCCRoundTrip: any values, quoted, survive ParseXFCC exactly and in their
// elements; the element count is what was built. (FuzzParseXFCC in mesh_test.go checks
// arbitrary input does not break the parser; this checks it parses what Envoy writes.)
func FuzzXFCCRoundTrip(f *testing.F) {
	f.Add(rotMeshBy, rotMeshFrontend, `CN=frontend,OU=web;x="y"`, "a.example")
	f.Add("", "", "", "")
	f.Add(`\`, `"`, `\"`, ",;=")
	f.Add(" lead", "trail ", "  ", "\t")
	f.Fuzz(func(t *testing.T, by, uri, subject, dns string) {
		h := "By=" + rotXFCCQuote(by) + ";URI=" + rotXFCCQuote(uri) + "," +
			"By=" + rotXFCCQuote(by) + ";Subject=" + rotXFCCQuote(subject) + ";URI=" + rotXFCCQuote(uri) + ";DNS=" + rotXFCCQuote(dns) + ";DNS=" + rotXFCCQuote(dns+"2")
		elems, err := server.ParseXFCC(h)
		if err != nil {
			t.Fatalf("ParseXFCC(%q): %v", h, err)
		}
		if len(elems) != 2 {
			t.Fatalf("ParseXFCC(%q): %d elements, want 2", h, len(elems))
		}
		want := []map[string][]string{
			{"by": {by}, "uri": {uri}},
			{"by": {by}, "subject": {subject}, "uri": {uri}, "dns": {dns, dns + "2"}},
		}
		for i, w := range want {
			if len(elems[i]) != len(w) {
				t.Fatalf("element %d = %q, want %q", i, elems[i], w)
			}
			for k, vs := range w {
				got := elems[i][k]
				if len(got) != len(vs) {
					t.Fatalf("element %d key %s = %q, want %q", i, k, got, vs)
				}
				for j := range vs {
					if got[j] != vs[j] {
						t.Fatalf("element %d key %s = %q, want %q (header %q)", i, k, got, vs, h)
					}
				}
			}
		}
	})
}
