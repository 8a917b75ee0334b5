package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"

	"genservice/livepeer"
)

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
