package authz

import (
	"context"
	"fmt"
	"genservice/internal/logbuf"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer is a goroutine-safe slog sink.
type lockedBuffer = logbuf.Buffer

type enforcerEnv struct {
	path    string
	logs    *lockedBuffer
	e       *Enforcer
	reloads chan error
}

func newEnforcerEnv(t *testing.T, policy string) *enforcerEnv {
	t.Helper()
	env := &enforcerEnv{
		path:    filepath.Join(t.TempDir(), "policy.yaml"),
		logs:    &lockedBuffer{},
		reloads: make(chan error, 100),
	}
	env.write(t, policy)
	var err error
	env.e, err = New(Config{
		Path:         env.path,
		KnownMethods: testMethods,
		Logger:       slog.New(slog.NewJSONHandler(env.logs, nil)),
		OnReload:     func(err error) { env.reloads <- err },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return env
}

func (env *enforcerEnv) write(t testing.TB, policy string) {
	t.Helper()
	if err := replaceFile(env.path, policy); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes and renames, so a concurrent reader never sees a half-written file.
func replaceFile(path, contents string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(contents), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func rule(principal, method, extra string) string {
	return fmt.Sprintf("rules:\n  - principals: [%q]\n    methods: [%s]\n%s", principal, method, extra)
}

func admitOK(t *testing.T, e *Enforcer, principal, method string) func() {
	t.Helper()
	release, d := e.Admit(principal, method)
	if d != nil {
		t.Fatalf("Admit(%q, %q) denied: %+v", principal, method, d)
	}
	if release == nil {
		t.Fatalf("Admit(%q, %q) admitted with a nil release", principal, method)
	}
	return release
}

func admitDenied(t *testing.T, e *Enforcer, principal, method string, kind DenialKind) *Denial {
	t.Helper()
	release, d := e.Admit(principal, method)
	if d == nil {
		release()
		t.Fatalf("Admit(%q, %q) admitted, want denial kind %d", principal, method, kind)
	}
	if d.Kind != kind {
		t.Fatalf("Admit(%q, %q) denied with kind %d, want %d (%+v)", principal, method, d.Kind, kind, d)
	}
	if release != nil {
		t.Errorf("denied Admit returned a release func")
	}
	return d
}

func TestNewFailsOnBadPolicy(t *testing.T) {
	dir := t.TempDir()
	_, err := New(Config{Path: filepath.Join(dir, "missing.yaml"), KnownMethods: testMethods})
	if err == nil || !strings.Contains(err.Error(), "cannot read the policy file") {
		t.Errorf("missing file: err = %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(rule("a", "Nope", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Path: bad, KnownMethods: testMethods})
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), `unknown method "Nope"`) {
		t.Errorf("bad file: err = %v", err)
	}
}

func TestEnforcerNotAllowed(t *testing.T) {
	env := newEnforcerEnv(t, rule("spiffe://td/a", "Llm", "")+"  - principals: [\"spiffe://td/batch/*\"]\n    methods: [\"*\"]\n")
	admitOK(t, env.e, "spiffe://td/a", "Llm")()
	admitDenied(t, env.e, "spiffe://td/a", "TextToImage", NotAllowed)
	admitDenied(t, env.e, "spiffe://td/b", "Llm", NotAllowed)
	admitDenied(t, env.e, "", "Llm", NotAllowed)
	admitOK(t, env.e, "spiffe://td/batch/x", "TextToSpeech")()
	// Unlimited admissions are free: no state accumulates and release is harmless.
	for range 1000 {
		r := admitOK(t, env.e, "spiffe://td/a", "Llm")
		r()
		r()
	}
}

func TestEnforcerRateLimit(t *testing.T) {
	env := newEnforcerEnv(t, rule("spiffe://td/a", "Llm, TextToImage", "    rate: 2\n    burst: 2\n"))
	admitOK(t, env.e, "spiffe://td/a", "Llm")()
	admitOK(t, env.e, "spiffe://td/a", "TextToImage")() // the bucket is per principal, not per method
	d := admitDenied(t, env.e, "spiffe://td/a", "Llm", RateLimited)
	if d.RetryAfter <= 0 || d.RetryAfter > time.Second {
		t.Errorf("RetryAfter = %v, want in (0, 1s]", d.RetryAfter)
	}
	if d.Limits != (Limits{Rate: 2, Burst: 2}) {
		t.Errorf("Limits = %+v", d.Limits)
	}
	// A denial does not consume a token: repeated denials do not push the next
	// admission further out.
	for range 20 {
		d2 := admitDenied(t, env.e, "spiffe://td/a", "Llm", RateLimited)
		if d2.RetryAfter > d.RetryAfter {
			t.Fatalf("RetryAfter grew from %v to %v: denials consume tokens", d.RetryAfter, d2.RetryAfter)
		}
	}
	// Another principal has its own bucket, even under the same rule.
	env.write(t, rule("spiffe://td/*", "Llm", "    rate: 2\n    burst: 2\n"))
	if err := env.e.Reload(); err != nil {
		t.Fatal(err)
	}
	admitOK(t, env.e, "spiffe://td/b", "Llm")()
	admitOK(t, env.e, "spiffe://td/c", "Llm")()
}

func TestEnforcerRateLimitRefills(t *testing.T) {
	// rate 20/s: a token every 50 ms. Waiting RetryAfter is enough to be admitted.
	env := newEnforcerEnv(t, rule("a", "Llm", "    rate: 20\n    burst: 1\n"))
	admitOK(t, env.e, "a", "Llm")()
	d := admitDenied(t, env.e, "a", "Llm", RateLimited)
	if d.RetryAfter <= 0 || d.RetryAfter > 50*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want in (0, 50ms]", d.RetryAfter)
	}
	time.Sleep(d.RetryAfter + 5*time.Millisecond) // the retry a client would do
	admitOK(t, env.e, "a", "Llm")()
}

func TestEnforcerMaxInFlight(t *testing.T) {
	env := newEnforcerEnv(t, rule("a", "Llm", "    max_in_flight: 2\n")+"  - principals: [b]\n    methods: [Llm]\n    max_in_flight: 2\n")
	r1 := admitOK(t, env.e, "a", "Llm")
	r2 := admitOK(t, env.e, "a", "Llm")
	d := admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
	if d.RetryAfter <= 0 || d.Limits.MaxInFlight != 2 {
		t.Errorf("denial = %+v", d)
	}
	// Another principal is not affected.
	rb := admitOK(t, env.e, "b", "Llm")
	// Releasing frees a slot; releasing twice frees only one.
	r1()
	r1()
	r3 := admitOK(t, env.e, "a", "Llm")
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
	r2()
	r3()
	rb()
	// All released: two slots again.
	admitOK(t, env.e, "a", "Llm")
	admitOK(t, env.e, "a", "Llm")
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
}

func TestEnforcerRateAndInFlight(t *testing.T) {
	// A call refused for its rate must give back the in-flight slot it took.
	env := newEnforcerEnv(t, rule("a", "Llm", "    rate: 1\n    burst: 1\n    max_in_flight: 1\n"))
	r := admitOK(t, env.e, "a", "Llm")
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
	r()
	admitDenied(t, env.e, "a", "Llm", RateLimited)
	// The rate denial released its slot: raising the rate (new bucket) admits at once.
	env.write(t, rule("a", "Llm", "    rate: 1000\n    burst: 5\n    max_in_flight: 1\n"))
	if err := env.e.Reload(); err != nil {
		t.Fatal(err)
	}
	r = admitOK(t, env.e, "a", "Llm")
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
	r()
}

func TestEnforcerConcurrentMaxInFlight(t *testing.T) {
	const limit = 3
	env := newEnforcerEnv(t, rule("a", "Llm", fmt.Sprintf("    max_in_flight: %d\n", limit)))
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				release, d := env.e.Admit("a", "Llm")
				if d != nil {
					continue
				}
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				cur.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if peak.Load() > limit {
		t.Errorf("peak in flight %d > max_in_flight %d", peak.Load(), limit)
	}
	// Everything was released.
	for range limit {
		admitOK(t, env.e, "a", "Llm")
	}
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
}

func TestEnforcerReloadKeepsBucketsWhenLimitsUnchanged(t *testing.T) {
	env := newEnforcerEnv(t, rule("a", "Llm", "    rate: 0.01\n    burst: 1\n    max_in_flight: 1\n"))
	r := admitOK(t, env.e, "a", "Llm")
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)

	// Same limits, other changes (more methods, another rule, comments): state survives.
	env.write(t, "# edited\n"+rule("a", "Llm, TextToImage", "    rate: 0.01\n    burst: 1\n    max_in_flight: 1\n")+
		"  - principals: [b]\n    methods: [Llm]\n")
	if err := env.e.Reload(); err != nil {
		t.Fatal(err)
	}
	admitDenied(t, env.e, "a", "TextToImage", TooManyInFlight) // still one in flight
	r()
	admitDenied(t, env.e, "a", "Llm", RateLimited) // token still spent
	admitOK(t, env.e, "b", "Llm")()                // the new rule applies

	// Changed limits: a fresh bucket, admitted at once.
	env.write(t, rule("a", "Llm", "    rate: 0.01\n    burst: 2\n    max_in_flight: 1\n"))
	if err := env.e.Reload(); err != nil {
		t.Fatal(err)
	}
	r = admitOK(t, env.e, "a", "Llm")
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
	r()
	admitOK(t, env.e, "a", "Llm")()
	admitDenied(t, env.e, "a", "Llm", RateLimited)

	// Removing the principal's rule denies it whatever its bucket holds.
	env.write(t, "rules: []\n")
	if err := env.e.Reload(); err != nil {
		t.Fatal(err)
	}
	admitDenied(t, env.e, "a", "Llm", NotAllowed)
}

func TestEnforcerReloadBadFileKeepsPolicy(t *testing.T) {
	env := newEnforcerEnv(t, rule("a", "Llm", "    max_in_flight: 1\n"))
	r := admitOK(t, env.e, "a", "Llm")

	bad := "rules:\n  - principals: [a]\n    methods: [Llm]\n  - principals: [b]\n    methods: [Llm]\n    max_inflight: 3\n"
	env.write(t, bad)
	err := env.e.Reload()
	if err == nil {
		t.Fatal("Reload accepted a bad file")
	}
	if !strings.Contains(err.Error(), "line 6") || !strings.Contains(err.Error(), "max_inflight") {
		t.Errorf("Reload error %q should name line 6 (the bad key) and the key", err)
	}
	select {
	case got := <-env.reloads:
		if got == nil || got.Error() != err.Error() {
			t.Errorf("OnReload(%v), want the Reload error", got)
		}
	default:
		t.Error("OnReload not called")
	}
	// Old policy and state kept: a still allowed, still one in flight; b not allowed.
	admitDenied(t, env.e, "a", "Llm", TooManyInFlight)
	admitDenied(t, env.e, "b", "Llm", NotAllowed)
	r()
	admitOK(t, env.e, "a", "Llm")()

	// The log line says why, with the file and the line.
	var found bool
	for _, rec := range env.logs.Records(t) {
		if rec["level"] == "ERROR" && strings.Contains(fmt.Sprint(rec["msg"]), "keeping the current policy") {
			found = true
			if rec["file"] != env.path {
				t.Errorf("log file = %v, want %s", rec["file"], env.path)
			}
			if reason := fmt.Sprint(rec["reason"]); !strings.Contains(reason, "line 6") || !strings.Contains(reason, "max_inflight") {
				t.Errorf("log reason = %q", reason)
			}
		}
	}
	if !found {
		t.Errorf("no ERROR log line for the rejected file; logs: %v", env.logs.Records(t))
	}

	// A missing file (a ConfigMap being replaced) also keeps the policy.
	if err := os.Remove(env.path); err != nil {
		t.Fatal(err)
	}
	err = env.e.Reload()
	if err == nil || !strings.Contains(err.Error(), "cannot read the policy file") {
		t.Errorf("Reload of a missing file: %v", err)
	}
	if got := <-env.reloads; got == nil {
		t.Error("OnReload(nil) for a missing file")
	}
	admitOK(t, env.e, "a", "Llm")()

	// A good file again: applied, logged at INFO, OnReload(nil).
	env.write(t, rule("b", "Llm", ""))
	drain(env.reloads)
	if err := env.e.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := <-env.reloads; got != nil {
		t.Errorf("OnReload(%v) after a good reload", got)
	}
	admitDenied(t, env.e, "a", "Llm", NotAllowed)
	admitOK(t, env.e, "b", "Llm")()
	recs := env.logs.Records(t)
	if last := recs[len(recs)-1]; last["msg"] != "policy reloaded" || last["level"] != "INFO" {
		t.Errorf("last log line = %v, want INFO policy reloaded", last)
	}
}

func drain(c chan error) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func TestEnforcerWatch(t *testing.T) {
	// The Kubernetes way: a ConfigMap directory whose file is a symlink through ..data,
	// updated by swapping ..data.
	dir := t.TempDir()
	writeGen := func(name, policy string) {
		t.Helper()
		gen := filepath.Join(dir, name)
		if err := os.Mkdir(gen, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(gen, "policy.yaml"), []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeGen("..2026_01_01", rule("a", "Llm", ""))
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink("..data/policy.yaml", path); err != nil {
		t.Fatal(err)
	}
	reloads := make(chan error, 10)
	e, err := New(Config{Path: path, KnownMethods: testMethods, Logger: slog.New(slog.DiscardHandler), OnReload: func(err error) { reloads <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Watch's start-up check reports nothing while the file is unchanged, so there is no
	// readiness signal: swap (new contents each time) until a reload is seen.
	deadline := time.After(5 * time.Second)
	for gen := 2; ; gen++ {
		writeGen(fmt.Sprintf("..2026_01_%02d", gen), rule("b", "Llm", fmt.Sprintf("# generation %d\n", gen)))
		select {
		case err := <-reloads:
			if err != nil {
				t.Fatalf("OnReload(%v)", err)
			}
		case <-time.After(time.Second):
			continue
		case <-deadline:
			t.Fatal("no reload after the ..data swap")
		}
		break
	}
	admitDenied(t, e, "a", "Llm", NotAllowed)
	admitOK(t, e, "b", "Llm")()

	// A broken swap is reported and keeps the policy.
	writeGen("..2026_02_01", "rules:\n  - principals: [c]\n    methods: [Nope]\n")
	select {
	case err := <-reloads:
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Fatalf("OnReload(%v), want the line-2 error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after the broken swap")
	}
	admitOK(t, e, "b", "Llm")()
	admitDenied(t, e, "c", "Llm", NotAllowed)
}

func TestEnforcerConcurrentAdmitReload(t *testing.T) {
	policies := []string{
		rule("a", "Llm", "    rate: 1000\n    burst: 10\n    max_in_flight: 4\n"),
		rule("a", "Llm", "    rate: 500\n    burst: 5\n    max_in_flight: 2\n"),
		rule("a", "Llm", "") + "  - principals: [\"b/*\"]\n    methods: [\"*\"]\n    max_in_flight: 1\n",
		"rules: []\n",
		"rules:\n  - principals: [a]\n    methods: [Broken]\n",
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := replaceFile(path, policies[0]); err != nil {
		t.Fatal(err)
	}
	var reloads, failed atomic.Int64
	e, err := New(Config{Path: path, KnownMethods: testMethods, Logger: slog.New(slog.DiscardHandler),
		OnReload: func(err error) {
			reloads.Add(1)
			if err != nil {
				failed.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			if err := replaceFile(path, policies[i%len(policies)]); err != nil {
				t.Error(err)
				return
			}
			_ = e.Reload()
		}
	})
	var admitted atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			principals := []string{"a", "b/x", "b/y", "c"}
			for i := 0; ctx.Err() == nil; i++ {
				release, d := e.Admit(principals[(i+w)%len(principals)], testMethods[i%len(testMethods)])
				if d == nil {
					admitted.Add(1)
					release()
					release()
				} else if d.Kind < NotAllowed || d.Kind > TooManyInFlight {
					t.Errorf("bad denial kind %d", d.Kind)
				}
			}
		})
	}
	wg.Wait()
	if admitted.Load() == 0 || reloads.Load() == 0 || failed.Load() == 0 {
		t.Errorf("admitted %d, reloads %d (failed %d): the storm did not exercise both paths", admitted.Load(), reloads.Load(), failed.Load())
	}
	// After the storm: a known policy, no leaked in-flight slots.
	if err := replaceFile(path, policies[1]); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	// The storm may have drained a's rate bucket (it survives reloads that keep the
	// limits); give it time to refill before counting in-flight slots.
	time.Sleep(50 * time.Millisecond)
	r1 := admitOK(t, e, "a", "Llm")
	r2 := admitOK(t, e, "a", "Llm")
	admitDenied(t, e, "a", "Llm", TooManyInFlight)
	r1()
	r2()
}

// TestEnforcerOnReloadAfterSwap: when OnReload(nil) runs, the new policy must be the
// one in force.
func TestEnforcerOnReloadAfterSwap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := replaceFile(path, rule("a", "Llm", "")); err != nil {
		t.Fatal(err)
	}
	var e *Enforcer
	var bAllowed bool
	e, err := New(Config{Path: path, KnownMethods: testMethods, Logger: slog.New(slog.DiscardHandler),
		OnReload: func(err error) {
			if err == nil {
				_, d := e.Admit("b", "Llm")
				bAllowed = d == nil
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := replaceFile(path, rule("b", "Llm", "")); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if !bAllowed {
		t.Error("OnReload(nil) ran while the old policy was still in force: the callback ran before the swap")
	}
}
