package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
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

// tlsMaterial is one loaded generation of certificate, key and client CA pool.
type tlsMaterial struct {
	cert     *tls.Certificate
	clientCA *x509.CertPool
	notAfter time.Time
	conf     *tls.Config
}

// loadTLS reads and checks the files: the key must match the certificate, and the
// client-CA bundle must contain at least one CA certificate.
func loadTLS(f TLSFiles) (*tlsMaterial, error) {
	certPEM, err := os.ReadFile(f.CertFile)
	if err != nil {
		return nil, &FileError{"cert", f.CertFile, err}
	}
	keyPEM, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return nil, &FileError{"key", f.KeyFile, err}
	}
	if !containsPEM(certPEM, "CERTIFICATE") {
		return nil, &FileError{"cert", f.CertFile, errors.New("no PEM CERTIFICATE block found")}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's messages ("private key does not match public key", "failed to
		// find any PEM data in key input") are specific; they never contain key bytes.
		return nil, &FileError{"key", f.KeyFile, fmt.Errorf("does not pair with %s: %v", f.CertFile, err)}
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		return nil, &FileError{"cert", f.CertFile, fmt.Errorf("certificate expired at %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	caPEM, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return nil, &FileError{"client-ca", f.ClientCAFile, err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, &FileError{"client-ca", f.ClientCAFile, errors.New("no PEM CERTIFICATE block found")}
	}
	return &tlsMaterial{cert: &cert, clientCA: pool, notAfter: cert.Leaf.NotAfter}, nil
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

// tlsConfig serves the current material; swapping the pointer changes what new
// handshakes get without touching established connections.
type tlsConfig struct {
	cur atomic.Pointer[tlsMaterial]
}

// set installs new material, building its per-handshake config once.
func (t *tlsConfig) set(m *tlsMaterial) {
	// TLS 1.3 only; client certificates are verified against the client CA when
	// presented. A caller without a certificate completes the handshake and then gets a
	// clear UNAUTHENTICATED status from the identity check instead of an opaque
	// handshake failure.
	m.conf = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{*m.cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    m.clientCA,
	}
	t.cur.Store(m)
}

// config returns the listener's tls.Config, which defers to the current material on
// every handshake.
func (t *tlsConfig) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.cur.Load().conf, nil
		},
	}
}
