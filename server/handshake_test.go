package server

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"genservice/internal/certgen"
)

// TestHandshakeReason runs real crypto/tls handshakes over loopback against the
// listener's TLS configuration and checks the reason each failure is logged with: the
// error text and types are crypto/tls's own, not strings written for the test.
func TestHandshakeReason(t *testing.T) {
	ca, err := certgen.NewCA("reason CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.Issue(certgen.LeafOptions{DNSNames: []string{"localhost"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(certgen.LeafOptions{URIs: []string{"spiffe://reason.test/ns/a/sa/b"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := certgen.NewCA("foreign CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := foreignCA.Issue(certgen.LeafOptions{URIs: []string{"spiffe://reason.test/ns/a/sa/b"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
	for path, data := range map[string][]byte{files.CertFile: srvLeaf.CertPEM, files.KeyFile: srvLeaf.KeyPEM, files.ClientCAFile: ca.CertPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store, err := newCertStore(files, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	serverConf := store.config()

	base := func() *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{"h2"},
			Certificates: []tls.Certificate{client.TLS}}
	}
	for _, c := range []struct {
		name   string
		client func(net.Conn)
		want   string // "" = the handshake succeeds
	}{
		{"TLS 1.2 only client", func(c net.Conn) {
			conf := base()
			conf.MaxVersion = tls.VersionTLS12
			_ = tls.Client(c, conf).Handshake()
		}, "client does not support TLS 1.3"},
		{"client certificate from a foreign CA", func(c net.Conn) {
			conf := base()
			conf.Certificates = nil
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign.TLS, nil }
			_ = tls.Client(c, conf).Handshake()
		}, "client certificate from an unknown CA"},
		{"client does not trust the server", func(c net.Conn) {
			conf := base()
			conf.RootCAs = x509.NewCertPool()
			_ = tls.Client(c, conf).Handshake()
		}, "client rejected the server's certificate"},
		{"client without HTTP/2", func(c net.Conn) {
			conf := base()
			// Not http/1.1: crypto/tls lets that one through for HTTPS servers.
			conf.NextProtos = []string{"spdy/3"}
			_ = tls.Client(c, conf).Handshake()
		}, "client does not offer HTTP/2 (ALPN h2)"},
		{"plaintext client", func(c net.Conn) {
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, "not TLS (plaintext client?)"},
		{"client hangs up", func(c net.Conn) {}, "client closed the connection during the handshake"},
		{"no client certificate", func(c net.Conn) {
			conf := base()
			conf.Certificates = nil
			_ = tls.Client(c, conf).Handshake()
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			cli, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			srv, err := lis.Accept()
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				c.client(cli)
				_ = cli.Close()
			}()
			_ = srv.SetDeadline(time.Now().Add(5 * time.Second))
			err = tls.Server(srv, serverConf).Handshake()
			_ = srv.Close()
			<-done
			if c.want == "" {
				if err != nil {
					t.Fatalf("handshake failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("handshake succeeded")
			}
			if got := handshakeReason(err); got != c.want {
				t.Errorf("handshakeReason(%q) = %q, want %q", err, got, c.want)
			}
		})
	}
}
