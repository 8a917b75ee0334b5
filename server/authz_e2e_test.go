package server_test

// The authorization policy end to end: real mTLS on loopback, client certificates with
// SPIFFE URI SANs, a policy file, the gateway simulator.

import (
	"context"
	"fmt"
	"genservice/internal/secretdir"
	"path/filepath"
	"strings"
	"testing"
	"time"

	errdetails "google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"genservice/authz"
	generationv1 "genservice/gen/livepeer/generation/v1"
	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
	"genservice/server"
)

const (
	rotFrontend = "spiffe://genservice.test/ns/web/sa/frontend"
	rotLimited  = "spiffe://genservice.test/ns/web/sa/limited"
	rotSingle   = "spiffe://genservice.test/ns/web/sa/single"
	rotIntruder = "spiffe://genservice.test/ns/web/sa/intruder"
	rotBatch    = "spiffe://genservice.test/ns/batch/sa/nightly"
)

const rotPolicy = `rules:
  - principals: ["spiffe://genservice.test/ns/web/sa/frontend"]
    methods: [TextToImage, LlmStream]
  - principals: ["spiffe://genservice.test/ns/web/sa/limited"]
    methods: [TextToImage]
    rate: 1
    burst: 1
  - principals: ["spiffe://genservice.test/ns/web/sa/single"]
    methods: [TextToImage]
    max_in_flight: 1
  - principals: ["spiffe://genservice.test/ns/batch/*"]
    methods: ["*"]
`

// rotPolicyEnv is a server with a policy file in a ConfigMap-like directory.
type rotPolicyEnv struct {
	*rotEnv
	policy  *secretdir.Dir
	enf     *authz.Enforcer
	reloads chan error
}

func rotStartWithPolicy(t *testing.T, policy string, edit func(*server.Config)) *rotPolicyEnv {
	t.Helper()
	pe := &rotPolicyEnv{reloads: make(chan error, 100)}
	pe.policy = secretdir.New(t, filepath.Join(t.TempDir(), "policy"), map[string][]byte{"policy.yaml": []byte(policy)})
	logs := &rotLogBuf{}
	var err error
	pe.enf, err = authz.New(authz.Config{
		Path: pe.policy.Path("policy.yaml"), KnownMethods: server.MethodNames(), Logger: logs.logger(),
		OnReload: func(err error) { pe.reloads <- err },
	})
	if err != nil {
		t.Fatalf("authz.New: %v", err)
	}
	pe.rotEnv = rotStart(t, rotOptions{logs: logs, edit: func(c *server.Config) {
		c.Policy = pe.enf
		if edit != nil {
			edit(c)
		}
	}})
	return pe
}

func TestAuthzE2EAllowedAndDenied(t *testing.T) {
	env := rotStartWithPolicy(t, rotPolicy, nil)
	front := env.dial(t, env.client(t, rotFrontend))

	// Allowed: the SPIFFE ID is the principal; the call reaches the gateway.
	ctx := rotCtx(t, 5*time.Second)
	if err := rotT2I(ctx, front); err != nil {
		t.Fatalf("allowed principal: %v", err)
	}
	if hits := env.sim.Hits(livepeer.PipelineTextToImage); hits != 1 {
		t.Errorf("gateway hits = %d, want 1", hits)
	}
	// Prefix rule with "*".
	batch := env.dial(t, env.client(t, rotBatch))
	if _, err := generationv1.NewGenerationServiceClient(batch).TextToSpeech(ctx, &generationv1.TextToSpeechRequest{Text: "hello"}); err != nil {
		t.Errorf("batch/* TextToSpeech: %v", err)
	}

	// Denied: a principal no rule names, and an allowed principal calling an RPC its
	// rule does not list. Neither reaches the gateway.
	hits := env.sim.Requests()
	for _, tt := range []struct {
		principal, method string
		call              func(context.Context, *grpc.ClientConn) error
	}{
		{rotIntruder, "TextToImage", func(ctx context.Context, c *grpc.ClientConn) error { return rotT2I(ctx, c) }},
		{rotFrontend, "Llm", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := generationv1.NewGenerationServiceClient(c).Llm(ctx, &generationv1.LlmRequest{Messages: []*generationv1.LlmMessage{{Role: generationv1.LlmRole_LLM_ROLE_USER, Content: "hi"}}})
			return err
		}},
		{rotFrontend, "Upscale", func(ctx context.Context, c *grpc.ClientConn) error {
			_, err := generationv1.NewGenerationServiceClient(c).Upscale(ctx, &generationv1.UpscaleRequest{Prompt: "x"})
			return err
		}},
		// The prefix includes its slash: ns/batchx is not under ns/batch/*.
		{"spiffe://genservice.test/ns/batchx/sa/x", "TextToImage", func(ctx context.Context, c *grpc.ClientConn) error { return rotT2I(ctx, c) }},
	} {
		conn := env.dial(t, env.client(t, tt.principal))
		st, info := rotStatus(t, tt.call(ctx, conn), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
		if got := info.GetMetadata(); got["principal"] != tt.principal || got["method"] != tt.method {
			t.Errorf("%s %s: metadata = %v", tt.principal, tt.method, got)
		}
		if !strings.Contains(st.Message(), tt.principal) || !strings.Contains(st.Message(), tt.method) {
			t.Errorf("message %q should name the principal and the method", st.Message())
		}
	}
	if got := env.sim.Requests(); len(got) != len(hits) {
		t.Errorf("denied calls reached the gateway: %d requests, want %d", len(got), len(hits))
	}

	// The per-call log line names the principal of the denied call.
	var found bool
	for _, l := range env.logs.lines(t, "call") {
		if l["principal"] == rotIntruder && l["code"] == "PermissionDenied" {
			found = true
		}
	}
	if !found {
		t.Errorf("no PermissionDenied call log line for %s", rotIntruder)
	}
}

func TestAuthzE2ERateLimited(t *testing.T) {
	env := rotStartWithPolicy(t, rotPolicy, nil)
	conn := env.dial(t, env.client(t, rotLimited))
	ctx := rotCtx(t, 5*time.Second)
	if err := rotT2I(ctx, conn); err != nil {
		t.Fatalf("first call: %v", err)
	}
	st, info := rotStatus(t, rotT2I(ctx, conn), codes.ResourceExhausted, "CALLER_RATE_LIMITED")
	if m := info.GetMetadata(); m["principal"] != rotLimited || m["method"] != "TextToImage" || m["limit"] != "rate" {
		t.Errorf("metadata = %v", m)
	}
	ri, ok := rotDetail[*errdetails.RetryInfo](st)
	if !ok {
		t.Fatalf("no RetryInfo: %v", st.Details())
	}
	if d := ri.GetRetryDelay().AsDuration(); d <= 0 || d > time.Second {
		t.Errorf("RetryInfo delay = %v, want in (0, 1s]", d)
	}
	qf, ok := rotDetail[*errdetails.QuotaFailure](st)
	if !ok || len(qf.GetViolations()) != 1 || !strings.Contains(qf.GetViolations()[0].GetSubject(), rotLimited) {
		t.Errorf("QuotaFailure = %v", qf)
	}
	if hits := env.sim.Hits(livepeer.PipelineTextToImage); hits != 1 {
		t.Errorf("gateway hits = %d, want 1", hits)
	}
	// Honouring RetryInfo gets the caller through.
	time.Sleep(ri.GetRetryDelay().AsDuration() + 20*time.Millisecond)
	if err := rotT2I(ctx, conn); err != nil {
		t.Errorf("after waiting RetryInfo: %v", err)
	}
}

// rotHoldCall starts a TextToImage that the simulator holds (a scripted delay) and
// returns once the gateway has it; cancel ends it.
func rotHoldCall(t *testing.T, env *rotEnv, conn *grpc.ClientConn) (cancel func()) {
	t.Helper()
	before := env.sim.Hits(livepeer.PipelineTextToImage)
	env.sim.Script(livepeer.PipelineTextToImage, livepeertest.Step{Delay: 30 * time.Second})
	ctx, cancelCtx := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rotT2I(ctx, conn) }()
	rotWait(t, 5*time.Second, "the held call to reach the gateway", func() bool {
		return env.sim.Hits(livepeer.PipelineTextToImage) > before
	})
	var once bool
	cancel = func() {
		if once {
			return
		}
		once = true
		canceled := func() int {
			n := 0
			for _, l := range env.logs.lines(t, "call") {
				if l["code"] == "Canceled" {
					n++
				}
			}
			return n
		}
		before := canceled()
		cancelCtx()
		if err := <-done; status.Code(err) != codes.Canceled {
			t.Errorf("held call ended with %v, want CANCELED", err)
		}
		// The client knows at once; the server releases its slots when the handler
		// returns, just before it writes the call's log line.
		rotWait(t, 5*time.Second, "the server to finish the cancelled call", func() bool { return canceled() > before })
	}
	t.Cleanup(cancel)
	return cancel
}

func TestAuthzE2EMaxInFlight(t *testing.T) {
	env := rotStartWithPolicy(t, rotPolicy, nil)
	conn := env.dial(t, env.client(t, rotSingle))
	release := rotHoldCall(t, env.rotEnv, conn)

	st, info := rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), conn), codes.ResourceExhausted, "CALLER_RATE_LIMITED")
	if m := info.GetMetadata(); m["principal"] != rotSingle || m["limit"] != "maxInFlight" {
		t.Errorf("metadata = %v", m)
	}
	if _, ok := rotDetail[*errdetails.RetryInfo](st); !ok {
		t.Error("no RetryInfo")
	}
	if _, ok := rotDetail[*errdetails.QuotaFailure](st); !ok {
		t.Error("no QuotaFailure")
	}
	// Another principal is not limited by single's calls.
	if err := rotT2I(rotCtx(t, 5*time.Second), env.dial(t, env.client(t, rotFrontend))); err != nil {
		t.Errorf("frontend while single is at its limit: %v", err)
	}
	// When the held call ends, the slot is free again.
	release()
	if err := rotT2I(rotCtx(t, 5*time.Second), conn); err != nil {
		t.Errorf("after the held call ended: %v", err)
	}
}

func TestAuthzE2EGlobalMaxInFlight(t *testing.T) {
	env := rotStartWithPolicy(t, rotPolicy, func(c *server.Config) { c.MaxInFlight = 1 })
	release := rotHoldCall(t, env.rotEnv, env.dial(t, env.client(t, rotFrontend)))

	batch := env.dial(t, env.client(t, rotBatch))
	st, info := rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), batch), codes.Unavailable, "OVERLOADED")
	if info.GetMetadata()["maxInFlight"] != "1" {
		t.Errorf("metadata = %v", info.GetMetadata())
	}
	ri, ok := rotDetail[*errdetails.RetryInfo](st)
	if !ok || ri.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("RetryInfo = %v", ri)
	}
	// Health is not an upstream call and is not capped.
	if _, err := healthpb.NewHealthClient(batch).Check(rotCtx(t, 5*time.Second), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health while overloaded: %v", err)
	}
	// A policy denial does not take a global slot: still PERMISSION_DENIED, not OVERLOADED.
	rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), env.dial(t, env.client(t, rotIntruder))), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
	release()
	if err := rotT2I(rotCtx(t, 5*time.Second), batch); err != nil {
		t.Errorf("after the held call ended: %v", err)
	}
}

func TestAuthzE2EHealthAndReflectionNotInPolicy(t *testing.T) {
	env := rotStartWithPolicy(t, "rules: []\n", nil) // nobody may call GenerationService
	conn := env.dial(t, env.client(t, rotIntruder))
	ctx := rotCtx(t, 5*time.Second)

	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: generationv1.GenerationService_ServiceDesc.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), generationv1.GenerationService_ServiceDesc.ServiceName) {
		t.Errorf("reflection lists %v", names)
	}
	_ = stream.CloseSend()
	// ... but the service itself is denied.
	rotStatus(t, rotT2I(ctx, conn), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
}

func TestAuthzE2EReload(t *testing.T) {
	env := rotStartWithPolicy(t, rotPolicy, nil)
	intruder := env.dial(t, env.client(t, rotIntruder))
	front := env.dial(t, env.client(t, rotFrontend))
	ctx := rotCtx(t, 10*time.Second)
	rotStatus(t, rotT2I(ctx, intruder), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")

	// 1. Rewrite the file and reload explicitly: the intruder is now allowed and the
	// frontend is not.
	allowIntruder := "rules:\n  - principals: [\"" + rotIntruder + "\"]\n    methods: [TextToImage]\n"
	env.policy.Update(t, map[string][]byte{"policy.yaml": []byte(allowIntruder)})
	if err := env.enf.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := rotT2I(ctx, intruder); err != nil {
		t.Errorf("after reload, intruder: %v", err)
	}
	rotStatus(t, rotT2I(ctx, front), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")

	// 2. A broken rewrite: Reload fails with the line, the policy in force stays.
	broken := "rules:\n  - principals: [\"" + rotFrontend + "\"]\n    methods: [TextToImage]\n    max_inflight: 1\n"
	env.policy.Update(t, map[string][]byte{"policy.yaml": []byte(broken)})
	err := env.enf.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "max_inflight") {
		t.Errorf("Reload of a broken file: %v", err)
	}
	if err := rotT2I(ctx, intruder); err != nil {
		t.Errorf("after a broken rewrite, intruder (old policy): %v", err)
	}
	rotStatus(t, rotT2I(ctx, front), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")
	var logged bool
	for _, l := range env.logs.lines(t, "policy file rejected; keeping the current policy") {
		logged = logged || strings.Contains(l["reason"].(string), "line 4")
	}
	if !logged {
		t.Errorf("no log line for the rejected policy: %s", env.logs.String())
	}

	// 3. The watch. It re-checks the file once when it starts — the broken file is still
	// there, so that start-up check reports it (and doubles as the readiness signal) —
	// then a ConfigMap update (..data swap) is picked up at run time.
	for len(env.reloads) > 0 {
		<-env.reloads
	}
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { env.enf.Watch(wctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case err := <-env.reloads:
		if err == nil || !strings.Contains(err.Error(), "max_inflight") {
			t.Fatalf("start-up check of the broken file: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not check the file when it started")
	}
	env.policy.Update(t, map[string][]byte{"policy.yaml": []byte(rotPolicy)})
	select {
	case err := <-env.reloads:
		if err != nil {
			t.Fatalf("watched reload: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the policy watch did not reload after the ..data swap")
	}
	if err := rotT2I(ctx, front); err != nil {
		t.Errorf("after the watched reload, frontend: %v", err)
	}
	rotStatus(t, rotT2I(ctx, intruder), codes.PermissionDenied, "CALLER_NOT_AUTHORIZED")

	// 4. A broken ConfigMap update through the watch keeps the policy.
	env.policy.Update(t, map[string][]byte{"policy.yaml": []byte("rules:\n  - principals: [\"a/*/b\"]\n    methods: [Llm]\n")})
	select {
	case err := <-env.reloads:
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("watched reload of a broken file: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after the broken update")
	}
	if err := rotT2I(ctx, front); err != nil {
		t.Errorf("after a broken watched update, frontend: %v", err)
	}
}

// A reload that changes a principal's limits carries its running calls over: with
// max_in_flight 3 and three calls running, raising it to 4 admits exactly one more.
func TestAuthzE2EReloadKeepsCallsInFlight(t *testing.T) {
	policy := func(n int) string {
		return fmt.Sprintf("rules:\n  - principals: [%q]\n    methods: [TextToImage]\n    max_in_flight: %d\n", rotSingle, n)
	}
	env := rotStartWithPolicy(t, policy(3), nil)
	conn := env.dial(t, env.client(t, rotSingle))
	for range 3 {
		rotHoldCall(t, env.rotEnv, conn)
	}
	rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), conn), codes.ResourceExhausted, "CALLER_RATE_LIMITED")

	env.policy.Update(t, map[string][]byte{"policy.yaml": []byte(policy(4))})
	if err := env.enf.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	rotHoldCall(t, env.rotEnv, conn) // the fourth slot
	// A fifth call must be refused at once; on a fresh count it would be admitted and
	// answered by the (unscripted) simulator.
	rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), conn), codes.ResourceExhausted, "CALLER_RATE_LIMITED")

	// Lowering the limit below the running count admits nothing until enough finish.
	env.policy.Update(t, map[string][]byte{"policy.yaml": []byte(policy(2))})
	if err := env.enf.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	rotStatus(t, rotT2I(rotCtx(t, 5*time.Second), conn), codes.ResourceExhausted, "CALLER_RATE_LIMITED")
}
