// Command example is a small genservice client in Go: the calls and error handling a
// caller in another service needs, using the committed stubs in gen/.
//
//	go run ./examples/go -addr HOST:PORT -revoked-addr HOST:PORT -ca ca.crt -cert client.crt -key client.key
//
// Each flag defaults to an environment variable (GENSERVICE_ADDR, GENSERVICE_REVOKED_ADDR,
// GENSERVICE_CA, GENSERVICE_CERT, GENSERVICE_KEY, GENSERVICE_SERVER_NAME), as examples/run.sh
// sets them for `genservice demo`. -revoked-addr is an instance whose backend key the gateway
// rejects, like the demo's second instance. It prints one PASS/FAIL line per check and
// "go example: N passed, M failed"; it exits 1 on any failure.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	generationv1 "genservice/gen/livepeer/generation/v1"
)

// serviceConfig retries UNAVAILABLE for the unary RPCs, with backoff. genservice returns
// UNAVAILABLE only where a retry is safe (overloaded, draining, the gateway unreachable or
// busy); it never asks for a retry of INVALID_ARGUMENT or PERMISSION_DENIED. LlmStream is
// left out: a stream that already delivered text must not be replayed behind the caller's
// back. gRPC's own retry does not wait for RetryInfo's delay; a caller that must honour it
// retries in its own code instead (see retryDelay below).
const serviceConfig = `{
  "methodConfig": [{
    "name": [
      {"service": "livepeer.generation.v1.GenerationService", "method": "TextToImage"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "ImageToImage"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "ImageToVideo"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "Upscale"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "AudioToText"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "SegmentAnything2"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "Llm"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "ImageToText"},
      {"service": "livepeer.generation.v1.GenerationService", "method": "TextToSpeech"}
    ],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.5s",
      "maxBackoff": "5s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// maxReceiveBytes matches genservice's default --max-send-message-size (32 MiB). gRPC's
// client default of 4 MiB is too small once inline_media puts result bytes in a response.
const maxReceiveBytes = 32 << 20

// Deadlines per pipeline: text-to-image takes seconds, an LLM answer longer. Without one
// genservice applies its own, but the caller knows best how long it can wait.
const (
	textToImageDeadline = 30 * time.Second
	llmDeadline         = 2 * time.Minute
)

func main() {
	addr := flag.String("addr", os.Getenv("GENSERVICE_ADDR"), "genservice address, host:port ($GENSERVICE_ADDR)")
	revokedAddr := flag.String("revoked-addr", os.Getenv("GENSERVICE_REVOKED_ADDR"), "an instance whose backend key the gateway rejects ($GENSERVICE_REVOKED_ADDR)")
	caFile := flag.String("ca", os.Getenv("GENSERVICE_CA"), "CA certificate that issued the server's certificate ($GENSERVICE_CA)")
	certFile := flag.String("cert", os.Getenv("GENSERVICE_CERT"), "client certificate ($GENSERVICE_CERT)")
	keyFile := flag.String("key", os.Getenv("GENSERVICE_KEY"), "client private key ($GENSERVICE_KEY)")
	serverName := flag.String("server-name", envOr("GENSERVICE_SERVER_NAME", "localhost"), "name to verify in the server's certificate ($GENSERVICE_SERVER_NAME)")
	flag.Parse()
	if *addr == "" || *revokedAddr == "" || *caFile == "" || *certFile == "" || *keyFile == "" {
		fmt.Fprintln(os.Stderr, "example: -addr, -revoked-addr, -ca, -cert and -key (or their environment variables) are required")
		os.Exit(2)
	}
	creds, err := clientTLS(*caFile, *certFile, *keyFile, *serverName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "example: %v\n", err)
		os.Exit(2)
	}
	good, closeGood := dial(*addr, creds)
	defer closeGood()
	revoked, closeRevoked := dial(*revokedAddr, creds)
	defer closeRevoked()

	r := &results{}
	r.check("TextToImage returns an image URL", func() error { return textToImage(good) })
	r.check("LlmStream streams text until finish_reason", func() error { return llmStream(good) })
	r.check("rejected backend key: UNAUTHENTICATED, UPSTREAM_API_KEY_REJECTED with Help", func() error { return revokedKey(revoked) })
	r.check("invalid request: INVALID_ARGUMENT, INVALID_REQUEST with BadRequest", func() error { return invalidRequest(good) })
	r.check("RetryInfo decodes from a status that carries it", retryInfoDecodes)
	fmt.Printf("go example: %d passed, %d failed\n", r.passed, r.failed)
	if r.failed > 0 {
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// clientTLS builds mTLS credentials: genservice accepts TLS 1.3 only and identifies the
// caller by its client certificate.
func clientTLS(caFile, certFile, keyFile, serverName string) (credentials.TransportCredentials, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no PEM certificates", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
		ServerName:   serverName,
	}), nil
}

func dial(addr string, creds credentials.TransportCredentials) (generationv1.GenerationServiceClient, func()) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReceiveBytes)),
	)
	if err != nil {
		// NewClient fails only on a malformed target; connecting happens on the first call.
		fmt.Fprintf(os.Stderr, "example: %s: %v\n", addr, err)
		os.Exit(2)
	}
	return generationv1.NewGenerationServiceClient(cc), func() { cc.Close() }
}

// withRequestID returns a context with a deadline and a fresh x-request-id, which genservice
// logs and echoes, so that this caller's logs and genservice's can be joined.
func withRequestID(timeout time.Duration) (context.Context, context.CancelFunc, string) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := "example-go-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return metadata.AppendToOutgoingContext(ctx, "x-request-id", id), cancel, id
}

func textToImage(c generationv1.GenerationServiceClient) error {
	ctx, cancel, id := withRequestID(textToImageDeadline)
	defer cancel()
	var header metadata.MD
	resp, err := c.TextToImage(ctx, &generationv1.TextToImageRequest{
		Prompt: "a lighthouse at dusk",
		Seed:   proto.Int64(7),
	}, grpc.Header(&header))
	if err != nil {
		fmt.Print(describe(err, "      "))
		return err
	}
	fmt.Printf("      x-request-id sent %s, echoed %s\n", id, strings.Join(header.Get("x-request-id"), ","))
	if len(resp.GetImages()) == 0 {
		return errors.New("no images in the response")
	}
	for _, m := range resp.GetImages() {
		fmt.Printf("      image %s (seed %d, nsfw %v)\n", m.GetUrl(), m.GetSeed(), m.GetNsfw())
		if m.GetUrl() == "" {
			return errors.New("an image without a URL")
		}
	}
	return nil
}

func llmStream(c generationv1.GenerationServiceClient) error {
	ctx, cancel, _ := withRequestID(llmDeadline)
	defer cancel()
	stream, err := c.LlmStream(ctx, &generationv1.LlmRequest{
		Messages: []*generationv1.LlmMessage{
			{Role: generationv1.LlmRole_LLM_ROLE_SYSTEM, Content: "You answer in one short sentence."},
			{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "Say hi"},
		},
		MaxTokens: proto.Int32(64),
	})
	if err != nil {
		return err
	}
	fmt.Print("      text: ")
	finish := ""
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Print("\n" + describe(err, "      "))
			return err
		}
		for _, ch := range msg.GetChoices() {
			// Print each piece the moment it arrives: that is the point of the stream.
			fmt.Print(ch.GetDelta().GetContent())
			if ch.GetFinishReason() != "" {
				finish = ch.GetFinishReason()
			}
		}
	}
	fmt.Printf("\n      finish_reason %s\n", finish)
	if finish == "" {
		return errors.New("the stream ended OK without a finish_reason")
	}
	return nil
}

func revokedKey(c generationv1.GenerationServiceClient) error {
	ctx, cancel, _ := withRequestID(textToImageDeadline)
	defer cancel()
	_, err := c.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a lighthouse at dusk"})
	if err == nil {
		return errors.New("the call succeeded; the gateway should have rejected the key")
	}
	fmt.Print(describe(err, "      "))
	st := status.Convert(err)
	if st.Code() != codes.Unauthenticated {
		return fmt.Errorf("code %s, want Unauthenticated", st.Code())
	}
	if got, want := errorInfo(st).GetReason(), reasonName(generationv1.ErrorReason_ERROR_REASON_UPSTREAM_API_KEY_REJECTED); got != want {
		return fmt.Errorf("reason %q, want %q", got, want)
	}
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.Help); ok {
			return nil
		}
	}
	return errors.New("no google.rpc.Help in the details")
}

func invalidRequest(c generationv1.GenerationServiceClient) error {
	ctx, cancel, _ := withRequestID(textToImageDeadline)
	defer cancel()
	// An empty prompt and too many images: genservice refuses both before calling upstream.
	_, err := c.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "", NumImagesPerPrompt: proto.Int32(1000)})
	if err == nil {
		return errors.New("the call succeeded; want INVALID_ARGUMENT")
	}
	fmt.Print(describe(err, "      "))
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return fmt.Errorf("code %s, want InvalidArgument", st.Code())
	}
	if got, want := errorInfo(st).GetReason(), reasonName(generationv1.ErrorReason_ERROR_REASON_INVALID_REQUEST); got != want {
		return fmt.Errorf("reason %q, want %q", got, want)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == "prompt" {
					return nil
				}
			}
		}
	}
	return errors.New("no BadRequest field violation for prompt")
}

// retryInfoDecodes runs the decoding path on a status that carries RetryInfo. The demo's
// gateway simulator always answers, so none of the RetryInfo outcomes (OVERLOADED,
// UPSTREAM_UNAVAILABLE, ...) can be provoked from a client; this builds the
// google.rpc.Status genservice sends for UPSTREAM_UNAVAILABLE, serializes it as it travels
// in grpc-status-details-bin, and decodes it as a received error.
func retryInfoDecodes() error {
	info, _ := anypb.New(&errdetails.ErrorInfo{
		Reason:   reasonName(generationv1.ErrorReason_ERROR_REASON_UPSTREAM_UNAVAILABLE),
		Domain:   "genservice",
		Metadata: map[string]string{"upstreamStatus": "503"},
	})
	retry, _ := anypb.New(&errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	wire, err := proto.Marshal(&spb.Status{
		Code:    int32(codes.Unavailable),
		Message: "the Livepeer gateway is unavailable (HTTP 503); retry later",
		Details: []*anypb.Any{info, retry},
	})
	if err != nil {
		return err
	}
	var received spb.Status
	if err := proto.Unmarshal(wire, &received); err != nil {
		return err
	}
	err = status.ErrorProto(&received)
	fmt.Print(describe(err, "      "))
	delay, ok := retryDelay(err)
	if !ok || delay != 1500*time.Millisecond {
		return fmt.Errorf("retry delay %v (found %v), want 1.5s", delay, ok)
	}
	return nil
}

// retryDelay is how long the server asks the caller to wait before retrying err, if it says.
func retryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// reasonName is ErrorInfo.reason for an ErrorReason: the enum value's name without its prefix.
func reasonName(r generationv1.ErrorReason) string {
	return strings.TrimPrefix(r.String(), "ERROR_REASON_")
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

// describe prints a status and every detail genservice sends. status.Details decodes the
// google.rpc.Status that grpc-go read from the grpc-status-details-bin trailer.
func describe(err error, indent string) string {
	st := status.Convert(err)
	var b strings.Builder
	fmt.Fprintf(&b, "%scode %s: %s\n", indent, st.Code(), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, "%sErrorInfo reason=%s domain=%s\n", indent, d.GetReason(), d.GetDomain())
			for _, k := range slices.Sorted(maps.Keys(d.GetMetadata())) {
				fmt.Fprintf(&b, "%s  %s: %s\n", indent, k, d.GetMetadata()[k])
			}
		case *errdetails.RetryInfo:
			fmt.Fprintf(&b, "%sRetryInfo retry after %s\n", indent, d.GetRetryDelay().AsDuration())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(&b, "%sBadRequest %s: %s\n", indent, v.GetField(), v.GetDescription())
			}
		case *errdetails.Help:
			for _, l := range d.GetLinks() {
				fmt.Fprintf(&b, "%sHelp %s (%s)\n", indent, l.GetDescription(), l.GetUrl())
			}
		case *errdetails.QuotaFailure:
			for _, v := range d.GetViolations() {
				fmt.Fprintf(&b, "%sQuotaFailure %s: %s\n", indent, v.GetSubject(), v.GetDescription())
			}
		case error:
			// A detail whose type this binary does not know: Details reports it as an error.
			fmt.Fprintf(&b, "%sundecodable detail: %v\n", indent, d)
		default:
			fmt.Fprintf(&b, "%sdetail %T\n", indent, d)
		}
	}
	return b.String()
}

type results struct{ passed, failed int }

func (r *results) check(name string, f func() error) {
	if err := f(); err != nil {
		fmt.Printf("FAIL  %s: %v\n", name, err)
		r.failed++
		return
	}
	fmt.Printf("PASS  %s\n", name)
	r.passed++
}
