package server

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"
)

// certlessCap caps the connections whose peer completed the TLS handshake without a
// client certificate. Such a peer may only check health, so a few dozen connections are
// plenty; without a cap, hundreds of idle ones would each hold goroutines and buffers
// (MaxConnectionIdle closes idle connections, but only after minutes). Beyond the cap
// the connection is closed right after the handshake.
type certlessCap struct {
	credentials.TransportCredentials
	limit   int64
	open    *atomic.Int64
	log     *slog.Logger
	limiter *rate.Limiter
}

func newCertlessCap(creds credentials.TransportCredentials, limit int, log *slog.Logger) *certlessCap {
	return &certlessCap{TransportCredentials: creds, limit: int64(limit), open: new(atomic.Int64), log: log, limiter: rate.NewLimiter(1, 5)}
}

var errTooManyCertless = errors.New("too many connections without a client certificate")

func (c *certlessCap) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	if tlsInfo, ok := info.(credentials.TLSInfo); ok && len(tlsInfo.State.PeerCertificates) > 0 {
		return conn, info, nil
	}
	if c.open.Add(1) > c.limit {
		c.open.Add(-1)
		if c.limiter.Allow() {
			c.log.Warn("connection without a client certificate refused: at the limit",
				slog.String("remote", raw.RemoteAddr().String()), slog.Int64("limit", c.limit))
		}
		conn.Close()
		return nil, nil, errTooManyCertless
	}
	return &countedConn{Conn: conn, open: c.open}, info, nil
}

// Clone keeps the cap (and its count) on clones.
func (c *certlessCap) Clone() credentials.TransportCredentials {
	return &certlessCap{TransportCredentials: c.TransportCredentials.Clone(), limit: c.limit, open: c.open, log: c.log, limiter: c.limiter}
}

// countedConn gives its slot back when closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}
