package app

import (
	"log/slog"
	"net"
	"time"

	"genservice/livepeer"
	"genservice/server"
)

// Config is everything the service needs: one field per `genservice serve` flag (the
// flags and their validation live in cmd/genservice), plus the key. serve, demo and the
// benchmark all fill one in and call New.
type Config struct {
	Listen     string
	TLS        server.TLSFiles
	GatewayURL string
	GatewayCA  string
	// AllowPlaintextGateway permits an http:// gateway URL to a non-loopback host,
	// for a gateway reached through a mesh sidecar or another encrypted tunnel.
	AllowPlaintextGateway bool
	MaxMessageSize        int
	MaxSendSize           int
	MaxCertless           int
	MaxWatchers           int
	MaxConnIdle           time.Duration
	ShutdownGrace         time.Duration
	DrainDelay            time.Duration
	LogLevel              slog.Level
	ErrorDomain           string
	MaxAttempts           int
	ConnectTimeout        time.Duration
	StreamIdle            time.Duration
	PolicyFile            string
	MaxInFlight           int
	Mesh                  string
	// AllowNonLoopbackMesh permits a plaintext mesh-mode listener on a non-loopback
	// address (--mesh-allow-non-loopback).
	AllowNonLoopbackMesh bool
	MaxConnAge           time.Duration
	MaxConnGrace         time.Duration
	AdminListen          string
	MediaAllow           []string
	MaxMediaBytes        int
	Timeouts             map[string]time.Duration

	Key livepeer.APIKey
	// KeyFile is set when the key came from LIVEPEER_API_KEY_FILE; it is then watched.
	KeyFile string
	// KeyOrigin says where the key came from ("LIVEPEER_API_KEY" or the file), for logs.
	KeyOrigin string

	// Version is reported in the log and the User-Agent.
	Version string
	// Listener, if set, is used instead of listening on Listen (the benchmark's
	// profiled in-process run).
	Listener net.Listener
}

// LongestTimeout is the longest per-pipeline limit in effect.
func (c *Config) LongestTimeout() time.Duration {
	longest := time.Duration(0)
	for p, d := range livepeer.DefaultTimeouts {
		if o, ok := c.Timeouts[p]; ok {
			d = o
		}
		longest = max(longest, d)
	}
	return longest
}
