package main

// The reference proxy of DESIGN.md §10 (b): the least a gRPC front for the gateway can
// do. mTLS in (TLS 1.3, client certificate required), one http.Client call out, the
// JSON answer decoded into the response. No interceptors, no validation, no logging,
// no metrics. It runs as a child process (`bench -refproxy-serve`) so that its CPU time
// and memory are measured exactly like genservice's.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
)

type refProxy struct {
	generationv1.UnimplementedGenerationServiceServer
	http *http.Client
	url  string // <gateway>/text-to-image
	auth string // "Bearer <key>"
}

type refTextToImage struct {
	ModelID string `json:"model_id"`
	Prompt  string `json:"prompt"`
	Seed    *int64 `json:"seed,omitempty"`
}

type refImages struct {
	Images []struct {
		URL  string `json:"url"`
		Seed int64  `json:"seed"`
		NSFW bool   `json:"nsfw"`
	} `json:"images"`
}

func (p *refProxy) TextToImage(ctx context.Context, r *generationv1.TextToImageRequest) (*generationv1.TextToImageResponse, error) {
	body, err := json.Marshal(refTextToImage{ModelID: r.GetModelId(), Prompt: r.GetPrompt(), Seed: r.Seed})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Authorization"] = []string{p.auth}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if resp.StatusCode != http.StatusOK {
		return nil, status.Errorf(codes.Unknown, "gateway answered %d", resp.StatusCode)
	}
	var out refImages
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, status.Error(codes.Unknown, err.Error())
	}
	res := &generationv1.TextToImageResponse{Images: make([]*generationv1.Media, len(out.Images))}
	for i, m := range out.Images {
		res.Images[i] = &generationv1.Media{Url: m.URL, Seed: m.Seed, Nsfw: m.NSFW}
	}
	return res, nil
}

// refProxyMain is `bench -refproxy-serve`: it serves until SIGTERM or until its stdin
// closes (the parent went away), and prints "listening <addr>" once it accepts calls.
// The gateway key comes from LIVEPEER_API_KEY.
func refProxyMain(args []string) int {
	fs := flag.NewFlagSet("bench -refproxy-serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "gRPC listen address")
	gateway := fs.String("gateway-url", "", "gateway base URL")
	certDir := fs.String("cert-dir", "", "directory with ca.crt, server.crt, server.key")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := refProxyServe(*listen, *gateway, *certDir, os.Getenv("LIVEPEER_API_KEY")); err != nil {
		fmt.Fprintln(os.Stderr, "refproxy:", err)
		return 1
	}
	return 0
}

func refProxyServe(listen, gateway, certDir, key string) error {
	s, err := newRefProxy(gateway, certDir, key)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		stdinClosed := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
		select {
		case <-sig:
		case <-stdinClosed:
		}
		s.Stop()
	}()
	fmt.Printf("listening %s\n", lis.Addr())
	return s.Serve(lis)
}

// newRefProxy builds the reference proxy's gRPC server.
func newRefProxy(gateway, certDir, key string) (*grpc.Server, error) {
	if gateway == "" || certDir == "" || key == "" {
		return nil, errors.New("-gateway-url, -cert-dir and LIVEPEER_API_KEY are required")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "server.crt"), filepath.Join(certDir, "server.key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("ca.crt: no certificate")
	}
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	s := grpc.NewServer(grpc.Creds(creds))
	generationv1.RegisterGenerationServiceServer(s, &refProxy{
		http: &http.Client{Transport: livepeer.NewTransport(10*time.Second, 256, nil)},
		url:  gateway + "/" + livepeer.PipelineTextToImage,
		auth: "Bearer " + key,
	})
	return s, nil
}
