package server_test

// Attacks on the real server over real sockets and real TLS (issue: hostile and careless
// callers). Each test is the attack first; the assertions are what must hold.

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

// payloadCounter is a stats handler counting request messages the server received
// (read, decompressed and decoded).
type payloadCounter struct{ in atomic.Int64 }

func (p *payloadCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (p *payloadCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.InPayload); ok {
		p.in.Add(1)
	}
}

func (p *payloadCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (p *payloadCounter) HandleConn(context.Context, stats.ConnStats) {}

// A caller without a certificate sends gzip-compressed requests that decompress to many
// MiB: they are refused from the headers alone, never read, decompressed or decoded, and
// still get UNAUTHENTICATED with ErrorInfo, a log line and a metric.
func TestAttack_UnauthenticatedCompressedRequestsAreNotRead(t *testing.T) {
	t.Parallel()
	counter := &payloadCounter{}
	h := newHarness(t, withServer(func(c *server.Config) { c.StatsHandler = counter }))
	client := generationv1.NewGenerationServiceClient(h.dial(t, nil))
	big := strings.Repeat("a", 8<<20) // 8 MiB, about 8 KB gzip-compressed
	for i := range 5 {
		id := rid(t, "gzip"+string(rune('a'+i)))
		_, err := client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id),
			&generationv1.TextToImageRequest{Prompt: big}, grpc.UseCompressor(gzip.Name))
		st := requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
		requireMeta(t, st, map[string]string{"method": "/livepeer.generation.v1.GenerationService/TextToImage"})
		line := h.callLine(t, id)
		if line.str("code") != "Unauthenticated" || line.str("reason") != "CLIENT_CERTIFICATE_REQUIRED" {
			t.Errorf("log line = %v", line)
		}
	}
	if n := counter.in.Load(); n != 0 {
		t.Errorf("the server read %d request messages from a caller without a certificate, want 0", n)
	}
	if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 0 {
		t.Errorf("upstream hits = %d, want 0", n)
	}
	// The server is still fine for a caller with a certificate.
	if _, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"}); err != nil {
		t.Errorf("authenticated call after the flood: %v", err)
	}
}

// Decompression stops at the max message size for every caller, and the refusal is
// logged like any other call.
func TestAttack_DecompressedSizeIsCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.MaxMessageSize = 1 << 20 }))
	id := rid(t, "bomb")
	_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), id),
		&generationv1.TextToImageRequest{Prompt: strings.Repeat("a", 4<<20)}, grpc.UseCompressor(gzip.Name))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
	}
	if line := h.callLine(t, id); line.str("code") != "ResourceExhausted" {
		t.Errorf("log line = %v", line)
	}
	if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 0 {
		t.Errorf("upstream hits = %d, want 0", n)
	}
}

// rawCodec sends pre-encoded bytes, so a test can send what no protobuf library would.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// Messages that do not decode are INVALID_ARGUMENT with ErrorInfo and BadRequest, logged
// and counted, for unary and streaming RPCs alike.
func TestAttack_UndecodableMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	invalidUTF8 := protowire.AppendTag(nil, 2, protowire.BytesType)
	invalidUTF8 = protowire.AppendBytes(invalidUTF8, []byte{'a', 0xff, 0xfe, 'b'}) // prompt = invalid UTF-8
	truncated := protowire.AppendTag(nil, 2, protowire.BytesType)
	truncated = protowire.AppendVarint(truncated, 1000) // claims 1000 bytes, has 3
	truncated = append(truncated, "abc"...)
	var nested []byte
	for range 20000 {
		nested = protowire.AppendTag(nested, 99, protowire.StartGroupType)
	}
	for range 20000 {
		nested = protowire.AppendTag(nested, 99, protowire.EndGroupType)
	}
	cases := map[string][]byte{"invalid UTF-8": invalidUTF8, "truncated": truncated, "nested too deeply": nested}
	for name, body := range cases {
		for _, method := range []string{"TextToImage", "LlmStream"} {
			id := rid(t, strings.ReplaceAll(name, " ", "-")+"-"+method)
			full := "/livepeer.generation.v1.GenerationService/" + method
			ctx := withRequestID(ctxTimeout(t, 5*time.Second), id)
			var err error
			if method == "LlmStream" {
				var s grpc.ClientStream
				s, err = h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full, grpc.ForceCodecV2(rawCodec{}))
				if err == nil {
					if err = s.SendMsg(body); err == nil {
						_ = s.CloseSend()
						var out []byte
						err = s.RecvMsg(&out)
					}
				}
			} else {
				var out []byte
				err = h.conn.Invoke(ctx, full, body, &out, grpc.ForceCodecV2(rawCodec{}))
			}
			st := requireStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST")
			if _, ok := detail[*errdetails.BadRequest](st); !ok {
				t.Errorf("%s %s: no BadRequest in %v", name, method, st.Proto())
			}
			if line := h.callLine(t, id); line.str("code") != "InvalidArgument" || line.str("principal") != defaultPrincipal {
				t.Errorf("%s %s: log line = %v", name, method, line)
			}
		}
	}
	if n := h.sim.Hits(livepeer.PipelineTextToImage) + h.sim.Hits(livepeer.PipelineLLM); n != 0 {
		t.Errorf("upstream hits = %d, want 0", n)
	}
}

// bigEvents is an LLM stream long enough to fill any flow-control window.
func bigEvents(n int) []string {
	chunk := strings.Repeat("lorem ipsum ", 400) // ~4.8 KB per event
	ev := make([]string, n)
	for i := range ev {
		ev[i] = stEvent(chunk, "", int32(i+1))
	}
	return ev
}

// An LlmStream caller that never reads holds its admission slots only until the send
// timeout (the stream idle timeout): then the call ends, the slots are free, and the
// time spent waiting on the caller is not counted as genservice's overhead.
func TestAttack_NonReadingStreamReleasesItsSlots(t *testing.T) {
	t.Parallel()
	const idle = 700 * time.Millisecond
	h := newHarness(t, withServer(func(c *server.Config) {
		c.MaxInFlight = 1
		c.StreamIdleTimeout = idle
	}))
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: bigEvents(2000)})

	// A client with small, fixed windows that opens the stream and never reads.
	conn, err := grpc.NewClient(h.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(h.clientTLS(&h.pki.client.TLS))),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	id := rid(t, "stuck")
	ctx, cancel := context.WithCancel(withRequestID(context.Background(), id))
	defer cancel()
	if _, err := generationv1.NewGenerationServiceClient(conn).LlmStream(ctx, &generationv1.LlmRequest{
		Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}},
	}); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	eventually(t, 5*time.Second, func() bool { return h.sim.Hits(livepeer.PipelineLLM) == 1 }, "the stream to reach the gateway")

	// While it is stuck, the one slot is taken...
	_, err = h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
	requireStatus(t, err, codes.Unavailable, "OVERLOADED")
	// ...and is released within the idle timeout (plus scheduling slack).
	line := h.callLine(t, id)
	if released := time.Since(started); released > idle+2*time.Second {
		t.Errorf("slot released after %v, want about %v", released, idle)
	}
	if line.str("code") != "ResourceExhausted" || line.str("reason") != "CALLER_NOT_READING" {
		t.Errorf("log line = %v", line)
	}
	if ms, _ := line.num("overheadMs"); ms > 200 {
		t.Errorf("overheadMs = %v: time blocked on the caller counted as overhead", ms)
	}
	if _, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"}); err != nil {
		t.Errorf("call after the stuck stream ended: %v", err)
	}
}

// Connections without a client certificate are capped; one that closes frees its place.
func TestAttack_CertlessConnectionsAreCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.MaxConnsWithoutCert = 3 }))
	check := func(conn *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	var conns []*grpc.ClientConn
	for i := range 3 {
		c := h.dial(t, nil)
		if err := check(c); err != nil {
			t.Fatalf("certless connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	extra := h.dial(t, nil)
	if err := check(extra); status.Code(err) != codes.Unavailable {
		t.Errorf("fourth certless connection: %v, want UNAVAILABLE (refused)", err)
	}
	// Callers with certificates are not affected.
	if err := check(h.dial(t, &h.pki.client.TLS)); err != nil {
		t.Errorf("connection with a certificate: %v", err)
	}
	_ = conns[0].Close()
	eventually(t, 5*time.Second, func() bool { return check(h.dial(t, nil)) == nil }, "a certless connection after one closed")
}

// Health Watch streams from peers without a certificate are capped.
func TestAttack_CertlessWatchersAreCapped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.MaxWatchersWithoutIdentity = 2 }))
	conn := h.dial(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := func(c *grpc.ClientConn) (healthpb.Health_WatchClient, error) {
		w, err := healthpb.NewHealthClient(c).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return nil, err
		}
		_, err = w.Recv()
		return w, err
	}
	for i := range 2 {
		if _, err := watch(conn); err != nil {
			t.Fatalf("watcher %d: %v", i, err)
		}
	}
	_, err := watch(conn)
	st := requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
	requireMeta(t, st, map[string]string{"maxWatchers": "2"})
	if _, err := watch(h.conn); err != nil {
		t.Errorf("watcher with a certificate: %v", err)
	}
}

// Shutdown tells health watchers NOT_SERVING and then ends their streams, so an open
// Watch does not hold the process for the grace period.
func TestAttack_ShutdownEndsHealthWatchers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	w, err := healthpb.NewHealthClient(h.dial(t, nil)).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first watch message %v, %v", r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	h.shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v with an open Watch", d)
	}
	var sawNotServing bool
	for {
		r, err := w.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				t.Errorf("watch ended with OK; want a status")
			}
			break
		}
		sawNotServing = sawNotServing || r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	}
	if !sawNotServing {
		t.Error("the watcher never saw NOT_SERVING")
	}
}

// Calls still running when the shutdown grace ends get UNAVAILABLE / SHUTTING_DOWN and
// are logged with it.
func TestAttack_ShutdownCutsCallsWithAStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: 30 * time.Second})
	id := rid(t, "cut")
	done := make(chan error, 1)
	go func() {
		_, err := h.client.TextToImage(withRequestID(context.Background(), id), &generationv1.TextToImageRequest{Prompt: "p"})
		done <- err
	}()
	eventually(t, 5*time.Second, func() bool { return h.sim.Hits(livepeer.PipelineTextToImage) == 1 }, "the call to reach the gateway")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go h.srv.Shutdown(ctx, 0)
	select {
	case err := <-done:
		st := requireStatus(t, err, codes.Unavailable, "SHUTTING_DOWN")
		if !strings.Contains(st.Message(), "shut down") {
			t.Errorf("message %q", st.Message())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end after the shutdown grace")
	}
	if line := h.callLine(t, id); line.str("code") != "Unavailable" || line.str("reason") != "SHUTTING_DOWN" {
		t.Errorf("log line = %v", line)
	}
}

// A response larger than the send limit is answered with a status that says so, and the
// log line records that status, not OK.
func TestAttack_ResponseTooLargeIsReportedAsSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(c *server.Config) { c.MaxSendMessageSize = 16 }))
	id := rid(t, "big")
	_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 5*time.Second), id), &generationv1.TextToImageRequest{Prompt: "p"})
	st := requireStatus(t, err, codes.ResourceExhausted, "RESPONSE_TOO_LARGE")
	if info := errorInfo(t, st); info.GetMetadata()["maxSendBytes"] != "16" {
		t.Errorf("metadata = %v", info.GetMetadata())
	}
	if line := h.callLine(t, id); line.str("code") != "ResourceExhausted" || line.str("reason") != "RESPONSE_TOO_LARGE" {
		t.Errorf("log line = %v", line)
	}
}

// A caller with a certificate but over a limit is refused from the headers too: its
// message is never read or decompressed, so limits bound memory as well as upstream work.
func TestAttack_OverLimitCallsAreNotRead(t *testing.T) {
	t.Parallel()
	counter := &payloadCounter{}
	h := newHarness(t, withServer(func(c *server.Config) {
		c.MaxInFlight = 1
		c.StatsHandler = counter
	}))
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		_, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "held"})
		held <- err
	}()
	eventually(t, 5*time.Second, func() bool { return h.sim.Hits(livepeer.PipelineTextToImage) == 1 }, "the held call to reach the gateway")
	before := counter.in.Load()
	for range 3 {
		_, err := h.client.TextToImage(ctxTimeout(t, 10*time.Second),
			&generationv1.TextToImageRequest{Prompt: strings.Repeat("a", 8<<20)}, grpc.UseCompressor(gzip.Name))
		requireStatus(t, err, codes.Unavailable, "OVERLOADED")
	}
	if n := counter.in.Load() - before; n != 0 {
		t.Errorf("the server read %d messages of calls over the in-flight cap, want 0", n)
	}
	cancel()
	<-held
	// The held call's slot comes back when it ends.
	eventually(t, 5*time.Second, func() bool {
		_, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
		return err == nil
	}, "the slot to come back")
}
