package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

// canaryKey is a backend key that must never appear anywhere a person or a log
// pipeline could read it: logs, status messages, status details, response metadata.
const canaryKey = "canary-7f3c9e1d-DO-NOT-LOG"

// canaryForms are the key and the encodings a careless log or error could carry.
var canaryForms = func() map[string]string {
	forms := map[string]string{"raw": canaryKey, "hex": hex.EncodeToString([]byte(canaryKey)),
		"HEX": strings.ToUpper(hex.EncodeToString([]byte(canaryKey)))}
	for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64url": base64.URLEncoding,
		"base64raw": base64.RawStdEncoding, "base64rawurl": base64.RawURLEncoding} {
		forms[name] = strings.TrimRight(enc.EncodeToString([]byte(canaryKey)), "=")
		forms[name+"(Bearer)"] = strings.TrimRight(enc.EncodeToString([]byte("Bearer "+canaryKey)), "=")
	}
	return forms
}()

// requireNoCanary fails if data holds the key in any form.
func requireNoCanary(t testing.TB, where string, data []byte) {
	t.Helper()
	for name, form := range canaryForms {
		if i := bytes.Index(data, []byte(form)); i >= 0 {
			lo, hi := max(i-80, 0), min(i+len(form)+40, len(data))
			t.Errorf("the API key (%s) leaked into %s: …%q…", name, where, data[lo:hi])
		}
	}
}

// requireCleanHarness checks a canary harness's whole log.
func requireCleanHarness(t testing.TB, h *harness) {
	t.Helper()
	requireNoCanary(t, "the log", h.logs.Bytes())
}

func newCanaryHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	h := newHarness(t, append([]option{withKey(canaryKey)}, opts...)...)
	t.Cleanup(func() { requireCleanHarness(t, h) })
	return h
}

// callCollect calls r and returns everything the caller can see besides the response.
func callCollect(ctx context.Context, c generationv1.GenerationServiceClient, call func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) error) ([]byte, error) {
	var hdr, trl metadata.MD
	err := call(ctx, c, grpc.Header(&hdr), grpc.Trailer(&trl))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%v\n%v\n", hdr, trl)
	if err != nil {
		b.Write(statusBytes(err))
	}
	return b.Bytes(), err
}

// TestCanary_Success: successful calls of every RPC, and the LLM stream.
func TestCanary_Success(t *testing.T) {
	t.Parallel()
	h := newCanaryHarness(t)
	ctx := ctxTimeout(t, 10*time.Second)
	for _, r := range unaryRPCs {
		seen, err := callCollect(withRequestID(ctx, "canary-"+r.name), h.client, func(ctx context.Context, c generationv1.GenerationServiceClient, opts ...grpc.CallOption) error {
			_, err := r.call(ctx, c, opts...)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		requireNoCanary(t, r.name+" response metadata", seen)
	}
	stream, err := h.client.LlmStream(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			requireNoCanary(t, "LlmStream status", statusBytes(err))
			t.Fatalf("LlmStream: %v", err)
		}
		events++
	}
	if events == 0 {
		t.Error("LlmStream sent no events")
	}
	if len(h.sim.Requests()) != len(unaryRPCs)+1 {
		t.Errorf("simulator got %d requests", len(h.sim.Requests()))
	}
}

// TestCanary_UpstreamErrors: every upstream row of the error table, with the canary key.
// (TestE2E_UpstreamErrors checks the rows themselves; here only the key matters.)
func TestCanary_UpstreamErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range upstreamCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, _, err := startUpstreamCase(t, tc, withKey(canaryKey))
			if status.Code(err) != tc.code {
				t.Errorf("code = %v, want %v", status.Code(err), tc.code)
			}
			requireNoCanary(t, "the status", statusBytes(err))
			requireCleanHarness(t, h)
		})
	}
}

// TestCanary_UpstreamEchoesKey: a gateway (or a proxy in front of it) that quotes the
// Authorization header back in its error body must not make genservice repeat the key
// to its caller or its log.
func TestCanary_UpstreamEchoesKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		step   livepeertest.Step
		code   codes.Code
		reason string
	}{
		{"401 message", livepeertest.Step{Status: 401, Body: `{"error":"Unauthorized","message":"Invalid API key: Bearer ` + canaryKey + `"}`},
			codes.Unauthenticated, "UPSTREAM_API_KEY_REJECTED"},
		{"400 plain text", livepeertest.Step{Status: 400, Body: "bad request: header Authorization=Bearer " + canaryKey + " is malformed"},
			codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
		{"422 violation", livepeertest.Step{Status: 422, Body: livepeertest.ValidationError(livepeertest.Violation{
			Loc: []any{"header", "authorization"}, Msg: "unexpected token " + canaryKey, Type: "value_error"})},
			codes.InvalidArgument, "UPSTREAM_INVALID_ARGUMENT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newCanaryHarness(t)
			h.sim.Script(livepeer.PipelineTextToImage, tc.step)
			_, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
			requireStatus(t, err, tc.code, tc.reason)
			requireNoCanary(t, "the status", statusBytes(err))
		})
	}
}

// TestCanary_ValidationAndAdmission: our own refusals with the canary key configured.
func TestCanary_ValidationAndAdmission(t *testing.T) {
	t.Parallel()
	h := newCanaryHarness(t)
	ctx := ctxTimeout(t, 10*time.Second)
	for _, tc := range validationCases {
		err := tc.call(ctx, h.client)
		requireStatus(t, err, codes.InvalidArgument, "INVALID_REQUEST")
		requireNoCanary(t, tc.name+" status", statusBytes(err))
	}
	noCert := generationv1.NewGenerationServiceClient(h.dial(t, nil))
	for _, r := range unaryRPCs {
		_, err := r.call(ctx, noCert)
		requireStatus(t, err, codes.Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED")
		requireNoCanary(t, r.name+" status", statusBytes(err))
	}
	h.srv.SetDrainingForTest(true)
	_, err := h.client.TextToImage(ctx, &generationv1.TextToImageRequest{Prompt: "p"})
	requireStatus(t, err, codes.Unavailable, "SHUTTING_DOWN")
	requireNoCanary(t, "draining status", statusBytes(err))
}

// TestCanary_DeadlineAndCancel: abandoned upstream calls with the canary key.
func TestCanary_DeadlineAndCancel(t *testing.T) {
	t.Parallel()
	h := newCanaryHarness(t)
	h.sim.Script(livepeer.PipelineLLM, livepeertest.Step{Delay: 5 * time.Second})
	_, err := h.client.Llm(ctxTimeout(t, 300*time.Millisecond), &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "x"}}})
	requireStatus(t, err, codes.DeadlineExceeded, "")
	requireNoCanary(t, "the status", statusBytes(err))
	h.sim.WaitDisconnects(1, 2*time.Second)
	eventually(t, 3*time.Second, func() bool { return len(h.calls(t, "")) == 1 }, "the call line")
}

// TestCanary_Panics: a handler that panics with the key (typed, inside a struct, inside
// an error) logs and answers without it.
func TestCanary_Panics(t *testing.T) {
	t.Parallel()
	key, err := livepeer.ParseKey(canaryKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]func() any{
		"APIKey":           func() any { return key },
		"struct with key":  func() any { return struct{ Key livepeer.APIKey }{key} },
		"error formatting": func() any { return fmt.Errorf("request failed with key %v (%s)", key, key) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := panicHarness(t, value, withKey(canaryKey))
			uerr, serr := callPanics(t, h, "canary-panic-u", "canary-panic-s")
			requireStatus(t, uerr, codes.Internal, "INTERNAL_ERROR")
			requireStatus(t, serr, codes.Internal, "INTERNAL_ERROR")
			requireNoCanary(t, "the unary status", statusBytes(uerr))
			requireNoCanary(t, "the stream status", statusBytes(serr))
			if !bytes.Contains(h.logs.Bytes(), []byte("panic in handler")) {
				t.Error("no panic log line")
			}
			requireCleanHarness(t, h)
		})
	}
}

// TestCanary_UnreachableGateway: connect errors carry no key either.
func TestCanary_UnreachableGateway(t *testing.T) {
	t.Parallel()
	h := newCanaryHarness(t, withGatewayURL(closedPortURL(t)))
	_, err := h.client.TextToImage(ctxTimeout(t, 5*time.Second), &generationv1.TextToImageRequest{Prompt: "p"})
	requireStatus(t, err, codes.Unavailable, "UPSTREAM_UNREACHABLE")
	requireNoCanary(t, "the status", statusBytes(err))
}

// TestCanary_StartupErrors: refusing a malformed key or gateway URL never repeats the
// key.
func TestCanary_StartupErrors(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{" " + canaryKey, canaryKey + " ", canaryKey + "\n", "Bearer " + canaryKey,
		"bearer " + canaryKey, canaryKey + "\x00", "x " + canaryKey, canaryKey + "\tx"} {
		_, err := livepeer.ParseKey(raw)
		if err == nil {
			t.Errorf("ParseKey(%q) accepted a malformed key", raw)
			continue
		}
		requireNoCanary(t, "ParseKey error", []byte(err.Error()))
	}
	for _, raw := range []string{canaryKey + "\n\n", " " + canaryKey + "\n", "Bearer " + canaryKey + "\n"} {
		_, err := livepeer.ParseKeyFile([]byte(raw))
		if err == nil {
			t.Errorf("ParseKeyFile(%q) accepted a malformed key", raw)
			continue
		}
		requireNoCanary(t, "ParseKeyFile error", []byte(err.Error()))
	}
	// A key pasted into the gateway URL (as userinfo or a query parameter) is refused
	// without being repeated, whichever check trips first.
	key, _ := livepeer.ParseKey(canaryKey)
	for _, u := range []string{
		"https://genservice:" + canaryKey + "@livepeer.studio/api/beta/generate",
		"https://" + canaryKey + "@livepeer.studio/api/beta/generate",
		"ftp://genservice:" + canaryKey + "@livepeer.studio/api/beta/generate",
		"https://genservice:" + canaryKey + "@",
		"https://livepeer.studio/api/beta/generate?api_key=" + canaryKey,
		"https://livepeer.studio/api/beta/generate#" + canaryKey,
	} {
		_, err := livepeer.New(livepeer.Config{GatewayURL: u, Keys: livepeer.StaticKey(key)})
		if err == nil {
			t.Errorf("livepeer.New accepted gateway URL %q", u)
			continue
		}
		requireNoCanary(t, fmt.Sprintf("the gateway URL error for %q", strings.ReplaceAll(u, canaryKey, "<key>")), []byte(err.Error()))
	}
}

// TestCanary_APIKeyFormatting: every fmt verb, encoders and slog print the key as
// [REDACTED].
func TestCanary_APIKeyFormatting(t *testing.T) {
	t.Parallel()
	k, err := livepeer.ParseKey(canaryKey)
	if err != nil {
		t.Fatal(err)
	}
	type holder struct {
		Key  livepeer.APIKey
		Ptr  *livepeer.APIKey
		List []livepeer.APIKey
	}
	hk := holder{Key: k, Ptr: &k, List: []livepeer.APIKey{k}}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %q %x %X %d %T|", k, k, k, k, k, k, k, k, k)
	fmt.Fprintf(&out, "%v %+v %#v %s|", &k, &k, &k, &k)
	fmt.Fprintf(&out, "%v %+v %#v|", hk, hk, hk)
	fmt.Fprintf(&out, "%v %+v|", map[string]livepeer.APIKey{"k": k}, []any{k, &k})
	fmt.Fprint(&out, k, "|")
	fmt.Fprintln(&out, k)
	out.WriteString(fmt.Errorf("wrapped: %w (%v)", errors.New("x"), k).Error())
	if j, err := json.Marshal(hk); err == nil {
		out.Write(j)
	} else {
		t.Errorf("json.Marshal: %v", err)
	}
	for _, hnd := range []slog.Handler{
		slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
	} {
		l := slog.New(hnd)
		l.Info("key", "key", k, slog.Any("ptr", &k), slog.Any("holder", hk), slog.Group("g", slog.Any("key", k)))
		l.With("key", k).Debug("with")
	}
	requireNoCanary(t, "formatted APIKey output", out.Bytes())
	if !strings.Contains(out.String(), "[REDACTED]") {
		t.Errorf("no [REDACTED] in %q", out.String())
	}
	if fp := k.Fingerprint(); !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+8 {
		t.Errorf("fingerprint = %q", fp)
	}
}

// TestCanary_KeySourceFormatting: the key source the service is configured with
// (livepeer.StaticKey, as cmd/genservice uses it) and a livepeer.Config holding it are
// as safe to print or log as the key itself.
func TestCanary_KeySourceFormatting(t *testing.T) {
	t.Parallel()
	k, err := livepeer.ParseKey(canaryKey)
	if err != nil {
		t.Fatal(err)
	}
	src := livepeer.StaticKey(k)
	cfg := livepeer.Config{GatewayURL: "https://livepeer.studio/api/beta/generate", Keys: src}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s|", src, src, src, src)
	fmt.Fprintf(&out, "%v %+v|", cfg, cfg)
	l := slog.New(slog.NewTextHandler(&out, nil))
	l.Info("config", "keys", src, "cfg", cfg)
	requireNoCanary(t, "formatted StaticKey / livepeer.Config output", out.Bytes())
}
