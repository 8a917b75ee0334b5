package main

// Certificates, the policy file, the gRPC and HTTP clients.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/livepeer"
)

// benchPrincipal is the SPIFFE ID in the benchmark's client certificate.
const benchPrincipal = "spiffe://bench.genservice/ns/bench/sa/caller"

type certFiles struct {
	dir                   string
	ca                    string
	serverCert, serverKey string
	policy                string
	client                tls.Certificate
	clientTLS             *tls.Config
}

// mintCerts writes a throwaway CA, a server certificate for 127.0.0.1/localhost, and
// the policy file into dir, and returns the client's TLS config.
func mintCerts(dir string) (*certFiles, error) {
	ca, err := certgen.NewCA("genservice bench CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(certgen.LeafOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		return nil, err
	}
	cli, err := ca.Issue(certgen.LeafOptions{CommonName: "bench-caller", URIs: []string{benchPrincipal}, Client: true})
	if err != nil {
		return nil, err
	}
	f := &certFiles{dir: dir, client: cli.TLS}
	if f.ca, err = ca.WriteFile(dir, "ca"); err != nil {
		return nil, err
	}
	if f.serverCert, f.serverKey, err = srv.WriteFiles(dir, "server"); err != nil {
		return nil, err
	}
	// Allowed everything, with a rate and concurrency limit generous enough never to
	// bite: the limiter is consulted on every call, as in production.
	f.policy = filepath.Join(dir, "policy.yaml")
	policy := fmt.Sprintf("rules:\n  - principals: [%q]\n    methods: [\"*\"]\n    rate: 1000000\n    burst: 1000000\n    max_in_flight: 4096\n", benchPrincipal)
	if err := os.WriteFile(f.policy, []byte(policy), 0o644); err != nil {
		return nil, err
	}
	f.clientTLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      ca.Pool(),
		Certificates: []tls.Certificate{cli.TLS},
		ServerName:   "localhost",
	}
	return f, nil
}

// connsPerTarget is how many grpc.ClientConns each gRPC target gets; caller goroutine
// w uses conn w % min(callers, connsPerTarget).
const connsPerTarget = 4

// dialAll opens connsPerTarget connections to addr and waits until each is READY.
func dialAll(ctx context.Context, addr string, tlsConf *tls.Config) ([]*grpc.ClientConn, []generationv1.GenerationServiceClient, error) {
	return dialN(ctx, addr, tlsConf, connsPerTarget)
}

// dialN opens n connections to addr with the dial options opts added, and waits until
// each is READY.
func dialN(ctx context.Context, addr string, tlsConf *tls.Config, n int, opts ...grpc.DialOption) ([]*grpc.ClientConn, []generationv1.GenerationServiceClient, error) {
	var conns []*grpc.ClientConn
	var clients []generationv1.GenerationServiceClient
	for range n {
		cc, err := grpc.NewClient("passthrough:///"+addr, append([]grpc.DialOption{
			grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20), grpc.MaxCallSendMsgSize(32<<20)),
		}, opts...)...)
		if err != nil {
			closeAll(conns)
			return nil, nil, err
		}
		conns = append(conns, cc)
		clients = append(clients, generationv1.NewGenerationServiceClient(cc))
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, cc := range conns {
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(wctx, s) {
				closeAll(conns)
				return nil, nil, fmt.Errorf("connecting to %s: still %s", addr, s)
			}
		}
	}
	return conns, clients, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// newDirectClient is the HTTP client of target (a): the transport genservice uses.
func newDirectClient() *http.Client {
	return &http.Client{Transport: livepeer.NewTransport(10*time.Second, 256, nil)}
}
