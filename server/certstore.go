package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"genservice/reload"
)

// TLSFiles names the PEM files of the listener's mTLS material.
type TLSFiles struct {
	// CertFile is the server certificate chain (leaf first).
	CertFile string
	// KeyFile is the server certificate's private key.
	KeyFile string
	// ClientCAFile is the bundle of CAs that issue callers' client certificates.
	ClientCAFile string
}

// FileError says which of the TLS files is at fault, so start-up can name the flag.
type FileError struct {
	// Which is "cert", "key" or "client-ca".
	Which string
	Path  string
	Err   error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// tlsMaterial is one loaded generation of certificate, key and client CA pool, with
// the tls.Config that handshakes get while it is current.
type tlsMaterial struct {
	cert     *tls.Certificate
	notAfter time.Time
	conf     *tls.Config
}

// loadTLS reads and checks the files: the key must match the certificate, and the
// client-CA bundle must contain at least one CA certificate. The hash is of the three
// files' contents, so a reload that changes none of them is skipped.
func loadTLS(f TLSFiles) (*tlsMaterial, [32]byte, error) {
	var sum [32]byte
	certPEM, err := os.ReadFile(f.CertFile)
	if err != nil {
		return nil, sum, &FileError{"cert", f.CertFile, err}
	}
	keyPEM, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return nil, sum, &FileError{"key", f.KeyFile, err}
	}
	if !containsPEM(certPEM, "CERTIFICATE") {
		return nil, sum, &FileError{"cert", f.CertFile, errors.New("no PEM CERTIFICATE block found")}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's messages ("private key does not match public key", "failed to
		// find any PEM data in key input") are specific; they never contain key bytes.
		return nil, sum, &FileError{"key", f.KeyFile, fmt.Errorf("does not pair with %s: %v", f.CertFile, err)}
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		return nil, sum, &FileError{"cert", f.CertFile, fmt.Errorf("certificate expired at %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	caPEM, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, sum, &FileError{"client-ca", f.ClientCAFile, err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, sum, &FileError{"client-ca", f.ClientCAFile, errors.New("no PEM CERTIFICATE block found")}
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		h.Write(b)
		h.Write([]byte{0})
	}
	copy(sum[:], h.Sum(nil))
	// TLS 1.3 only; client certificates are verified against the client CA when
	// presented. A caller without a certificate completes the handshake and then gets a
	// clear UNAUTHENTICATED status from the identity check instead of an opaque
	// handshake failure. The per-handshake config is built once per generation.
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
	return &tlsMaterial{cert: &cert, notAfter: cert.Leaf.NotAfter, conf: conf}, sum, nil
}

func containsPEM(data []byte, typ string) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == typ {
			return true
		}
	}
}

// certStore holds the serving certificate, key and client CAs, reloaded from their
// files; swapping the current generation changes what new handshakes get without
// touching established connections.
type certStore struct {
	*reload.Value[*tlsMaterial]
}

func newCertStore(f TLSFiles, log *slog.Logger, onReload func(error)) (*certStore, error) {
	v, err := reload.New(reload.Config[*tlsMaterial]{
		Paths:    []string{f.CertFile, f.KeyFile, f.ClientCAFile},
		Load:     func() (*tlsMaterial, [32]byte, error) { return loadTLS(f) },
		Rejected: "TLS files rejected; keeping the current certificate and client CA",
		Reloaded: "TLS files reloaded",
		Describe: func(m *tlsMaterial) []slog.Attr {
			return []slog.Attr{
				slog.String("subject", m.cert.Leaf.Subject.String()),
				slog.Time("notAfter", m.notAfter),
				slog.String("serial", m.cert.Leaf.SerialNumber.Text(16)),
			}
		},
		OnReload: onReload,
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	return &certStore{v}, nil
}

// config returns the listener's tls.Config, which defers to the current generation on
// every handshake.
func (c *certStore) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.Current().conf, nil
		},
	}
}

// ReloadTLS re-reads the certificate, key and client-CA files. New handshakes use the
// new material; established connections keep theirs until MaxConnectionAge moves them
// on. A broken set (unreadable, unparsable, mismatched) keeps the current one. In mesh
// mode there are no TLS files and it does nothing.
func (s *Server) ReloadTLS() error {
	if s.certs == nil {
		return nil
	}
	_, err := s.certs.Reload()
	return err
}

// WatchTLS reloads the TLS files whenever they change, until ctx ends. It does
// nothing in mesh mode.
func (s *Server) WatchTLS(ctx context.Context) {
	if s.certs == nil {
		return
	}
	s.certs.Watch(ctx)
}

// CertificateNotAfter returns when the serving certificate expires (zero in mesh mode).
func (s *Server) CertificateNotAfter() time.Time {
	if s.certs == nil {
		return time.Time{}
	}
	return s.certs.Current().notAfter
}
