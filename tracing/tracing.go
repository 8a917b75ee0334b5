// Package tracing sets up OpenTelemetry tracing from the standard OTEL_* environment
// variables. It is off unless the environment asks for it, so a deployment without a
// collector pays nothing.
package tracing

import (
	"context"
	"errors"
	"net/http"
	"os"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// Enabled reports whether the environment configures trace export: an OTLP endpoint,
// or OTEL_TRACES_EXPORTER set to something other than "none". OTEL_SDK_DISABLED=true
// turns it off regardless.
func Enabled(getenv func(string) string) bool {
	if getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	if e := getenv("OTEL_TRACES_EXPORTER"); e != "" {
		return e != "none"
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Tracing holds the tracer provider; a zero Tracing is disabled.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// Setup starts tracing if the environment asks for it. The exporter, endpoint,
// protocol, sampler, service name and resource attributes all come from the OTEL_*
// variables (OTEL_SERVICE_NAME defaults to "genservice").
func Setup(ctx context.Context) (*Tracing, error) {
	if !Enabled(os.Getenv) {
		return &Tracing{}, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, err
	}
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		_ = os.Setenv("OTEL_SERVICE_NAME", "genservice")
	}
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithProcess())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Tracing{provider: tp}, nil
}

// On reports whether tracing is active.
func (t *Tracing) On() bool { return t.provider != nil }

// StatsHandler returns the server stats handler, or nil when tracing is off.
func (t *Tracing) StatsHandler() stats.Handler {
	if !t.On() {
		return nil
	}
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.provider))
}

// Transport wraps an upstream transport so each attempt is a client span (and carries
// traceparent to the gateway). It returns rt unchanged when tracing is off.
func (t *Tracing) Transport(rt http.RoundTripper) http.RoundTripper {
	if !t.On() {
		return rt
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "POST " + r.URL.Path }),
		otelhttp.WithSpanOptions(trace.WithSpanKind(trace.SpanKindClient)),
	)
}

// Shutdown flushes pending spans.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.On() {
		return nil
	}
	return t.provider.Shutdown(ctx)
}
