package server_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

// upstreamCase is one row of DESIGN §7 about upstream outcomes, driven through the
// simulator.
type upstreamCase struct {
	name     string
	pipeline string
	opts     []option
	// steps are scripted for pipeline before the call; script (if set) runs after them
	// with the harness, for steps that depend on the time or the harness.
	steps  []livepeertest.Step
	script func(h *harness)
	// call overrides the minimal valid request of pipeline's RPC.
	call func(ctx context.Context, c generationv1.GenerationServiceClient) error
	// timeout is the caller's deadline: 0 means 10 s, negative means none.
	timeout time.Duration
	code    codes.Code
	reason  string
	// meta are exact ErrorInfo metadata values; "$fingerprint" stands for the key's.
	meta map[string]string
	// hits is how many requests the simulator must have received; attempts is the log's
	// attempt count when it differs (a gateway that is not there counts no hits).
	hits, attempts int
	// upstreamStatus is the log's last HTTP status; 0 means metadata upstreamStatus, else
	// the status of the last step the simulator used; -1 means none was received.
	upstreamStatus int
	// closedGateway points the client at a loopback port nothing listens on.
	closedGateway bool
	check         func(t *testing.T, h *harness, st *status.Status)
}

func retryAfter(v string) http.Header { return http.Header{"Retry-After": {v}} }

// requireRetryInfo asserts a RetryInfo delay between lo and hi.
func requireRetryInfo(lo, hi time.Duration) func(t *testing.T, h *harness, st *status.Status) {
	return func(t *testing.T, h *harness, st *status.Status) {
		t.Helper()
		ri, ok := detail[*errdetails.RetryInfo](st)
		if !ok {
			t.Fatalf("no RetryInfo in %v", st.Details())
		}
		if d := ri.GetRetryDelay().AsDuration(); d < lo || d > hi {
			t.Errorf("RetryInfo delay = %v, want in [%v, %v]", d, lo, hi)
		}
	}
}

func requireNoRetryInfo(t *testing.T, h *harness, st *status.Status) {
	t.Helper()
	if ri, ok := detail[*errdetails.RetryInfo](st); ok {
		t.Errorf("unexpected RetryInfo %v", ri)
	}
}

func requireHelp(t *testing.T, h *harness, st *status.Status) {
	t.Helper()
	help, ok := detail[*errdetails.Help](st)
	if !ok || len(help.GetLinks()) == 0 || help.GetLinks()[0].GetUrl() == "" || help.GetLinks()[0].GetDescription() == "" {
		t.Errorf("want a Help detail with a described link, got %v", st.Details())
	}
}

func requireViolations(want map[string]string) func(t *testing.T, h *harness, st *status.Status) {
	return func(t *testing.T, h *harness, st *status.Status) {
		t.Helper()
		got := fieldViolations(t, st)
		for f, d := range want {
			if gd, ok := got[f]; !ok || !strings.Contains(gd, d) {
				t.Errorf("BadRequest[%q] = %q (present %v), want it to contain %q; all: %v", f, gd, ok, d, got)
			}
		}
	}
}

func requireNoBadRequest(t *testing.T, h *harness, st *status.Status) {
	t.Helper()
	if br, ok := detail[*errdetails.BadRequest](st); ok {
		t.Errorf("unexpected BadRequest %v", br)
	}
}

// requireShortUpstreamMessage asserts the upstream text is cut to 256 bytes and that
// marker (placed past the cut in the body) appears nowhere in the status.
func requireShortUpstreamMessage(marker string) func(t *testing.T, h *harness, st *status.Status) {
	return func(t *testing.T, h *harness, st *status.Status) {
		t.Helper()
		um := errorInfo(t, st).GetMetadata()["upstreamMessage"]
		if um == "" || len(um) > livepeer.MaxMessageLen || !utf8.ValidString(um) {
			t.Errorf("upstreamMessage is %d bytes (valid UTF-8: %v), want 1..%d", len(um), utf8.ValidString(um), livepeer.MaxMessageLen)
		}
		b, _ := proto.Marshal(st.Proto())
		if strings.Contains(st.Message(), marker) || strings.Contains(string(b), marker) {
			t.Errorf("status carries the raw body past the cut (%d-byte message)", len(st.Message()))
		}
		if len(st.Message()) > 2*livepeer.MaxMessageLen+200 {
			t.Errorf("status message is %d bytes", len(st.Message()))
		}
	}
}

func all(checks ...func(t *testing.T, h *harness, st *status.Status)) func(t *testing.T, h *harness, st *status.Status) {
	return func(t *testing.T, h *harness, st *status.Status) {
		t.Helper()
		for _, c := range checks {
			c(t, h, st)
		}
	}
}

const (
	runner422 = `{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}`
	ajvHeight = `{"instancePath":"/height","schemaPath":"#/properties/height/type","keyword":"type","params":{"type":"integer"},"message":"must be integer"}`
	ajvMissng = `{"instancePath":"","schemaPath":"#/required","keyword":"required","params":{"missingProperty":"prompt"},"message":"must have required property 'prompt'"}`
	htmlPage  = "<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1><p>nginx</p></body></html>"
	tailMark  = "TAIL-MARKER-9d1e"
)

var longText = strings.Repeat("upstream exploded while rendering; ", 300) + tailMark

var upstreamCases = []upstreamCase{
	// 401: the backend key, not the caller.
	{
		name: "401 simulator rejects the key", pipeline: livepeer.PipelineTextToImage,
		script: func(h *harness) { h.sim.SetAPIKey("sk-rotated-elsewhere-000") },
		code:   codes.Unauthenticated, reason: "UPSTREAM_API_KEY_REJECTED", hits: 1, upstreamStatus: 401,
		meta: map[string]string{"upstreamStatus": "401", "upstreamMessage": "Invalid API key", "keyFingerprint": "$fingerprint", "pipeline": "text-to-image"},
		check: all(requireHelp, func(t *testing.T, h *harness, st *status.Status) {
			if !strings.Contains(st.Message(), "backend API key") || !strings.Contains(st.Message(), "not the caller") {
				t.Errorf("401 message does not say it is the backend key: %q", st.Message())
			}
		}),
	},
	{
		name: "401 Studio body", pipeline: livepeer.PipelineImageToImage,
		steps: []livepeertest.Step{{Status: 401, Body: livepeertest.StudioError("Unauthorized")}},
		code:  codes.Unauthenticated, reason: "UPSTREAM_API_KEY_REJECTED", hits: 1,
		meta:  map[string]string{"upstreamStatus": "401", "upstreamMessage": "Unauthorized", "keyFingerprint": "$fingerprint"},
		check: requireHelp,
	},
	// 403
	{
		name: "403 Studio body", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{{Status: 403, Body: livepeertest.StudioError("Forbidden: CORS API keys cannot call this endpoint")}},
		code:  codes.PermissionDenied, reason: "UPSTREAM_API_KEY_FORBIDDEN", hits: 1,
		meta: map[string]string{"upstreamStatus": "403", "keyFingerprint": "$fingerprint",
			"upstreamMessage": "Forbidden: CORS API keys cannot call this endpoint"},
		check: requireHelp,
	},
	// 400, 413, 415, 422
	{
		name: "400 gateway body", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 400, Body: livepeertest.GatewayError(": Prompt must be provided.")}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta: map[string]string{"upstreamStatus": "400", "pipeline": "text-to-image"},
		check: all(requireNoBadRequest, func(t *testing.T, h *harness, st *status.Status) {
			if !strings.Contains(errorInfo(t, st).GetMetadata()["upstreamMessage"], "Prompt must be provided.") {
				t.Errorf("upstreamMessage = %q", errorInfo(t, st).GetMetadata()["upstreamMessage"])
			}
		}),
	},
	{
		name: "400 runner body", pipeline: livepeer.PipelineUpscale,
		steps: []livepeertest.Step{{Status: 400, Body: livepeertest.RunnerError("Pipeline configured with a but called with b")}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta: map[string]string{"upstreamStatus": "400", "upstreamMessage": "Pipeline configured with a but called with b"},
	},
	{
		name: "413 from the simulator: JSON body over 1 MiB", pipeline: livepeer.PipelineTextToImage,
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) error {
			_, err := c.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: strings.Repeat("a", 1<<20+1)})
			return err
		},
		code: codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta: map[string]string{"upstreamStatus": "413", "upstreamMessage": "request entity too large"},
	},
	{
		name: "415 runner body", pipeline: livepeer.PipelineAudioToText,
		steps: []livepeertest.Step{{Status: 415, Body: livepeertest.RunnerError("Unsupported audio format")}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta: map[string]string{"upstreamStatus": "415", "upstreamMessage": "Unsupported audio format"},
	},
	{
		name: "422 runner validation body", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 422, Body: runner422}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta:  map[string]string{"upstreamStatus": "422", "upstreamMessage": "field required"},
		check: requireViolations(map[string]string{"prompt": "field required"}),
	},
	{
		// BadRequest field paths index repeated fields as name[i] (google.rpc.BadRequest's
		// documented syntax, and what genservice's own validation reports, e.g.
		// "messages[1].role"), whichever layer reported the error.
		name: "422 field paths with an index", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{
			{Status: 422, Body: livepeertest.ValidationError(livepeertest.Violation{Loc: []any{"body", "messages", 0, "content"}, Msg: "Input should be a valid string", Type: "string_type"})},
		},
		code: codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		check: requireViolations(map[string]string{"messages[0].content": "valid string"}),
	},
	{
		name: "422 Studio ajv field path with an index", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{{Status: 422, Body: livepeertest.StudioError(
			`{"instancePath":"/messages/1","schemaPath":"#/$defs/LLMMessage/required","keyword":"required","params":{"missingProperty":"role"},"message":"must have required property 'role'"}`)}},
		code: codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		check: requireViolations(map[string]string{"messages[1].role": "must have required property 'role'"}),
	},
	{
		name: "422 Studio ajv body", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 422, Body: livepeertest.StudioError(ajvHeight)}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta:  map[string]string{"upstreamStatus": "422", "upstreamMessage": "must be integer"},
		check: requireViolations(map[string]string{"height": "must be integer"}),
	},
	{
		name: "422 Studio ajv missing property", pipeline: livepeer.PipelineUpscale,
		steps: []livepeertest.Step{{Status: 422, Body: livepeertest.StudioError(ajvMissng)}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		check: requireViolations(map[string]string{"prompt": "must have required property 'prompt'"}),
	},
	{
		// A gateway at a path genservice does not take for Studio, coercing like Studio:
		// the 422 comes back with its field (at Studio's own path genservice refuses such
		// a prompt before sending it; see upstream_quirks_e2e_test.go).
		name: "422 from the simulator: a coercing gateway refuses a numeric prompt", pipeline: livepeer.PipelineImageToImage,
		opts: []option{withSim(func(c *livepeertest.Config) { c.CoerceFormValues = true; c.BasePath = "/" })},
		call: func(ctx context.Context, c generationv1.GenerationServiceClient) error {
			_, err := c.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "2024", Image: image1()})
			return err
		},
		code: codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta:  map[string]string{"upstreamStatus": "422", "upstreamMessage": "must be string"},
		check: requireViolations(map[string]string{"prompt": "must be string"}),
	},
	{
		name: "422 from the simulator: file too large", pipeline: livepeer.PipelineAudioToText,
		opts: []option{withSim(func(c *livepeertest.Config) { c.MaxFileBytes = 1024 })},
		code: codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta:  map[string]string{"upstreamStatus": "422", "upstreamMessage": "File too large"},
		check: requireNoBadRequest,
	},
	// 404
	{
		name: "404 scripted", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 404, Body: livepeertest.StudioError("not found")}},
		code:  codes.Unimplemented, reason: "UPSTREAM_PIPELINE_UNSUPPORTED", hits: 1,
		meta: map[string]string{"upstreamStatus": "404", "pipeline": "segment-anything-2"},
	},
	{
		name: "404 from the simulator: Studio has no image-to-text", pipeline: livepeer.PipelineImageToText,
		opts: []option{withSim(func(c *livepeertest.Config) { c.Pipelines = livepeertest.StudioPipelines })},
		code: codes.Unimplemented, reason: "UPSTREAM_PIPELINE_UNSUPPORTED", hits: 1,
		meta: map[string]string{"upstreamStatus": "404", "pipeline": "image-to-text"},
		check: func(t *testing.T, h *harness, st *status.Status) {
			if !strings.Contains(st.Message(), "image-to-text") {
				t.Errorf("message does not name the pipeline: %q", st.Message())
			}
		},
	},
	// 429
	{
		name: "429 Retry-After seconds beyond the deadline: not retried", pipeline: livepeer.PipelineTextToImage,
		steps:   []livepeertest.Step{{Status: 429, Body: livepeertest.StudioError("Too many AI requests"), Header: retryAfter("30")}},
		timeout: 2 * time.Second,
		code:    codes.ResourceExhausted, reason: "UPSTREAM_RATE_LIMITED", hits: 1,
		meta:  map[string]string{"upstreamStatus": "429", "upstreamMessage": "Too many AI requests"},
		check: requireRetryInfo(30*time.Second, 30*time.Second),
	},
	{
		name: "429 Retry-After HTTP date", pipeline: livepeer.PipelineLLM,
		script: func(h *harness) {
			h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 429, Body: livepeertest.StudioError("Too many AI requests"),
				Header: retryAfter(time.Now().Add(20 * time.Second).UTC().Format(http.TimeFormat))})
		},
		timeout: 2 * time.Second,
		code:    codes.ResourceExhausted, reason: "UPSTREAM_RATE_LIMITED", hits: 1, upstreamStatus: 429,
		// The date has one-second resolution and genservice rounds up.
		check: requireRetryInfo(18*time.Second, 20*time.Second),
	},
	{
		name: "429 twice, Retry-After fits: retried once", pipeline: livepeer.PipelineTextToSpeech,
		steps: []livepeertest.Step{
			{Status: 429, Body: livepeertest.StudioError("Too many AI requests"), Header: retryAfter("1")},
			{Status: 429, Body: livepeertest.StudioError("Too many AI requests"), Header: retryAfter("1")},
		},
		code: codes.ResourceExhausted, reason: "UPSTREAM_RATE_LIMITED", hits: 2,
		check: requireRetryInfo(time.Second, time.Second),
	},
	{
		name: "429 without Retry-After: not retried", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 429, Body: livepeertest.StudioError("Too many AI requests")}, {Status: 429}},
		code:  codes.ResourceExhausted, reason: "UPSTREAM_RATE_LIMITED", hits: 1, upstreamStatus: 429,
		check: requireNoRetryInfo,
	},
	// 502, 503: retried once.
	{
		name: "502 twice", pipeline: livepeer.PipelineImageToVideo,
		steps: []livepeertest.Step{
			{Status: 502, Body: livepeertest.GatewayError("bad gateway")},
			{Status: 502, Body: livepeertest.GatewayError("bad gateway")},
		},
		code: codes.Unavailable, reason: "UPSTREAM_UNAVAILABLE", hits: 2,
		// The gateway kept failing without a Retry-After: genservice suggests its own delay.
		meta: map[string]string{"upstreamStatus": "502", "upstreamMessage": "bad gateway"}, check: requireRetryInfo(time.Second, time.Second),
	},
	{
		name: "503 twice with Retry-After", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{
			{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error"), Header: retryAfter("1")},
			{Status: 503, Body: livepeertest.GatewayError("Service Unavailable Error"), Header: retryAfter("1")},
		},
		code: codes.Unavailable, reason: "UPSTREAM_UNAVAILABLE", hits: 2,
		meta:  map[string]string{"upstreamStatus": "503", "upstreamMessage": "Service Unavailable Error"},
		check: requireRetryInfo(time.Second, time.Second),
	},
	// 504, 408
	{
		name: "504 twice", pipeline: livepeer.PipelineUpscale,
		steps: []livepeertest.Step{{Status: 504, Body: ""}, {Status: 504, Body: "upstream timed out"}},
		code:  codes.Unavailable, reason: "UPSTREAM_TIMEOUT", hits: 2,
		meta: map[string]string{"upstreamStatus": "504", "upstreamMessage": "upstream timed out"},
	},
	{
		name: "408 not retried", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 408, Body: livepeertest.StudioError("request timeout")}, {Status: 408}},
		code:  codes.Unavailable, reason: "UPSTREAM_TIMEOUT", hits: 1, upstreamStatus: 408,
		meta: map[string]string{"upstreamStatus": "408"},
	},
	{
		name: "our pipeline timeout, no caller deadline", pipeline: livepeer.PipelineTextToImage,
		opts: []option{withUpstream(func(c *livepeer.Config) {
			c.Timeouts = map[string]time.Duration{livepeer.PipelineTextToImage: 300 * time.Millisecond}
		})},
		steps:   []livepeertest.Step{{Delay: 5 * time.Second}},
		timeout: -1,
		code:    codes.Unavailable, reason: "UPSTREAM_TIMEOUT", hits: 1, upstreamStatus: -1,
		meta: map[string]string{"pipeline": "text-to-image"},
	},
	// 500 and other 5xx: never retried.
	{
		name: "500 never retried", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{
			{Status: 500, Body: livepeertest.RunnerError("Text-to-image pipeline error.")},
			{Status: 500, Body: livepeertest.RunnerError("Text-to-image pipeline error.")},
		},
		code: codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1, upstreamStatus: 500,
		meta: map[string]string{"upstreamStatus": "500", "upstreamMessage": "Text-to-image pipeline error."},
		check: func(t *testing.T, h *harness, st *status.Status) {
			if h.sim.Pending() != 1 {
				t.Errorf("pending steps = %d, want 1 (the 500 was retried)", h.sim.Pending())
			}
		},
	},
	// Studio's collapse of the gateway's failures (UPSTREAM §12.3): unavailable, with
	// RetryInfo, not retried by genservice (each attempt counts against the rate limit).
	{
		name: "Studio 500 Failed to generate", pipeline: livepeer.PipelineImageToImage,
		steps: []livepeertest.Step{
			{Status: 500, Body: livepeertest.StudioError("Failed to generate image")},
			{Status: 500, Body: livepeertest.StudioError("Failed to generate image")},
		},
		code: codes.Unavailable, reason: "UPSTREAM_UNAVAILABLE", hits: 1, upstreamStatus: 500,
		meta: map[string]string{"upstreamStatus": "500", "upstreamMessage": "Failed to generate image"},
		check: func(t *testing.T, h *harness, st *status.Status) {
			requireRetryInfo(time.Second, time.Second)(t, h, st)
			if h.sim.Pending() != 1 {
				t.Errorf("pending steps = %d, want 1 (genservice retried Studio's 500)", h.sim.Pending())
			}
			if !strings.Contains(st.Message(), "nothing was generated") {
				t.Errorf("message %q", st.Message())
			}
		},
	},
	{
		name: "Studio 500 FetchError", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 500, Body: livepeertest.StudioError("Internal server error: FetchError")}},
		code:  codes.Unavailable, reason: "UPSTREAM_UNAVAILABLE", hits: 1, upstreamStatus: 500,
		meta:  map[string]string{"upstreamMessage": "Internal server error: FetchError"},
		check: requireRetryInfo(time.Second, time.Second),
	},
	{
		name: "Studio 500 with another text stays internal", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 500, Body: livepeertest.StudioError("Internal server error: TypeError")}},
		code:  codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1, upstreamStatus: 500,
	},
	{
		name: "go-livepeer llm 500 says a runner 400 arrives this way", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{{Status: 500, Body: "Internal Server Error", ContentType: "text/plain"}},
		code:  codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1, upstreamStatus: 500,
		check: func(t *testing.T, h *harness, st *status.Status) {
			if !strings.Contains(st.Message(), "runner's 400") {
				t.Errorf("message %q does not say what an llm 500 usually means", st.Message())
			}
		},
	},
	{
		name: "507 other 5xx", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 507, Body: livepeertest.RunnerError("GPU out of memory.")}},
		code:  codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1,
		meta: map[string]string{"upstreamStatus": "507", "upstreamMessage": "GPU out of memory."},
	},
	// Other 4xx, 3xx.
	{
		name: "409 other 4xx", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 409, Body: livepeertest.GatewayError("conflict")}},
		code:  codes.FailedPrecondition, reason: "UPSTREAM_REJECTED", hits: 1,
		meta: map[string]string{"upstreamStatus": "409", "upstreamMessage": "conflict"},
	},
	{
		name: "418 other 4xx", pipeline: livepeer.PipelineImageToText,
		steps: []livepeertest.Step{{Status: 418, Body: "I'm a teapot"}},
		code:  codes.FailedPrecondition, reason: "UPSTREAM_REJECTED", hits: 1,
		meta: map[string]string{"upstreamStatus": "418", "upstreamMessage": "I'm a teapot"},
	},
	{
		name: "302 redirect is not followed", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 302, Header: http.Header{"Location": {"http://127.0.0.1:1/elsewhere"}}}},
		code:  codes.FailedPrecondition, reason: "UPSTREAM_REJECTED", hits: 1,
		meta: map[string]string{"upstreamStatus": "302"},
	},
	// 2xx that cannot be used.
	{
		name: "200 empty body", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 200}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
		meta: map[string]string{"pipeline": "text-to-image"},
	},
	{
		name: "200 not JSON", pipeline: livepeer.PipelineImageToImage,
		steps: []livepeertest.Step{{Status: 200, Body: "OK"}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 invalid JSON", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 200, Body: `{"images":[`, ContentType: "application/json"}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (images)", pipeline: livepeer.PipelineUpscale,
		steps: []livepeertest.Step{{Status: 200, Body: `{"foo":1}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (media without url)", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 200, Body: `{"images":[{"seed":1}]}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (llm)", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{{Status: 200, Body: `{"id":"x"}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (audio-to-text)", pipeline: livepeer.PipelineAudioToText,
		steps: []livepeertest.Step{{Status: 200, Body: `{"chunks":[]}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (masks)", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 200, Body: `{"masks":"[]"}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	// The masks arrive as text that genservice parses: text that is not the arrays it
	// should be is the gateway's fault, not the caller's.
	{
		name: "200 masks not a 3-deep list", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 200, Body: `{"masks":"[[0.5, 1.0]]","scores":"[0.9]","logits":"[]"}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
		check: func(t *testing.T, h *harness, st *status.Status) {
			if !strings.Contains(st.Message(), `"masks"`) {
				t.Errorf("message %q does not name masks", st.Message())
			}
		},
	},
	{
		name: "200 masks not rectangular", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 200, Body: `{"masks":"[[[0.5, 1.0], [1.0]]]","scores":"[0.9]","logits":"[]"}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 masks and scores disagree", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 200, Body: `{"masks":"[[[1.0]], [[0.0]]]","scores":"[0.9]","logits":"[[[1.0]], [[0.0]]]"}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
		check: func(t *testing.T, h *harness, st *status.Status) {
			if !strings.Contains(st.Message(), "2 masks but 1 scores") {
				t.Errorf("message %q", st.Message())
			}
		},
	},
	{
		name: "200 scores not numbers", pipeline: livepeer.PipelineSegmentAnything2,
		steps: []livepeertest.Step{{Status: 200, Body: `{"masks":"[[[1.0]]]","scores":"[high]","logits":"[[[1.0]]]"}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (image-to-text)", pipeline: livepeer.PipelineImageToText,
		steps: []livepeertest.Step{{Status: 200, Body: `[]`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 wrong shape (audio)", pipeline: livepeer.PipelineTextToSpeech,
		steps: []livepeertest.Step{{Status: 200, Body: `{"audio":{}}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "202 async answer", pipeline: livepeer.PipelineImageToVideo,
		steps: []livepeertest.Step{{Status: 202, Body: `{}`}},
		code:  codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1,
	},
	{
		name: "200 too large", pipeline: livepeer.PipelineSegmentAnything2,
		opts: []option{withUpstream(func(c *livepeer.Config) { c.MaxResponseBytes = 64 })},
		code: codes.Internal, reason: "UPSTREAM_BAD_RESPONSE", hits: 1, upstreamStatus: 200,
	},
	// No HTTP answer.
	{
		name: "dropped connection", pipeline: livepeer.PipelineImageToImage,
		steps: []livepeertest.Step{{DropConnection: true}, {DropConnection: true}},
		code:  codes.Unavailable, reason: "UPSTREAM_CONNECTION_DROPPED", hits: 1, upstreamStatus: -1,
		meta: map[string]string{"pipeline": "image-to-image"},
		check: func(t *testing.T, h *harness, st *status.Status) {
			if h.sim.Pending() != 1 {
				t.Errorf("pending steps = %d, want 1 (the drop was retried)", h.sim.Pending())
			}
			if !strings.Contains(st.Message(), "no orchestrator") || strings.Contains(st.Message(), "could not reach") {
				t.Errorf("message %q", st.Message())
			}
		},
	},
	{
		name: "unreachable gateway (closed port): connect error retried once", pipeline: livepeer.PipelineTextToImage,
		closedGateway: true,
		code:          codes.Unavailable, reason: "UPSTREAM_UNREACHABLE", hits: 0, attempts: 2, upstreamStatus: -1,
		meta: map[string]string{"pipeline": "text-to-image"},
	},
	// Bodies that must be reduced to a short sanitized text.
	{
		name: "HTML error page with a title", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 500, Body: htmlPage, ContentType: "text/html"}},
		code:  codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1,
		meta: map[string]string{"upstreamMessage": "500 Internal Server Error"},
		check: func(t *testing.T, h *harness, st *status.Status) {
			if strings.Contains(string(statusBytes(st.Err())), "<") {
				t.Errorf("HTML reached the status: %q", st.Message())
			}
		},
	},
	{
		name: "HTML error page without a title", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{{Status: 500, Body: "<html><body>" + longText + "</body></html>", ContentType: "text/html"}},
		code:  codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1,
		meta: map[string]string{"upstreamMessage": "non-JSON (HTML) error page"},
	},
	{
		name: "long plain-text body is truncated", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 500, Body: longText}},
		code:  codes.Internal, reason: "UPSTREAM_INTERNAL_ERROR", hits: 1,
		check: requireShortUpstreamMessage(tailMark),
	},
	{
		name: "long JSON message is truncated", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 400, Body: livepeertest.GatewayError(longText)}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		check: requireShortUpstreamMessage(tailMark),
	},
	{
		name: "long multibyte message is cut on a rune boundary", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 409, Body: livepeertest.StudioError(strings.Repeat("é漢", 200) + tailMark)}},
		code:  codes.FailedPrecondition, reason: "UPSTREAM_REJECTED", hits: 1,
		check: requireShortUpstreamMessage(tailMark),
	},
	{
		name: "control characters are stripped", pipeline: livepeer.PipelineTextToImage,
		steps: []livepeertest.Step{{Status: 400, Body: livepeertest.GatewayError("bad\x1b[31m input\r\nInjected-Header: x\x00\x07 end")}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
		meta: map[string]string{"upstreamMessage": "bad[31m input Injected-Header: x end"},
	},
	{
		name: "many 422 violations stay under the details budget", pipeline: livepeer.PipelineLLM,
		steps: []livepeertest.Step{{Status: 422, Body: manyViolations(60)}},
		code:  codes.InvalidArgument, reason: "UPSTREAM_INVALID_ARGUMENT", hits: 1,
	},
}

// manyViolations is a runner 422 for an LLM request with n bad messages.
func manyViolations(n int) string {
	vs := make([]livepeertest.Violation, n)
	for i := range vs {
		vs[i] = livepeertest.Violation{Loc: []any{"body", "messages", i, "content"}, Msg: "Input should be a valid string", Type: "string_type"}
	}
	return livepeertest.ValidationError(vs...)
}

// runUpstreamCase runs one row against a fresh harness, checks the outcome against the
// row, and returns the harness and the call's error.
func runUpstreamCase(t *testing.T, tc upstreamCase, extra ...option) (*harness, error) {
	t.Helper()
	h, id, err := startUpstreamCase(t, tc, extra...)
	checkUpstreamCase(t, tc, h, id, err)
	return h, err
}

// startUpstreamCase makes the row's call and returns the harness, the call's request
// id and its error, unchecked.
func startUpstreamCase(t *testing.T, tc upstreamCase, extra ...option) (*harness, string, error) {
	t.Helper()
	opts := append([]option{}, tc.opts...)
	if tc.closedGateway {
		opts = append(opts, withGatewayURL(closedPortURL(t)))
	}
	opts = append(opts, extra...)
	h := newHarness(t, opts...)
	if len(tc.steps) > 0 {
		h.sim.Script(tc.pipeline, tc.steps...)
	}
	if tc.script != nil {
		tc.script(h)
	}
	ctx := context.Background()
	switch {
	case tc.timeout == 0:
		ctx = ctxTimeout(t, 10*time.Second)
	case tc.timeout > 0:
		ctx = ctxTimeout(t, tc.timeout)
	}
	id := rid(t, "call")
	ctx = withRequestID(ctx, id)
	call := tc.call
	if call == nil {
		r := rpcFor(t, tc.pipeline)
		call = func(ctx context.Context, c generationv1.GenerationServiceClient) error {
			_, err := r.call(ctx, c)
			return err
		}
	}
	return h, id, call(ctx, h.client)
}

func checkUpstreamCase(t *testing.T, tc upstreamCase, h *harness, id string, err error) {
	t.Helper()
	st := requireStatus(t, err, tc.code, tc.reason)

	meta := map[string]string{}
	for k, v := range tc.meta {
		if v == "$fingerprint" {
			v = fingerprint(t, h.key)
		}
		meta[k] = v
	}
	requireMeta(t, st, meta)
	if tc.check != nil {
		tc.check(t, h, st)
	}
	if got := h.sim.Hits(tc.pipeline); got != tc.hits {
		t.Errorf("simulator hits = %d, want %d", got, tc.hits)
	}

	line := h.callLine(t, id)
	if line.str("code") != tc.code.String() {
		t.Errorf("log code = %q, want %q", line.str("code"), tc.code)
	}
	if line.str("principal") != defaultPrincipal || line.str("level") != "WARN" {
		t.Errorf("log principal/level = %q/%q", line.str("principal"), line.str("level"))
	}
	attempts := tc.attempts
	if attempts == 0 {
		attempts = tc.hits
	}
	if a, _ := line.num("attempts"); int(a) != attempts {
		t.Errorf("log attempts = %v, want %d", line["attempts"], attempts)
	}
	wantUp := tc.upstreamStatus
	if wantUp == 0 {
		wantUp = meta2int(meta["upstreamStatus"])
	}
	if wantUp == 0 && tc.hits > 0 && tc.hits <= len(tc.steps) {
		wantUp = tc.steps[tc.hits-1].Status
	}
	if wantUp != 0 {
		if s, _ := line.num("upstreamStatus"); int(s) != max(wantUp, 0) {
			t.Errorf("log upstreamStatus = %v, want %d", line["upstreamStatus"], max(wantUp, 0))
		}
	}
}

func meta2int(s string) int {
	var n int
	_, _ = fmt.Sscanf(s, "%d", &n)
	return n
}

// TestE2E_UpstreamErrors drives every upstream row of the error table through the
// simulator: code, reason, metadata, extra details, retries (simulator hits), the log
// line, and the hygiene rules (domain, lowerCamelCase keys, < 2 KB details).
func TestE2E_UpstreamErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range upstreamCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			runUpstreamCase(t, tc)
			if tc.timeout > 0 && time.Since(start) > tc.timeout+2*time.Second {
				t.Errorf("call took %v with a %v deadline", time.Since(start), tc.timeout)
			}
		})
	}
}

// validationCase is a request genservice itself refuses.
type validationCase struct {
	name     string
	pipeline string
	call     func(ctx context.Context, c generationv1.GenerationServiceClient) error
	fields   []string
}

func sam2(r *generationv1.SegmentAnything2Request) func(context.Context, generationv1.GenerationServiceClient) error {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.SegmentAnything2(ctx, r)
		return err
	}
}

func t2i(r *generationv1.TextToImageRequest) func(context.Context, generationv1.GenerationServiceClient) error {
	return func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.TextToImage(ctx, r)
		return err
	}
}

var validationCases = []validationCase{
	{"TextToImage empty prompt", livepeer.PipelineTextToImage, t2i(&generationv1.TextToImageRequest{}), []string{"prompt"}},
	{"TextToImage blank prompt", livepeer.PipelineTextToImage, t2i(&generationv1.TextToImageRequest{Prompt: " \t\n"}), []string{"prompt"}},
	{"TextToImage bad sizes and counts", livepeer.PipelineTextToImage, t2i(&generationv1.TextToImageRequest{
		Prompt: "p", Height: ptr[int32](0), Width: ptr[int32](-8), GuidanceScale: ptr(-1.0),
		NumInferenceSteps: ptr[int32](0), NumImagesPerPrompt: ptr[int32](-2),
	}), []string{"height", "width", "guidance_scale", "num_inference_steps", "num_images_per_prompt"}},
	{"ImageToImage missing image", livepeer.PipelineImageToImage, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "p"})
		return err
	}, []string{"image.content"}},
	{"ImageToImage empty image and bad strength", livepeer.PipelineImageToImage, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "p", Image: &generationv1.InputFile{Filename: "x.png"}, Strength: ptr(1.5), ImageGuidanceScale: ptr(-0.1)})
		return err
	}, []string{"image.content", "strength", "image_guidance_scale"}},
	{"ImageToVideo height not divisible by 8", livepeer.PipelineImageToVideo, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.ImageToVideo(ctx, &generationv1.ImageToVideoRequest{Image: image1(), Height: ptr[int32](100), Fps: ptr[int32](0)})
		return err
	}, []string{"height", "fps"}},
	{"Upscale missing prompt and image", livepeer.PipelineUpscale, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.Upscale(ctx, &generationv1.UpscaleRequest{})
		return err
	}, []string{"prompt", "image.content"}},
	{"AudioToText missing audio", livepeer.PipelineAudioToText, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.AudioToText(ctx, &generationv1.AudioToTextRequest{})
		return err
	}, []string{"audio.content"}},
	{"AudioToText bad return_timestamps", livepeer.PipelineAudioToText, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.AudioToText(ctx, &generationv1.AudioToTextRequest{Audio: &generationv1.InputFile{Content: wavBytes}, ReturnTimestamps: generationv1.ReturnTimestamps(7)})
		return err
	}, []string{"return_timestamps"}},
	{"TextToImage bad loras", livepeer.PipelineTextToImage, t2i(&generationv1.TextToImageRequest{
		Prompt: "p", Loras: map[string]float64{" ": 1, "a/b": math.NaN(), "c/d": 0.5},
	}), []string{"loras", `loras["a/b"]`}},
	{"TextToImage lora name too long", livepeer.PipelineTextToImage, t2i(&generationv1.TextToImageRequest{
		Prompt: "p", Loras: map[string]float64{strings.Repeat("a", 257): 1, "ok/name": 1},
	}), []string{"loras"}},
	{"ImageToImage too many loras", livepeer.PipelineImageToImage, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		loras := map[string]float64{}
		for i := range 17 {
			loras[fmt.Sprintf("lora/%d", i)] = 1
		}
		_, err := c.ImageToImage(ctx, &generationv1.ImageToImageRequest{Prompt: "p", Image: image1(), Loras: loras})
		return err
	}, []string{"loras"}},
	{"SegmentAnything2 point_labels count mismatch", livepeer.PipelineSegmentAnything2, sam2(&generationv1.SegmentAnything2Request{
		Image: image1(), PointCoords: []*generationv1.Point{{X: 1, Y: 2}, {X: 3, Y: 4}}, PointLabels: []int32{1},
	}), []string{"point_labels"}},
	{"SegmentAnything2 point_labels without point_coords", livepeer.PipelineSegmentAnything2, sam2(&generationv1.SegmentAnything2Request{
		Image: image1(), PointLabels: []int32{1},
	}), []string{"point_labels"}},
	{"SegmentAnything2 non-finite and out-of-range prompts", livepeer.PipelineSegmentAnything2, sam2(&generationv1.SegmentAnything2Request{
		Image: image1(), PointCoords: []*generationv1.Point{{X: math.NaN(), Y: 1}}, PointLabels: []int32{2},
		Box: &generationv1.Box{X2: math.Inf(1), Y2: 1},
	}), []string{"point_coords[0].x", "point_labels[0]", "box.x2"}},
	{"SegmentAnything2 too many points", livepeer.PipelineSegmentAnything2, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		r := &generationv1.SegmentAnything2Request{Image: image1()}
		for i := range 1025 {
			r.PointCoords = append(r.PointCoords, &generationv1.Point{X: float64(i), Y: 1})
			r.PointLabels = append(r.PointLabels, 1)
		}
		_, err := c.SegmentAnything2(ctx, r)
		return err
	}, []string{"point_coords"}},
	{"SegmentAnything2 box corners swapped", livepeer.PipelineSegmentAnything2, sam2(&generationv1.SegmentAnything2Request{
		Image: image1(), Box: &generationv1.Box{X1: 10, Y1: 10, X2: 5, Y2: 20},
	}), []string{"box"}},
	{"SegmentAnything2 mask_input not 256×256", livepeer.PipelineSegmentAnything2, sam2(&generationv1.SegmentAnything2Request{
		Image: image1(), MaskInput: &generationv1.Mask{Height: 2, Width: 2, Values: []float32{1, 2, 3}},
	}), []string{"mask_input", "mask_input.values"}},
	{"SegmentAnything2 mask_input not finite", livepeer.PipelineSegmentAnything2, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		m := samMaskInput()
		m.Values[5], m.Values[9] = float32(math.NaN()), float32(math.Inf(-1))
		_, err := c.SegmentAnything2(ctx, &generationv1.SegmentAnything2Request{Image: image1(), MaskInput: m})
		return err
	}, []string{"mask_input.values[5]"}},
	{"LLM no messages", livepeer.PipelineLLM, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.Llm(ctx, &generationv1.LlmRequest{})
		return err
	}, []string{"messages"}},
	{"LLM bad role, max_tokens, top_p", livepeer.PipelineLLM, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.Llm(ctx, &generationv1.LlmRequest{
			Messages:  []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "a"}, {Content: "b"}},
			MaxTokens: ptr[int32](0), TopP: ptr(1.5),
		})
		return err
	}, []string{"messages[1].role", "max_tokens", "top_p"}},
	{"LlmStream unspecified and unknown roles", livepeer.PipelineLLM, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		s, err := c.LlmStream(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{
			{Role: generationv1.LlmRole_LLM_ROLE_SYSTEM, Content: "a"}, {Content: "b"}, {Role: generationv1.LlmRole(9), Content: "c"},
		}})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}, []string{"messages[1].role", "messages[2].role"}},
	{"ImageToText missing image", livepeer.PipelineImageToText, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.ImageToText(ctx, &generationv1.ImageToTextRequest{Prompt: ptr("what?")})
		return err
	}, []string{"image.content"}},
	{"TextToSpeech empty text", livepeer.PipelineTextToSpeech, func(ctx context.Context, c generationv1.GenerationServiceClient) error {
		_, err := c.TextToSpeech(ctx, &generationv1.TextToSpeechRequest{Description: ptr("calm")})
		return err
	}, []string{"text"}},
}

// TestE2E_ValidationErrors: requests that fail genservice's own checks get
// INVALID_ARGUMENT / INVALID_REQUEST with a BadRequest naming every bad field, and
// never reach the gateway.
func TestE2E_ValidationErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range validationCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := rid(t, "v")
			err := tc.call(withRequestID(ctxTimeout(t, 5*time.Second), id), h.client)
			st := requireStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST")
			got := fieldViolations(t, st)
			if len(got) != len(tc.fields) {
				t.Errorf("violations = %v, want fields %v", got, tc.fields)
			}
			for _, f := range tc.fields {
				if got[f] == "" {
					t.Errorf("no violation for %q in %v", f, got)
				}
				if !strings.Contains(st.Message(), f) {
					t.Errorf("message %q does not name %q", st.Message(), f)
				}
			}
			if n := h.sim.Hits(tc.pipeline); n != 0 {
				t.Errorf("simulator hits = %d, want 0", n)
			}
			line := h.callLine(t, id)
			if line.str("code") != "InvalidArgument" {
				t.Errorf("log code = %q", line.str("code"))
			}
			if _, has := line["attempts"]; has {
				t.Errorf("log line has upstream attempts: %v", line)
			}
		})
	}
	t.Cleanup(func() {
		if n := len(h.sim.Requests()); n != 0 {
			t.Errorf("simulator received %d requests for invalid calls", n)
		}
	})
}

// TestE2E_StudioLLMMultipartQuirk: Livepeer Studio answers the JSON llm request with 422
// "Expected multipart/form-data content-type"; the caller gets UNIMPLEMENTED with the
// cause, not INVALID_ARGUMENT as if its own request were wrong.
func TestE2E_StudioLLMMultipartQuirk(t *testing.T) {
	h := newHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 422, Body: livepeertest.StudioError("Expected multipart/form-data content-type")})
	ctx := ctxTimeout(t, 5*time.Second)
	_, err := h.client.Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
	st := status.Convert(err)
	if st.Code() != codes.Unimplemented || errorInfo(t, st).GetReason() != "UPSTREAM_PIPELINE_UNSUPPORTED" {
		t.Fatalf("got %v %q, want Unimplemented UPSTREAM_PIPELINE_UNSUPPORTED", st.Code(), st.Message())
	}
	if !strings.Contains(st.Message(), "go-livepeer") {
		t.Errorf("message does not say what to do: %q", st.Message())
	}
	// The same 422 on another pipeline stays the caller's invalid argument.
	h.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Status: 422, Body: livepeertest.StudioError("Expected multipart/form-data content-type")})
	_, err = h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "x"})
	if c := status.Code(err); c != codes.InvalidArgument {
		t.Errorf("text-to-image 422: %v, want InvalidArgument", c)
	}
}
