package main

import (
	"genservice/app"

	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/internal/certgen"
	"genservice/internal/contract"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

// demo shows genservice working end to end on one machine, without a Livepeer account:
// it mints a throwaway CA with server and client certificates, starts the gateway
// simulator, runs two instances of the real `serve` code path (one with the key the
// simulator accepts, one with a revoked key), calls both over mTLS, prints what came
// back, and keeps running for grpcurl until Ctrl-C.
func demo(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("genservice demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8443", "address of the demo service (falls back to a free port if taken)")
	listenRevoked := fs.String("listen-revoked", "127.0.0.1:8444", "address of the second instance, whose API key the gateway rejects")
	adminListen := fs.String("admin-listen", "127.0.0.1:9090", "admin listener (metrics, probes) of the demo service")
	adminRevoked := fs.String("admin-listen-revoked", "127.0.0.1:9091", "admin listener of the revoked-key instance")
	once := fs.Bool("once", false, "exit after the demo calls instead of serving until Ctrl-C")
	certDir := fs.String("cert-dir", "", "write the demo CA and certificates into this directory and keep them (default: a temporary directory removed on exit)")
	logLevel := slog.LevelError
	fs.Var(levelFlag{&logLevel}, "log-level", "service log `level` on stderr: debug, info (one line per call), warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}

	dir := *certDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "genservice-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--cert-dir: %v", err)
	}
	files, err := mintDemoCerts(dir)
	if err != nil {
		return fmt.Errorf("minting demo certificates: %v", err)
	}

	goodKey, revokedKey := "demo-"+randomHex(16), "demo-revoked-"+randomHex(16)
	sim, err := livepeertest.New(livepeertest.Config{APIKey: goodKey})
	if err != nil {
		return fmt.Errorf("starting the gateway simulator: %v", err)
	}
	defer sim.Close()

	log := newLogger(logLevel)
	runCtx, stopServers := context.WithCancel(context.Background())
	defer stopServers()
	var wg sync.WaitGroup
	// start runs one instance of the real serve path and waits until it listens: the
	// same flag parsing, validation and wiring as `genservice serve`, with demo values.
	start := func(name, listenAddr, adminAddr, key string) (app.Listening, error) {
		args := []string{
			"--listen", listenAddr, "--admin-listen", adminAddr,
			"--tls-cert", files.server.CertFile, "--tls-key", files.server.KeyFile, "--client-ca", files.server.ClientCAFile,
			"--gateway-url", sim.URL(), "--shutdown-grace", drainTimeout.String(), "--drain-delay", "0s",
			"--upstream-connect-timeout", "5s", "--stream-idle-timeout", "30s",
		}
		demoEnv := func(name string) string {
			if name == "LIVEPEER_API_KEY" {
				return key
			}
			return ""
		}
		c, err := parseServe(args, demoEnv, readKeyFile)
		if err != nil {
			return app.Listening{}, fmt.Errorf("demo configuration: %v", err)
		}
		c.KeyOrigin, c.Version = "demo", version
		ready := make(chan app.Listening, 1)
		errc := make(chan error, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- app.Run(runCtx, c, log.With("instance", name), func(l app.Listening) { ready <- l })
		}()
		select {
		case l := <-ready:
			return l, nil
		case err := <-errc:
			return app.Listening{}, err
		}
	}
	// Each preferred address that is taken moves to a free port on its own, so a busy
	// 9090 does not move the gRPC port too.
	for _, addr := range []*string{listen, adminListen, listenRevoked, adminRevoked} {
		if *addr == "" {
			continue
		}
		if l, err := net.Listen("tcp", *addr); err != nil {
			fmt.Fprintf(out, "(%s is taken; using a free port instead)\n", *addr)
			*addr = "127.0.0.1:0"
		} else {
			l.Close()
		}
	}
	good, err := start("demo", *listen, *adminListen, goodKey)
	if err != nil {
		return err
	}
	revoked, err := start("revoked", *listenRevoked, *adminRevoked, revokedKey)
	if err != nil {
		return err
	}
	addr, revokedAddr := good.GRPC.String(), revoked.GRPC.String()

	fmt.Fprintf(out, "genservice demo\n")
	fmt.Fprintf(out, "  gateway simulator   %s (accepts only the demo key)\n", sim.URL())
	fmt.Fprintf(out, "  genservice          %s (backend key %s)\n", addr, mustKey(goodKey).Fingerprint())
	fmt.Fprintf(out, "  genservice revoked  %s (backend key %s, which the gateway rejects)\n", revokedAddr, mustKey(revokedKey).Fingerprint())
	fmt.Fprintf(out, "  metrics and probes  http://%s/metrics /healthz /readyz (revoked instance: %s)\n", good.Admin, revoked.Admin)
	fmt.Fprintf(out, "  certificates        %s\n\n", dir)

	callErr := demoCalls(ctx, out, files, addr, revokedAddr)

	grpcurl := func(target, method, body string) string {
		return fmt.Sprintf("grpcurl -cacert %s -cert %s -key %s -d '%s' %s livepeer.generation.v1.GenerationService/%s",
			files.caCert, files.clientCert, files.clientKey, body, target, method)
	}
	fmt.Fprintf(out, "\nTry it by hand (grpcurl; from this repository also: go tool -modfile=tools/go.mod grpcurl ...):\n\n")
	fmt.Fprintf(out, "  # list the services through reflection\n  grpcurl -cacert %s -cert %s -key %s %s list\n\n", files.caCert, files.clientCert, files.clientKey, addr)
	fmt.Fprintf(out, "  # text-to-image\n  %s\n\n", grpcurl(addr, "TextToImage", `{"prompt":"a lighthouse at dusk","seed":7}`))
	fmt.Fprintf(out, "  # Llm\n  %s\n\n", grpcurl(addr, "Llm", `{"messages":[{"role":"LLM_ROLE_USER","content":"Say hi"}]}`))
	fmt.Fprintf(out, "  # the backend key rejected upstream: UNAUTHENTICATED with ErrorInfo and Help\n  %s\n\n", grpcurl(revokedAddr, "TextToImage", `{"prompt":"a lighthouse at dusk"}`))
	// Without a certificate reflection is refused too, so grpcurl takes the schema from
	// the protoset the demo wrote; it then shows the refusal's status and details.
	fmt.Fprintf(out, "  # no client certificate: UNAUTHENTICATED, reason CLIENT_CERTIFICATE_REQUIRED\n  grpcurl -protoset %s -cacert %s -d '{\"prompt\":\"x\"}' %s livepeer.generation.v1.GenerationService/TextToImage\n\n", files.protoset, files.caCert, addr)

	fmt.Fprintf(out, "  # metrics of the revoked instance: the 401 above counted by principal and reason\n  curl -s http://%s/metrics | grep -E 'genservice_(call_errors|upstream_requests)_total'\n\n", revoked.Admin)

	if callErr != nil || *once {
		stopServers()
		wg.Wait()
		return callErr
	}
	fmt.Fprintf(out, "Serving until Ctrl-C.\n")
	<-ctx.Done()
	stopServers()
	wg.Wait()
	return nil
}

type demoFiles struct {
	server                        server.TLSFiles
	caCert, clientCert, clientKey string
	// protoset is the contract as a FileDescriptorSet, for grpcurl without reflection.
	protoset  string
	clientTLS tls.Certificate
}

func mintDemoCerts(dir string) (*demoFiles, error) {
	ca, err := certgen.NewCA("genservice demo CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(certgen.LeafOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true})
	if err != nil {
		return nil, err
	}
	cli, err := ca.Issue(certgen.LeafOptions{CommonName: "demo-caller", URIs: []string{"spiffe://demo.genservice/ns/demo/sa/caller"}, Client: true})
	if err != nil {
		return nil, err
	}
	f := &demoFiles{clientTLS: cli.TLS}
	if f.caCert, err = ca.WriteFile(dir, "ca"); err != nil {
		return nil, err
	}
	if f.server.CertFile, f.server.KeyFile, err = srv.WriteFiles(dir, "server"); err != nil {
		return nil, err
	}
	if f.clientCert, f.clientKey, err = cli.WriteFiles(dir, "client"); err != nil {
		return nil, err
	}
	f.server.ClientCAFile = f.caCert
	f.protoset = filepath.Join(dir, "genservice.protoset")
	protoset, err := contract.Protoset()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.protoset, protoset, 0o644); err != nil {
		return nil, err
	}
	return f, nil
}

func demoCalls(ctx context.Context, out io.Writer, files *demoFiles, addr, revokedAddr string) error {
	pool, err := loadPool(files.caCert)
	if err != nil {
		return err
	}
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{files.clientTLS}, ServerName: "localhost"})
	dial := func(target string) (generationv1.GenerationServiceClient, func(), error) {
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, nil, err
		}
		return generationv1.NewGenerationServiceClient(cc), func() { cc.Close() }, nil
	}
	ok, closeOK, err := dial(addr)
	if err != nil {
		return err
	}
	defer closeOK()
	revoked, closeRevoked, err := dial(revokedAddr)
	if err != nil {
		return err
	}
	defer closeRevoked()

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fmt.Fprintf(out, "1. TextToImage over mTLS (client spiffe://demo.genservice/ns/demo/sa/caller):\n")
	img, err := ok.TextToImage(cctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk", Seed: proto.Int64(7)})
	if err != nil {
		return fmt.Errorf("demo call failed: %v", err)
	}
	for _, m := range img.GetImages() {
		fmt.Fprintf(out, "   OK  image %s seed=%d nsfw=%v\n", m.GetUrl(), m.GetSeed(), m.GetNsfw())
	}
	fmt.Fprintf(out, "\n2. Llm:\n")
	llm, err := ok.Llm(cctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "Say hi"}}})
	if err != nil {
		return fmt.Errorf("demo call failed: %v", err)
	}
	for _, c := range llm.GetChoices() {
		fmt.Fprintf(out, "   OK  %s: %q (finish_reason=%s, %d tokens)\n", c.GetMessage().GetRole(), c.GetMessage().GetContent(), c.GetFinishReason(), llm.GetUsage().GetTotalTokens())
	}
	fmt.Fprintf(out, "\n3. LlmStream, one message per upstream event:\n   ")
	st, err := ok.LlmStream(cctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "Count to three"}}})
	if err != nil {
		return fmt.Errorf("demo call failed: %v", err)
	}
	for {
		ev, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("demo stream failed: %v", err)
		}
		for _, c := range ev.GetChoices() {
			fmt.Fprintf(out, "%s", c.GetDelta().GetContent())
			if c.GetFinishReason() != "" {
				fmt.Fprintf(out, "\n   OK  finish_reason=%s", c.GetFinishReason())
			}
		}
	}
	fmt.Fprintf(out, "\n")
	fmt.Fprintf(out, "\n4. TextToImage through the instance whose backend key the gateway rejects (HTTP 401):\n")
	_, err = revoked.TextToImage(cctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"})
	if err == nil {
		return errors.New("demo: the revoked key was accepted")
	}
	fmt.Fprint(out, describeStatus(err, "   "))
	fmt.Fprintf(out, "\n5. An invalid request (empty prompt) is refused before anything goes upstream:\n")
	_, err = ok.TextToImage(cctx, &generationv1.TextToImageRequest{})
	fmt.Fprint(out, describeStatus(err, "   "))
	return nil
}

// describeStatus renders a status and its details for people.
func describeStatus(err error, indent string) string {
	st := status.Convert(err)
	var b strings.Builder
	fmt.Fprintf(&b, "%scode     %s\n%smessage  %s\n", indent, st.Code(), indent, st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, "%sErrorInfo reason=%s domain=%s\n", indent, d.GetReason(), d.GetDomain())
			for k, v := range d.GetMetadata() {
				fmt.Fprintf(&b, "%s  %s: %s\n", indent, k, v)
			}
		case *errdetails.Help:
			for _, l := range d.GetLinks() {
				fmt.Fprintf(&b, "%sHelp     %s (%s)\n", indent, l.GetDescription(), l.GetUrl())
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(&b, "%sBadRequest %s: %s\n", indent, v.GetField(), v.GetDescription())
			}
		case *errdetails.RetryInfo:
			fmt.Fprintf(&b, "%sRetryInfo retry after %s\n", indent, d.GetRetryDelay().AsDuration())
		}
	}
	return b.String()
}

func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no certificates", path)
	}
	return p, nil
}

func mustKey(s string) livepeer.APIKey {
	k, err := livepeer.ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
