package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"

	"genservice/livepeer"
	"genservice/watch"
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
	sum      [32]byte // of the three files' contents, to skip reloads that change nothing
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
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		h.Write(b)
		h.Write([]byte{0})
	}
	m := &tlsMaterial{cert: &cert, clientCA: pool, notAfter: cert.Leaf.NotAfter}
	copy(m.sum[:], h.Sum(nil))
	return m, nil
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

// ReloadTLS re-reads the certificate, key and client-CA files. New handshakes use the
// new material; established connections keep theirs until MaxConnectionAge moves them
// on. A broken set (unreadable, unparsable, mismatched) keeps the current one.
func (s *Server) ReloadTLS() error {
	m, err := loadTLS(s.tlsFiles)
	if err != nil {
		s.log.Error("TLS files rejected; keeping the current certificate and client CA", slog.String("reason", err.Error()))
		if s.onReload != nil {
			s.onReload(err)
		}
		return err
	}
	if cur := s.tls.cur.Load(); cur != nil && cur.sum == m.sum {
		return nil // nothing changed: not a reload
	}
	s.tls.set(m)
	if s.onReload != nil {
		s.onReload(nil)
	}
	s.log.Info("TLS files reloaded",
		slog.String("subject", m.cert.Leaf.Subject.String()),
		slog.Time("notAfter", m.notAfter),
		slog.String("serial", m.cert.Leaf.SerialNumber.Text(16)))
	return nil
}

// WatchTLS reloads the TLS files whenever they change, until ctx ends. It does
// nothing in mesh mode.
func (s *Server) WatchTLS(ctx context.Context) {
	if s.mesh != MeshNone {
		return
	}
	f := s.tlsFiles
	watch.Run(ctx, watch.Config{Paths: []string{f.CertFile, f.KeyFile, f.ClientCAFile}, Logger: s.log, OnChange: func() { _ = s.ReloadTLS() }})
}

// CertificateNotAfter returns when the serving certificate expires (zero in mesh mode).
func (s *Server) CertificateNotAfter() time.Time {
	if m := s.tls.cur.Load(); m != nil {
		return m.notAfter
	}
	return time.Time{}
}

// handshakeLogger logs failed TLS handshakes with the reason and the remote address,
// at most a few per second so a port scanner cannot flood the log.
type handshakeLogger struct {
	credentials.TransportCredentials
	log        *slog.Logger
	limiter    *rate.Limiter
	suppressed atomic.Int64
	init       sync.Once
}

func (h *handshakeLogger) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, info, err := h.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		h.init.Do(func() { h.limiter = rate.NewLimiter(2, 10) })
		if !h.limiter.Allow() {
			h.suppressed.Add(1)
			return c, info, err
		}
		h.log.Warn("TLS handshake failed",
			slog.String("remote", conn.RemoteAddr().String()),
			slog.String("reason", handshakeReason(err)),
			slog.String("error", livepeer.Sanitize(err.Error())),
			slog.Int64("suppressedSinceLast", h.suppressed.Swap(0)))
	}
	return c, info, err
}

// Clone keeps the logging wrapper on clones (grpc clones credentials per server).
func (h *handshakeLogger) Clone() credentials.TransportCredentials {
	return &handshakeLogger{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}

// handshakeReason classifies a handshake error for operators. It matches crypto/tls's
// and crypto/x509's error types where they have them; the rest are plain errors whose
// text is the only thing to go by, so they are matched by their exact leading words
// (a message containing "protocol version" is what the client sees, not the server).
func handshakeReason(err error) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var record tls.RecordHeaderError
	var op *net.OpError
	switch {
	case errors.As(err, &unknown):
		return "client certificate from an unknown CA"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "client certificate expired or not yet valid"
	case errors.As(err, &invalid):
		return "client certificate invalid"
	case errors.As(err, &record):
		return "not TLS (plaintext client?)"
	case errors.As(err, &op) && op.Op == "remote error":
		return remoteAlertReason(op.Err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "handshake timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "client closed the connection during the handshake"
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "tls: client offered only unsupported versions"):
		return "client does not support TLS 1.3"
	case strings.HasPrefix(msg, "tls: client requested unsupported application protocols"):
		return "client does not offer HTTP/2 (ALPN h2)"
	case strings.HasPrefix(msg, "tls: no cipher suite supported by both client and server"):
		return "no cipher suite in common with the client"
	case strings.HasPrefix(msg, "tls: failed to parse client certificate"):
		return "client certificate unparsable"
	case strings.Contains(msg, "timeout"):
		return "handshake timed out"
	}
	return "handshake error"
}

// remoteAlertReason names the alert a client aborted the handshake with. crypto/tls
// reports it as an unexported type inside a "remote error" net.OpError, so it is
// compared by the text crypto/tls's exported AlertError gives the same alert number.
func remoteAlertReason(alert error) string {
	if alert == nil {
		return "client aborted the handshake"
	}
	is := func(codes ...uint8) bool {
		for _, c := range codes {
			if alert.Error() == tls.AlertError(c).Error() {
				return true
			}
		}
		return false
	}
	switch {
	// bad_certificate, unsupported_certificate, certificate_revoked,
	// certificate_expired, certificate_unknown, unknown_ca (RFC 8446 §6.2).
	case is(42, 43, 44, 45, 46, 48):
		return "client rejected the server's certificate"
	case is(70): // protocol_version
		return "client does not support TLS 1.3"
	case is(120): // no_application_protocol
		return "client does not offer HTTP/2 (ALPN h2)"
	}
	return "client aborted the handshake"
}
