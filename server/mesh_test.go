package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
)

func TestParseXFCC(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   []map[string][]string
		err    bool
	}{
		{
			name:   "istio single element",
			header: `By=spiffe://cluster.local/ns/gen/sa/genservice;Hash=abc123;Subject="";URI=spiffe://cluster.local/ns/web/sa/frontend`,
			want: []map[string][]string{{
				"by": {"spiffe://cluster.local/ns/gen/sa/genservice"}, "hash": {"abc123"}, "subject": {""},
				"uri": {"spiffe://cluster.local/ns/web/sa/frontend"},
			}},
		},
		{
			name:   "two hops, quoted subject with commas, repeated DNS",
			header: `By=spiffe://a;URI=spiffe://first,By=spiffe://b;Subject="CN=caller,OU=x;y=\"z\"";DNS=a.example;DNS=b.example`,
			want: []map[string][]string{
				{"by": {"spiffe://a"}, "uri": {"spiffe://first"}},
				{"by": {"spiffe://b"}, "subject": {`CN=caller,OU=x;y="z"`}, "dns": {"a.example", "b.example"}},
			},
		},
		{name: "empty", header: "", want: nil},
		{name: "unterminated quote", header: `URI="spiffe://x`, err: true},
		{name: "key without value", header: `URI`, err: true},
		{name: "garbage after quoted value", header: `Subject="a"b`, err: true},
		{name: "empty key", header: `=x`, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseXFCC(tt.header)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d elements %v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				for k, v := range tt.want[i] {
					if strings.Join(got[i][k], "|") != strings.Join(v, "|") {
						t.Errorf("element %d key %s = %q, want %q", i, k, got[i][k], v)
					}
				}
				if len(got[i]) != len(tt.want[i]) {
					t.Errorf("element %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestMeshPrincipal(t *testing.T) {
	tests := []struct {
		mode, header, value string
		want                string
		ok                  bool
	}{
		{MeshIstio, "x-forwarded-client-cert", `By=spiffe://gen;URI=spiffe://spoofed,By=spiffe://gen;URI=spiffe://cluster.local/ns/web/sa/frontend`, "spiffe://cluster.local/ns/web/sa/frontend", true},
		{MeshIstio, "x-forwarded-client-cert", `By=spiffe://gen;DNS=caller.example`, "caller.example", true},
		{MeshIstio, "x-forwarded-client-cert", `By=spiffe://gen;Subject="CN=legacy-caller,O=corp"`, "legacy-caller", true},
		{MeshIstio, "x-forwarded-client-cert", `URI="broken`, "", false},
		{MeshIstio, "l5d-client-id", "web.default.serviceaccount.identity.linkerd.cluster.local", "", false},
		{MeshLinkerd, "l5d-client-id", "web.default.serviceaccount.identity.linkerd.cluster.local", "web.default.serviceaccount.identity.linkerd.cluster.local", true},
		{MeshLinkerd, "x-forwarded-client-cert", `URI=spiffe://x`, "", false},
		{MeshNone, "x-forwarded-client-cert", `URI=spiffe://x`, "", false},
	}
	for _, tt := range tests {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(tt.header, tt.value))
		p, err := meshPrincipal(ctx, tt.mode)
		if ok := err == nil; ok != tt.ok || p.Name != tt.want {
			t.Errorf("mode %q %s=%q: got %q %v, want %q %v", tt.mode, tt.header, tt.value, p.Name, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseXFCC(f *testing.F) {
	for _, s := range []string{
		`By=spiffe://cluster.local/ns/gen/sa/genservice;Hash=abc;Subject="";URI=spiffe://cluster.local/ns/web/sa/frontend`,
		`By=spiffe://a;URI=spiffe://first,By=spiffe://b;Subject="CN=caller,OU=x;y=\"z\"";DNS=a;DNS=b`,
		`Cert="-----BEGIN%20CERTIFICATE-----%0A";Chain="x"`,
		`URI="unterminated`, `;;,,`, `=`, `a=b;`, `a="\`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		elems, err := ParseXFCC(h)
		if err != nil {
			return
		}
		total := 0
		for _, e := range elems {
			for k, vs := range e {
				if k == "" || k != strings.ToLower(k) {
					t.Fatalf("bad key %q", k)
				}
				for _, v := range vs {
					total += len(v)
				}
			}
			p, err := xfccPrincipal(e)
			checkIdentityOutput(t, p, err)
		}
		if total > len(h) {
			t.Fatalf("values (%d bytes) longer than the header (%d)", total, len(h))
		}
	})
}
