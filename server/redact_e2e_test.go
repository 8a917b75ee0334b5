package server_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/protoadapt"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

// echoKey is the backend key of the key-echo tests: random-looking, like a real one.
const echoKey = "d41c8e07-93fa-4b2e-b6c1-5fe0a7d29c38"

// echoFragment returns the first run of at least 8 characters of echoKey found in s,
// ignoring ASCII case, or "". Any longer fragment contains such a run.
func echoFragment(s string) string {
	ls, lk := strings.ToLower(s), strings.ToLower(echoKey)
	for i := 0; i+8 <= len(lk); i++ {
		if j := strings.Index(ls, lk[i:i+8]); j >= 0 {
			return s[j : j+8]
		}
	}
	return ""
}

// jsonEscapeAll writes every character of s as a JSON \u escape.
func jsonEscapeAll(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, `\u%04x`, c)
	}
	return b.String()
}

// requireNoEchoKey checks everything of a status a caller can see, piece by piece: the
// message, every ErrorInfo metadata value, and every detail.
func requireNoEchoKey(t *testing.T, st *status.Status) {
	t.Helper()
	if f := echoFragment(st.Message()); f != "" {
		t.Errorf("status message carries %q of the key: %q", f, st.Message())
	}
	for k, v := range errorInfo(t, st).GetMetadata() {
		if f := echoFragment(v); f != "" {
			t.Errorf("ErrorInfo.metadata[%q] carries %q of the key: %q", k, f, v)
		}
	}
	for _, d := range st.Details() {
		m, ok := d.(protoadapt.MessageV1)
		if !ok {
			t.Errorf("detail %T is not a proto message", d)
			continue
		}
		text := prototext.Format(protoadapt.MessageV2Of(m))
		if f := echoFragment(text); f != "" {
			t.Errorf("detail %T carries %q of the key: %s", d, f, text)
		}
	}
	if f := echoFragment(string(statusBytes(status.ErrorProto(st.Proto())))); f != "" {
		t.Errorf("the serialized status carries %q of the key", f)
	}
}

// TestE2E_GatewayEchoingKeyFragments: a gateway that echoes the key escaped, with a
// control character inside it, or minus its last character makes genservice repeat
// neither the key nor a long fragment of it: not in the status message, not in any
// ErrorInfo metadata value or other detail, not in the log. The status still says that
// the gateway mentioned something there.
func TestE2E_GatewayEchoingKeyFragments(t *testing.T) {
	t.Parallel()
	k := echoKey
	for _, tc := range []struct {
		name   string
		step   livepeertest.Step
		code   codes.Code
		reason string
	}{
		{"401, key \\u-escaped", livepeertest.Step{Status: 401, Body: `{"errors":["no token ` + jsonEscapeAll(k) + ` found"]}`},
			codes.Unauthenticated, "UPSTREAM_API_KEY_REJECTED"},
		{"401, dashes \\u-escaped", livepeertest.Step{Status: 401, Body: `{"error":"Unauthorized","message":"Invalid API key ` + strings.ReplaceAll(k, "-", `\u002d`) + `"}`},
			codes.Unauthenticated, "UPSTREAM_API_KEY_REJECTED"},
		{"403, control character inside the key", livepeertest.Step{Status: 403, Body: `{"error":{"message":"key ` + k[:12] + `\u0000` + k[12:] + ` is CORS-enabled"}}`},
			codes.PermissionDenied, "UPSTREAM_API_KEY_FORBIDDEN"},
		{"500 plain text, raw control byte inside the key", livepeertest.Step{Status: 500, Body: "upstream rejected Bearer " + k[:20] + "\x1b" + k[20:] + "\n"},
			codes.Internal, "UPSTREAM_INTERNAL_ERROR"},
		{"401, minus its last character", livepeertest.Step{Status: 401, Body: `{"errors":["no token ` + k[:len(k)-1] + ` found"]}`},
			codes.Unauthenticated, "UPSTREAM_API_KEY_REJECTED"},
		{"503, upper-cased", livepeertest.Step{Status: 503, Body: `{"error":{"message":"no capacity for ` + strings.ToUpper(k) + `"}}`},
			codes.Unavailable, "UPSTREAM_UNAVAILABLE"},
		{"422, escaped in loc and msg", livepeertest.Step{Status: 422, Body: livepeertest.ValidationError(livepeertest.Violation{
			Loc: []any{"header", k[:len(k)-1]}, Msg: "unexpected token " + k[:9] + "\x07" + k[9:], Type: "value_error"})},
			codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
		{"400, Studio ajv error naming the key", livepeertest.Step{Status: 400, Body: `{"errors":["{\"instancePath\":\"/` + k + `\",\"params\":{},\"message\":\"must not be ` + strings.ReplaceAll(k, "-", `\\u002d`) + `\"}"]}`},
			codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withKey(echoKey), withUpstream(func(c *livepeer.Config) { c.MaxAttempts = 1 }))
			h.sim.Script(livepeer.PipelineTextToImage, tc.step)
			_, err := h.client.TextToImage(withRequestID(ctxTimeout(t, 10*time.Second), "echo-key"), &generationv1.TextToImageRequest{Prompt: "p"})
			st := requireStatus(t, err, tc.code, tc.reason)
			requireNoEchoKey(t, st)
			if !strings.Contains(string(statusBytes(err)), "[REDACTED]") {
				t.Errorf("the status does not show where the key was redacted: %q %v", st.Message(), st.Details())
			}
			h.waitCallLine(t, "echo-key")
			if f := echoFragment(string(h.logs.Bytes())); f != "" {
				t.Errorf("the log carries %q of the key:\n%s", f, h.logs.Bytes())
			}
		})
	}
	t.Run("LLM stream error event, key escaped", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, withKey(echoKey))
		h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Events: []string{
			`{"error":{"message":"token ` + jsonEscapeAll(k[:len(k)-1]) + ` expired"}}`}, Truncate: true})
		stream, err := h.client.LlmStream(withRequestID(ctxTimeout(t, 10*time.Second), "echo-key-stream"),
			&generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
		if err != nil {
			t.Fatal(err)
		}
		for err == nil {
			_, err = stream.Recv()
		}
		if errors.Is(err, io.EOF) {
			t.Fatal("the stream ended cleanly; want the gateway's error event")
		}
		st := requireStatus(t, err, codes.Internal, "UPSTREAM_INTERNAL_ERROR")
		requireNoEchoKey(t, st)
		h.waitCallLine(t, "echo-key-stream")
		if f := echoFragment(string(h.logs.Bytes())); f != "" {
			t.Errorf("the log carries %q of the key:\n%s", f, h.logs.Bytes())
		}
	})
}
