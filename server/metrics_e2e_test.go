package server_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"genservice/admin"
	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/metrics"
	"genservice/server"
)

// TestMetricsAfterCalls wires metrics as serve does, makes a few calls (a success, an
// upstream 401, a validation failure, a retried 503), scrapes /metrics through the admin
// handler over HTTP, and checks the metric names and labels — including the 401 counted
// by principal and reason — and that no label or value holds the canary key.
func TestMetricsAfterCalls(t *testing.T) {
	var srv *server.Server
	m := metrics.New()
	m.SetBuildInfo("v-test")
	h := newHarness(t,
		withKey(canaryKey),
		withUpstream(func(c *livepeer.Config) { c.Observer = m }),
		withServer(func(c *server.Config) { c.Metrics = m; c.OnTLSReload = m.Reloaded("tls") }),
		withBeforeServe(func(s *server.Server) { srv = s; m.TrackCertificateExpiry(s.CertificateNotAfter) }),
	)
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a fox"}); err != nil {
		t.Fatal(err)
	}
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Status: 401, Body: `{"error":"Unauthorized","message":"Invalid API key: Bearer ` + canaryKey + `"}`})
	if _, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "a fox"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("401: %v", err)
	}
	if _, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("validation: %v", err)
	}
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error")})
	if _, err := h.client.Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}}); err != nil {
		t.Fatalf("retried LLM: %v", err)
	}

	web := httptest.NewServer(admin.Handler(admin.Config{Metrics: m.Handler(), Ready: srv.Ready}))
	defer web.Close()
	resp, err := http.Get(web.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	requireNoCanary(t, "/metrics", body)

	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	// Every family genservice promises, with exactly these label names.
	want := map[string][]string{
		"grpc_server_handled_total":                    {"grpc_code", "grpc_method", "grpc_service", "grpc_type"},
		"grpc_server_handling_seconds":                 {"grpc_method", "grpc_service", "grpc_type"},
		"genservice_upstream_requests_total":           {"attempt", "pipeline", "status"},
		"genservice_upstream_request_duration_seconds": {"pipeline", "status"},
		"genservice_upstream_in_flight":                {},
		"genservice_call_overhead_seconds":             {"grpc_method"},
		"genservice_call_errors_total":                 {"grpc_code", "grpc_method", "principal", "reason"},
		"genservice_reloads_total":                     {"kind", "result"},
		"genservice_certificate_expiry_seconds":        {},
		"genservice_calls_total":                       {"grpc_code", "grpc_method", "principal"},
		"genservice_llm_tokens_total":                  {"kind", "principal"},
		"genservice_build_info":                        {"goversion", "version"},
	}
	for name, labels := range want {
		mf, ok := families[name]
		if !ok {
			t.Errorf("metric %s missing", name)
			continue
		}
		for _, metric := range mf.GetMetric() {
			var got []string
			for _, lp := range metric.GetLabel() {
				got = append(got, lp.GetName())
			}
			if strings.Join(got, ",") != strings.Join(labels, ",") {
				t.Errorf("%s labels = %v, want %v", name, got, labels)
			}
		}
	}
	has := func(name string, labels map[string]string) float64 {
		t.Helper()
		for _, metric := range families[name].GetMetric() {
			match := true
			for _, lp := range metric.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					match = false
				}
			}
			if match {
				if c := metric.GetCounter(); c != nil {
					return c.GetValue()
				}
				if hs := metric.GetHistogram(); hs != nil {
					return float64(hs.GetSampleCount())
				}
				return metric.GetGauge().GetValue()
			}
		}
		return 0
	}
	if n := has("genservice_call_errors_total", map[string]string{"principal": defaultPrincipal, "reason": "UPSTREAM_API_KEY_REJECTED", "grpc_code": "Unauthenticated", "grpc_method": "TextToImage"}); n != 1 {
		t.Errorf("401 counted by principal: %v, want 1", n)
	}
	if n := has("genservice_call_errors_total", map[string]string{"reason": "INVALID_REQUEST"}); n != 1 {
		t.Errorf("validation failure counted: %v, want 1", n)
	}
	if n := has("genservice_upstream_requests_total", map[string]string{"pipeline": "llm", "status": "503", "attempt": "1"}); n != 1 {
		t.Errorf("llm 503 on attempt 1: %v, want 1", n)
	}
	if n := has("genservice_upstream_requests_total", map[string]string{"pipeline": "llm", "status": "200", "attempt": "2"}); n != 1 {
		t.Errorf("llm 200 on attempt 2: %v, want 1", n)
	}
	if n := has("genservice_call_overhead_seconds", map[string]string{"grpc_method": "TextToImage"}); n != 3 {
		t.Errorf("overhead observations for TextToImage: %v, want 3", n)
	}
	if n := has("grpc_server_handled_total", map[string]string{"grpc_method": "TextToImage", "grpc_code": "OK"}); n != 1 {
		t.Errorf("grpc_server_handled_total OK: %v, want 1", n)
	}
	// Who spends the account: calls and LLM tokens by principal (the simulator reports
	// usage on its LLM answers).
	if n := has("genservice_calls_total", map[string]string{"principal": defaultPrincipal, "grpc_method": "TextToImage", "grpc_code": "OK"}); n != 1 {
		t.Errorf("calls by principal: %v, want 1", n)
	}
	if n := has("genservice_llm_tokens_total", map[string]string{"principal": defaultPrincipal, "kind": "completion"}); n <= 0 {
		t.Errorf("completion tokens by principal: %v, want > 0", n)
	}
	if n := has("genservice_build_info", map[string]string{"version": "v-test"}); n != 1 {
		t.Errorf("build info: %v", n)
	}
	if exp := has("genservice_certificate_expiry_seconds", nil); exp < 3600 {
		t.Errorf("certificate expiry %v s, want the harness certificate's remaining day", exp)
	}
	// No label value is long or carries the request's prompt ("a fox").
	for name, mf := range families {
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				if len(lp.GetValue()) > 128 {
					t.Errorf("%s{%s} has a %d-byte label value", name, lp.GetName(), len(lp.GetValue()))
				}
				if strings.Contains(lp.GetValue(), "a fox") {
					t.Errorf("%s{%s=%q} carries request content", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}
