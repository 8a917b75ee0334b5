package livepeer_test

import (
	"context"
	"errors"
	"fmt"
	"genservice/internal/logbuf"
	"genservice/internal/secretdir"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"genservice/livepeer"
	"genservice/livepeer/livepeertest"
)

// Helpers in this file are prefixed kf: package livepeer_test is shared.

const (
	kfKeyA = "sk-live-keyfile-AAAA-0001"
	kfKeyB = "sk-live-keyfile-BBBB-0002"
)

type kfLogBuf = logbuf.Buffer

func kfFingerprint(t testing.TB, raw string) string {
	t.Helper()
	k, err := livepeer.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint()
}

// kfWrite replaces the file atomically (write a temp file, rename over).
func kfWrite(t testing.TB, path, contents string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type kfEnv struct {
	path    string
	logs    *kfLogBuf
	fk      *livepeer.FileKey
	reloads chan error
}

func kfNew(t testing.TB, contents string) *kfEnv {
	t.Helper()
	env := &kfEnv{path: filepath.Join(t.TempDir(), "api-key"), logs: &kfLogBuf{}, reloads: make(chan error, 100)}
	kfWrite(t, env.path, contents)
	var err error
	env.fk, err = livepeer.NewFileKey(livepeer.FileKeyConfig{
		Path:     env.path,
		Logger:   slog.New(slog.NewJSONHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnReload: func(err error) { env.reloads <- err },
	})
	if err != nil {
		t.Fatalf("NewFileKey: %v", err)
	}
	return env
}

func (env *kfEnv) lastReload(t testing.TB) error {
	t.Helper()
	select {
	case err := <-env.reloads:
		return err
	default:
		t.Fatal("OnReload was not called")
		return nil
	}
}

func TestFileKeyLoads(t *testing.T) {
	for _, contents := range []string{kfKeyA, kfKeyA + "\n", kfKeyA + "\r\n"} {
		env := kfNew(t, contents)
		if got, want := env.fk.Key().Fingerprint(), kfFingerprint(t, kfKeyA); got != want {
			t.Errorf("%q: fingerprint %s, want %s", contents, got, want)
		}
	}
	// FileKey is a Refresher, so the client's 401 path can use it.
	var _ livepeer.Refresher = (*livepeer.FileKey)(nil)
}

func TestNewFileKeyRefusesBadFile(t *testing.T) {
	const canary = "sk-canary-never-print-7f3e"
	dir := t.TempDir()
	for _, tt := range []struct {
		name, contents string
		want           error
	}{
		{"empty", "", livepeer.ErrKeyEmpty},
		{"newline only", "\n", livepeer.ErrKeyEmpty},
		{"bearer", "Bearer " + canary, livepeer.ErrKeyBearer},
		{"leading space", " " + canary, livepeer.ErrKeyWhitespace},
		{"two newlines", canary + "\n\n", livepeer.ErrKeyWhitespace},
		{"placeholder", livepeer.PlaceholderKey, livepeer.ErrKeyPlaceholder},
		{"inner space", "sk-canary never-print", livepeer.ErrKeyControl},
	} {
		path := filepath.Join(dir, tt.name)
		kfWrite(t, path, tt.contents)
		_, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: path, Logger: slog.New(slog.DiscardHandler)})
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "never-print")) {
			t.Errorf("%s: error shows the file's contents: %v", tt.name, err)
		}
	}
	_, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: filepath.Join(dir, "missing"), Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "cannot read the key file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFileKeyReloadSwapsAtomically(t *testing.T) {
	env := kfNew(t, kfKeyA+"\n")
	fpA, fpB := kfFingerprint(t, kfKeyA), kfFingerprint(t, kfKeyB)

	// A call that started before the reload holds its key: Key returns a value.
	inFlight := env.fk.Key()
	kfWrite(t, env.path, kfKeyB+"\n")
	changed, err := env.fk.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want true, nil", changed, err)
	}
	if err := env.lastReload(t); err != nil {
		t.Errorf("OnReload(%v), want nil", err)
	}
	if inFlight.Fingerprint() != fpA {
		t.Errorf("the in-flight call's key changed to %s", inFlight.Fingerprint())
	}
	if got := env.fk.Key().Fingerprint(); got != fpB {
		t.Errorf("new calls get %s, want %s", got, fpB)
	}
	// The reload is logged by fingerprint, old and new, never by value.
	logs := env.logs.String()
	if !strings.Contains(logs, `"keyFingerprint":"`+fpB+`"`) || !strings.Contains(logs, `"previousFingerprint":"`+fpA+`"`) {
		t.Errorf("reload log lacks the fingerprints: %s", logs)
	}
	if strings.Contains(logs, kfKeyA) || strings.Contains(logs, kfKeyB) {
		t.Errorf("log shows a key: %s", logs)
	}

	// Unchanged contents (the watch's start-up check, a touch): not a reload — no
	// change, no log line, no OnReload.
	before := env.logs.String()
	changed, err = env.fk.Reload()
	if err != nil || changed {
		t.Errorf("Reload of the same key = %v, %v; want false, nil", changed, err)
	}
	select {
	case err := <-env.reloads:
		t.Errorf("OnReload(%v) for an unchanged file", err)
	default:
	}
	if env.logs.String() != before {
		t.Errorf("an unchanged reload logged: %s", strings.TrimPrefix(env.logs.String(), before))
	}
	// Refresh returns the current key.
	if k := env.fk.Refresh(); k.Fingerprint() != fpB {
		t.Errorf("Refresh = %s", k.Fingerprint())
	}
}

func TestFileKeyConcurrentReadersDuringReloads(t *testing.T) {
	env := kfNew(t, kfKeyA)
	go func() {
		for range env.reloads {
		}
	}()
	fpA, fpB := kfFingerprint(t, kfKeyA), kfFingerprint(t, kfKeyB)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		keys := []string{kfKeyB, "", kfKeyA, "Bearer x"}
		for i := 0; ctx.Err() == nil; i++ {
			if err := os.WriteFile(env.path, []byte(keys[i%len(keys)]), 0o600); err != nil {
				t.Error(err)
				return
			}
			_, _ = env.fk.Reload()
		}
	})
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if fp := env.fk.Key().Fingerprint(); fp != fpA && fp != fpB {
					t.Errorf("Key() = %s, neither A nor B", fp)
					return
				}
			}
		})
	}
	wg.Wait()
	close(env.reloads)
}

func TestFileKeyInvalidContentKeepsKey(t *testing.T) {
	// Each bad file carries a canary that must appear in no log line and no error.
	const canary = "sk-canary-do-not-log-91c4"
	fpA := kfFingerprint(t, kfKeyA)
	for _, tt := range []struct {
		name, contents string
	}{
		{"empty", ""},
		{"newline", "\n"},
		{"whitespace only", "  \t \n"},
		{"bearer prefix", "Bearer " + canary},
		{"lower-case bearer", "bearer " + canary},
		{"leading whitespace", "  " + canary},
		{"trailing spaces", canary + "  \n"},
		{"two lines", canary + "\n" + canary + "\n"},
		{"placeholder", livepeer.PlaceholderKey + "\n"},
		{"control character", canary + "\x00"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := kfNew(t, kfKeyA)
			kfWrite(t, env.path, tt.contents)
			changed, err := env.fk.Reload()
			if err == nil || changed {
				t.Fatalf("Reload = %v, %v; want false and an error", changed, err)
			}
			if got := env.lastReload(t); got == nil || got.Error() != err.Error() {
				t.Errorf("OnReload(%v), want the Reload error", got)
			}
			if got := env.fk.Key().Fingerprint(); got != fpA {
				t.Errorf("key is now %s, want the old %s", got, fpA)
			}
			logs := env.logs.String()
			for _, leak := range []string{canary, "do-not-log", kfKeyA} {
				if strings.Contains(logs, leak) || strings.Contains(err.Error(), leak) {
					t.Errorf("%q leaked:\nerror: %v\nlogs: %s", leak, err, logs)
				}
			}
			if !strings.Contains(logs, `"keyFingerprint":"`+fpA+`"`) || !strings.Contains(logs, `"level":"ERROR"`) ||
				!strings.Contains(logs, "keeping the current key") || !strings.Contains(logs, env.path) {
				t.Errorf("log line should be an ERROR naming the file and the kept key's fingerprint: %s", logs)
			}
			// Fixing the file recovers.
			kfWrite(t, env.path, kfKeyB)
			if changed, err := env.fk.Reload(); !changed || err != nil {
				t.Errorf("Reload after fixing = %v, %v", changed, err)
			}
		})
	}
	t.Run("file removed", func(t *testing.T) {
		env := kfNew(t, kfKeyA)
		if err := os.Remove(env.path); err != nil {
			t.Fatal(err)
		}
		if changed, err := env.fk.Reload(); changed || err == nil || !strings.Contains(err.Error(), "cannot read the key file") {
			t.Errorf("Reload = %v, %v", changed, err)
		}
		if got := env.fk.Key().Fingerprint(); got != fpA {
			t.Errorf("key is now %s", got)
		}
	})
}

// kfNewSecret is a Kubernetes Secret volume holding key as api-key.
func kfNewSecret(t testing.TB, key string) *secretdir.Dir {
	return secretdir.New(t, t.TempDir(), map[string][]byte{"api-key": []byte(key)})
}

func kfUpdate(t testing.TB, sec *secretdir.Dir, key string) {
	sec.Update(t, map[string][]byte{"api-key": []byte(key)})
}

func TestFileKeyWatchKubernetesSecret(t *testing.T) {
	sec := kfNewSecret(t, kfKeyA)
	reloads := make(chan error, 10)
	fk, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: sec.Path("api-key"), Logger: slog.New(slog.DiscardHandler),
		OnReload: func(err error) { reloads <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fk.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Watch has no readiness signal: swap in a new key until a reload is reported
	// (each attempt a different key, so a swap made before the watch took its initial
	// state is not mistaken for no change).
	var want string
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		key := fmt.Sprintf("%s-gen%d", kfKeyB, i)
		want = kfFingerprint(t, key)
		kfUpdate(t, sec, key)
		select {
		case err := <-reloads:
			if err != nil {
				t.Fatalf("OnReload(%v)", err)
			}
		case <-time.After(time.Second):
		}
		if fk.Key().Fingerprint() == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch never picked up the swapped key")
		}
	}
	// A bad swap is reported and keeps B.
	drainErrs(reloads)
	kfUpdate(t, sec, "Bearer "+kfKeyA)
	select {
	case err := <-reloads:
		if !errors.Is(err, livepeer.ErrKeyBearer) {
			t.Errorf("OnReload(%v), want ErrKeyBearer", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after the bad swap")
	}
	if fk.Key().Fingerprint() != want {
		t.Error("bad swap replaced the key")
	}
}

func drainErrs(c chan error) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestFileKeyWatchCatchesRotationBeforeStart: serve.go creates the FileKey (reading A)
// and then starts `go fk.Watch(ctx)`. A rotation that lands in between must not be
// lost: watch.Run takes its baseline hashes when it starts, i.e. of B, so neither an
// fsnotify event nor the poll would ever see a difference. (Before b61b495 the key
// stayed A indefinitely — checked for 12.5 s, past the 10 s poll.)
func TestFileKeyWatchCatchesRotationBeforeStart(t *testing.T) {
	sec := kfNewSecret(t, kfKeyA)
	fk, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: sec.Path("api-key"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	kfUpdate(t, sec, kfKeyB) // between NewFileKey and Watch
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fk.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	want := kfFingerprint(t, kfKeyB)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for fk.Key().Fingerprint() != want {
		if time.Now().After(deadline) {
			t.Fatalf("key still %s 1.5 s after Watch started; the rotation made before it started is lost", fk.Key().Fingerprint())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kfRotation is the 401 scenario: the simulator accepts only B; the key file holds A
// when the FileKey is created.
type kfRotation struct {
	sim  *livepeertest.Server
	path string
	fk   *livepeer.FileKey
	c    *livepeer.Client
}

func kfNewRotation(t *testing.T, rt func(base http.RoundTripper) http.RoundTripper) *kfRotation {
	t.Helper()
	sim, err := livepeertest.New(livepeertest.Config{APIKey: kfKeyB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	r := &kfRotation{sim: sim, path: filepath.Join(t.TempDir(), "api-key")}
	kfWrite(t, r.path, kfKeyA+"\n")
	if r.fk, err = livepeer.NewFileKey(livepeer.FileKeyConfig{Path: r.path, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	cfg := livepeer.Config{GatewayURL: sim.URL(), Keys: r.fk, MaxAttempts: 2}
	if rt != nil {
		cfg.Transport = rt(livepeer.NewTransport(time.Second, 16, nil))
	}
	if r.c, err = livepeer.New(cfg); err != nil {
		t.Fatal(err)
	}
	return r
}

func kfT2I() *livepeer.TextToImageParams {
	return &livepeer.TextToImageParams{ModelID: livepeer.DefaultModels[livepeer.PipelineTextToImage], Prompt: "a lighthouse at dusk"}
}

func kfAuthHeaders(sim *livepeertest.Server) []string {
	var out []string
	for _, r := range sim.Requests() {
		out = append(out, r.Header.Get("Authorization"))
	}
	return out
}

func TestClient401RereadsRotatedKeyFile(t *testing.T) {
	r := kfNewRotation(t, nil)
	// The operator rotated the Secret; the watch has not noticed yet (it is not even
	// running here).
	kfWrite(t, r.path, kfKeyB+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := r.c.TextToImage(ctx, kfT2I())
	if err != nil {
		t.Fatalf("TextToImage after rotation: %v", err)
	}
	if len(res.Images) == 0 {
		t.Error("no images")
	}
	if hits := r.sim.Hits(livepeer.PipelineTextToImage); hits != 2 {
		t.Fatalf("simulator hits = %d, want 2 (401 with A, then B)", hits)
	}
	if got := kfAuthHeaders(r.sim); got[0] != "Bearer "+kfKeyA || got[1] != "Bearer "+kfKeyB {
		t.Errorf("Authorization headers = %q, want A then B", got)
	}
	if r.fk.Key().Fingerprint() != kfFingerprint(t, kfKeyB) {
		t.Error("the FileKey did not keep the refreshed key")
	}
	// Later calls use B directly.
	if _, err := r.c.TextToImage(ctx, kfT2I()); err != nil {
		t.Fatal(err)
	}
	if hits := r.sim.Hits(livepeer.PipelineTextToImage); hits != 3 {
		t.Errorf("hits = %d after one more call, want 3", hits)
	}
}

func TestClient401UnchangedKeyFileFails(t *testing.T) {
	r := kfNewRotation(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.c.TextToImage(ctx, kfT2I())
	var se *livepeer.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a 401 StatusError", err)
	}
	if se.KeyFingerprint != kfFingerprint(t, kfKeyA) {
		t.Errorf("KeyFingerprint = %q, want A's", se.KeyFingerprint)
	}
	if hits := r.sim.Hits(livepeer.PipelineTextToImage); hits != 1 {
		t.Errorf("hits = %d, want 1: an unchanged key is not retried", hits)
	}
	// A file that turned invalid is no reason to retry either.
	kfWrite(t, r.path, "Bearer "+kfKeyB)
	_, err = r.c.TextToImage(ctx, kfT2I())
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a 401", err)
	}
	if hits := r.sim.Hits(livepeer.PipelineTextToImage); hits != 2 {
		t.Errorf("hits = %d, want 2", hits)
	}
}

// kfHookTransport runs hook before forwarding each request.
type kfHookTransport struct {
	base http.RoundTripper
	hook func(n int64, req *http.Request)
	n    atomic.Int64
}

func (h *kfHookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h.hook(h.n.Add(1), req)
	return h.base.RoundTrip(req)
}

// TestClient401WatchWinsTheRace: the call takes key A; while its request is on the
// wire the watch reloads the rotated file (FileKey now holds B); the gateway answers
// 401 for A. The key the call used is stale and a newer one is available, so the call
// must be retried with B. (Before b61b495 the client retried only when Refresh itself
// reported a change, and this call failed.)
func TestClient401WatchWinsTheRace(t *testing.T) {
	var r *kfRotation
	r = kfNewRotation(t, func(base http.RoundTripper) http.RoundTripper {
		return &kfHookTransport{base: base, hook: func(n int64, req *http.Request) {
			if n == 1 {
				if changed, err := r.fk.Reload(); !changed || err != nil { // the watch firing
					t.Errorf("watch reload = %v, %v", changed, err)
				}
			}
		}}
	})
	kfWrite(t, r.path, kfKeyB+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.c.TextToImage(ctx, kfT2I())
	if err != nil {
		t.Fatalf("call failed although the key had been rotated before the 401 arrived: %v", err)
	}
	if got := kfAuthHeaders(r.sim); len(got) != 2 || got[1] != "Bearer "+kfKeyB {
		t.Errorf("requests: %d, want 2 (A, then B)", len(got))
	}
}

// TestClient401ConcurrentCallsAllRetry: two calls in flight with A when the gateway
// starts rejecting it. The first to see its 401 refreshes and swaps in B; the second
// must be retried too, since its key (A) is no longer the current one. (Before b61b495
// the second one's Refresh reported "unchanged" and it failed.)
func TestClient401ConcurrentCallsAllRetry(t *testing.T) {
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	r := kfNewRotation(t, func(base http.RoundTripper) http.RoundTripper {
		return &kfHookTransport{base: base, hook: func(n int64, req *http.Request) {
			if n <= 2 { // hold the first two requests until both carry A
				arrived <- struct{}{}
				<-release
			}
		}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := r.c.TextToImage(ctx, kfT2I())
			errs <- err
		}()
	}
	<-arrived
	<-arrived
	kfWrite(t, r.path, kfKeyB+"\n") // rotated while both are in flight
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("call failed: %v", err)
		}
	}
	got := kfAuthHeaders(r.sim)
	var a, b int
	for _, h := range got {
		switch h {
		case "Bearer " + kfKeyA:
			a++
		case "Bearer " + kfKeyB:
			b++
		}
	}
	if a != 2 || b != 2 {
		t.Errorf("requests carried A %d times and B %d times (of %d), want 2 and 2", a, b, len(got))
	}
}

// TestFileKeyOnReloadAfterSwap: OnReload reports a completed reload, so when it runs
// with nil the new key must already be the one new calls get (a metric or a test that
// reacts to it must not observe the old key).
func TestFileKeyOnReloadAfterSwap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-key")
	kfWrite(t, path, kfKeyA)
	var fk *livepeer.FileKey
	var seen string
	fk, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: path, Logger: slog.New(slog.DiscardHandler),
		OnReload: func(err error) {
			if err == nil {
				seen = fk.Key().Fingerprint()
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	kfWrite(t, path, kfKeyB)
	if changed, err := fk.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if want := kfFingerprint(t, kfKeyB); seen != want {
		t.Errorf("OnReload(nil) saw key %s, want the new key %s: the callback ran before the swap", seen, want)
	}
}

// kfWithin runs f in a goroutine and fails the test if it has not returned within d:
// reading a FIFO blocks until a writer comes, and a test that hung there would hang the
// whole run. On timeout the FIFO at fifo gets a writer (which ends the blocked read) so
// that the goroutine does not outlive the test.
func kfWithin(t *testing.T, d time.Duration, fifo string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = w.Close()
		}
		<-done
		t.Fatalf("reading the key file %s did not return within %v: a FIFO must be refused, not read", fifo, d)
	}
}

// TestNewFileKeyRefusesFIFO: a FIFO as LIVEPEER_API_KEY_FILE is refused at once with an
// error that says what it is, instead of hanging start-up until something writes to it.
func TestNewFileKeyRefusesFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api-key")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var err error
	start := time.Now()
	kfWithin(t, time.Second, path, func() {
		_, err = livepeer.NewFileKey(livepeer.FileKeyConfig{Path: path, Logger: slog.New(slog.DiscardHandler)})
	})
	if err == nil || !strings.Contains(err.Error(), "named pipe") || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("NewFileKey(FIFO) = %v, want an error saying it is a named pipe, not a regular file", err)
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("refusing the FIFO took %v", took)
	}
	// A symlink to a FIFO is no better than the FIFO.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	kfWithin(t, time.Second, path, func() {
		_, err = livepeer.NewFileKey(livepeer.FileKeyConfig{Path: link, Logger: slog.New(slog.DiscardHandler)})
	})
	if err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("NewFileKey(symlink to FIFO) = %v", err)
	}
}

// TestFileKeyReloadRefusesFIFO: a key file replaced by a FIFO is refused on reload (the
// watch does not hang), the current key stays, and the log says why.
func TestFileKeyReloadRefusesFIFO(t *testing.T) {
	env := kfNew(t, kfKeyA)
	if err := os.Remove(env.path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(env.path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	var (
		changed bool
		err     error
	)
	kfWithin(t, time.Second, env.path, func() { changed, err = env.fk.Reload() })
	if changed || err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("Reload = %v, %v; want false and an error naming the FIFO", changed, err)
	}
	if got, want := env.fk.Key().Fingerprint(), kfFingerprint(t, kfKeyA); got != want {
		t.Errorf("key is now %s, want the old %s", got, want)
	}
	if logs := env.logs.String(); !strings.Contains(logs, "keeping the current key") || !strings.Contains(logs, "named pipe") {
		t.Errorf("no log line saying why the key was kept: %s", logs)
	}
}

// TestNewFileKeyRefusesOversizedAndNonASCII: a file over 4 KiB, or a key with a byte
// outside printable ASCII, is refused with an error saying which, never showing it.
func TestNewFileKeyRefusesOversizedAndNonASCII(t *testing.T) {
	const canary = "sk-canary-never-print-7f3e"
	dir := t.TempDir()
	for _, tt := range []struct{ name, contents, want string }{
		{"over 4 KiB", canary + strings.Repeat("x", 4<<10), "larger than 4096 bytes"},
		{"over 4 KiB of newlines", canary + strings.Repeat("\n", 4<<10), "larger than 4096 bytes"},
		{"en dash", "sk\u2013canary-never-print-7f3e\n", "printable ASCII"},
		{"non-ASCII letter", canary + "é", "printable ASCII"},
		{"byte-order mark", "\ufeff" + canary, "printable ASCII"},
		{"invalid UTF-8", canary + "\xff", "printable ASCII"},
		{"DEL", canary + "\x7f", "control"},
		{"NUL", canary + "\x00", "control"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
		kfWrite(t, path, tt.contents)
		_, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: path, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", tt.name, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "never-print")) {
			t.Errorf("%s: error shows the file's contents: %v", tt.name, err)
		}
	}
	// Exactly 4 KiB with its newline is still a key, however odd.
	path := filepath.Join(dir, "4KiB")
	kfWrite(t, path, strings.Repeat("k", 4<<10-1)+"\n")
	if _, err := livepeer.NewFileKey(livepeer.FileKeyConfig{Path: path, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Errorf("a 4 KiB key file: %v", err)
	}
}
