package server_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/server"
)

// With tracing on, each call line carries the server span's trace and span ids, so an
// operator can go from a log line to its trace; health checks log at debug.
func TestCallLog_TraceIDsAndQuietHealth(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := newHarness(t, withServer(func(c *server.Config) {
		c.StatsHandler = otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))
	}))
	id := rid(t, "traced")
	if _, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 5*time.Second), id), &generationv1.TextToImageRequest{Prompt: "p"}); err != nil {
		t.Fatal(err)
	}
	line := h.callLine(t, id)
	var found bool
	for _, s := range rec.Ended() {
		sc := s.SpanContext()
		if s.Name() == "livepeer.generation.v1.GenerationService/TextToImage" && line.str("traceId") == sc.TraceID().String() && line.str("spanId") == sc.SpanID().String() {
			found = true
		}
	}
	if !found {
		t.Errorf("call line %v carries no traceId/spanId of the server span", line)
	}

	hid := rid(t, "health")
	if _, err := healthpb.NewHealthClient(h.conn).Check(withRequestID(ctxTimeout(t, 5*time.Second), hid), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if l := h.callLine(t, hid); l.str("level") != "DEBUG" {
		t.Errorf("health check logged at %s, want DEBUG", l.str("level"))
	}
}
