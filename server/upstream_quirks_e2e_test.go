package server_test

// The real upstreams' quirks (UPSTREAM.md §12), through the real server against the
// simulator's Studio and go-livepeer modes.

import (
	"strings"
	"testing"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

func studio(c *livepeertest.Config)     { c.Studio = true }
func goLivepeer(c *livepeertest.Config) { c.GoLivepeer = true }

// Studio coerces multipart text before validating (§12.1): a prompt that begins with a
// number cannot pass it, so genservice refuses it with a BadRequest that says why and
// what to do, without a round trip. Text-to-image is JSON and unaffected.
func TestQuirk_StudioRefusesPromptsThatBeginWithANumber(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(studio))
	for _, tc := range []struct {
		field string
		req   *generationv1.ImageToImageRequest
	}{
		{"prompt", &generationv1.ImageToImageRequest{Prompt: "4k photo of a harbour", Image: image1()}},
		{"prompt", &generationv1.ImageToImageRequest{Prompt: "3D render of a teapot", Image: image1()}},
		{"negative_prompt", &generationv1.ImageToImageRequest{Prompt: "a harbour", NegativePrompt: ptr(" .5 blur"), Image: image1()}},
		{"prompt", &generationv1.ImageToImageRequest{Prompt: "false", Image: image1()}},
	} {
		_, err := h.client.ImageToImage(ctxTimeout(t, 5*time.Second), tc.req)
		st := requireStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST")
		fv := fieldViolations(t, st)
		if d := fv[tc.field]; !strings.Contains(d, "Livepeer Studio") {
			t.Errorf("%s: BadRequest %v does not say why", tc.field, fv)
		}
	}
	if n := h.sim.Hits(livepeer.PipelineImageToImage); n != 0 {
		t.Errorf("image-to-image hits = %d, want 0 (refused before sending)", n)
	}
	// The same prompt goes through text-to-image (JSON) and through a word-first rewrite.
	if _, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "4k photo of a harbour"}); err != nil {
		t.Errorf("text-to-image with a number-first prompt: %v", err)
	}
	if _, err := h.client.ImageToImage(ctxTimeout(t, 5*time.Second), &generationv1.ImageToImageRequest{Prompt: "a 4k photo of a harbour", Image: image1()}); err != nil {
		t.Errorf("image-to-image with a word-first prompt: %v", err)
	}
}

// Every return_timestamps setting passes Studio's coercion and reaches the gateway as
// a value the runner reads as meant (§12.1): none is "False", which Studio keeps a
// string, where "false" would become a boolean and be refused. Unspecified sends
// nothing, for the gateway's default.
func TestQuirk_StudioReturnTimestamps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(studio))
	want := map[generationv1.ReturnTimestamps]string{
		generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_UNSPECIFIED: "",
		generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_SENTENCE:    "sentence",
		generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_WORD:        "word",
		generationv1.ReturnTimestamps_RETURN_TIMESTAMPS_NONE:        "False",
	}
	for in, sent := range want {
		h.sim.Reset()
		_, err := h.client.AudioToText(ctxTimeout(t, 5*time.Second), &generationv1.AudioToTextRequest{Audio: &generationv1.InputFile{Content: wavBytes}, ReturnTimestamps: in})
		if err != nil {
			t.Errorf("return_timestamps %s: %v", in, err)
			continue
		}
		reqs := h.sim.Requests()
		got, has := "", false
		if len(reqs) == 1 {
			got, has = reqs[0].Form["return_timestamps"]
		}
		if len(reqs) != 1 || got != sent || has != (sent != "") {
			t.Errorf("return_timestamps %s: gateway got %+v, want %q", in, formOf(reqs), sent)
		}
	}
}

// Studio turns the gateway's 5xx into 500 "Failed to generate …" and an unreachable
// gateway into 500 "Internal server error: FetchError" (§12.3): the caller gets
// UNAVAILABLE with RetryInfo and the upstream text, and genservice does not retry.
func TestQuirk_StudioCollapsedFailuresAreUnavailable(t *testing.T) {
	t.Parallel()
	for name, step := range map[string]livepeertest.Step{
		"gateway 503":     {Status: 503, Body: livepeertest.GatewayError("no orchestrators available")},
		"no orchestrator": {NoOrchestrator: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withSim(studio))
			h.sim.Script(livepeer.PipelineTextToImage, step, step)
			_, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "a harbour"})
			st := requireStatus(t, err, codes.Unavailable, "UPSTREAM_UNAVAILABLE")
			if _, ok := detail[*errdetails.RetryInfo](st); !ok {
				t.Error("no RetryInfo")
			}
			if m := errorInfo(t, st).GetMetadata()["upstreamMessage"]; !strings.HasPrefix(m, "Failed to generate") && !strings.Contains(m, "FetchError") {
				t.Errorf("upstreamMessage %q", m)
			}
			if n := h.sim.Hits(livepeer.PipelineTextToImage); n != 1 {
				t.Errorf("hits = %d, want 1 (not retried)", n)
			}
		})
	}
}

// go-livepeer closes the connection when no orchestrator serves the model (§12.2): that
// is not "could not reach the gateway".
func TestQuirk_GoLivepeerDropsTheConnection(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(goLivepeer))
	h.sim.Script(livepeer.PipelineImageToImage, livepeertest.Step{NoOrchestrator: true}, livepeertest.Step{NoOrchestrator: true})
	_, err := h.client.ImageToImage(ctxTimeout(t, 5*time.Second), &generationv1.ImageToImageRequest{Prompt: "a harbour", Image: image1()})
	st := requireStatus(t, err, codes.Unavailable, "UPSTREAM_CONNECTION_DROPPED")
	if !strings.Contains(st.Message(), "no orchestrator") || strings.Contains(st.Message(), "could not reach") {
		t.Errorf("message %q", st.Message())
	}
	if n := h.sim.Hits(livepeer.PipelineImageToImage); n != 1 {
		t.Errorf("hits = %d, want 1 (not retried)", n)
	}
}

// Through go-livepeer a runner's 400 on llm arrives as 500 (§12.4): the message says so.
func TestQuirk_GoLivepeerLLMBadRequestArrivesAs500(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(goLivepeer))
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Status: 400, Body: livepeertest.RunnerError("pipeline configured with A but called with B")})
	_, err := h.client.Llm(ctxTimeout(t, 5*time.Second), &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
	st := requireStatus(t, err, codes.Internal, "UPSTREAM_INTERNAL_ERROR")
	if !strings.Contains(st.Message(), "runner's 400") {
		t.Errorf("message %q", st.Message())
	}
}

// A runner error in the middle of a stream never arrives through go-livepeer: the stream
// just ends (§12.4), and the truncation message says what that usually means.
func TestQuirk_GoLivepeerStreamCut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSim(goLivepeer))
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{RunnerErrorMidStream: "CUDA out of memory", RunnerErrorAfter: 2})
	s, err := h.client.LlmStream(ctxTimeout(t, 5*time.Second), &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	events, err := stRecvAll(s)
	st := requireStatus(t, err, codes.Unavailable, "UPSTREAM_STREAM_TRUNCATED")
	if len(events) != 2 || !strings.Contains(st.Message(), "failed mid-generation") {
		t.Errorf("%d events, message %q", len(events), st.Message())
	}
}

// The runner's top_p range is [0, 1] inclusive (§12.6): 0 is accepted.
func TestQuirk_TopPZeroAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	zero := 0.0
	if _, err := h.client.Llm(ctxTimeout(t, 5*time.Second), &generationv1.LlmRequest{
		Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}, TopP: &zero,
	}); err != nil {
		t.Errorf("top_p 0: %v", err)
	}
}

func formOf(reqs []livepeertest.Request) []map[string]string {
	out := make([]map[string]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Form
	}
	return out
}
