package watch_test

import (
	"context"
	"fmt"
	"genservice/internal/logbuf"
	"genservice/internal/secretdir"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"genservice/watch"
)

// newSecretDir is secretdir.New with string contents.
func newSecretDir(t testing.TB, dir string, files map[string]string) *secretdir.Dir {
	return secretdir.New(t, dir, bytesOf(files))
}

func bytesOf(files map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = []byte(v)
	}
	return out
}

// watcher runs watch.Run and reports each OnChange with the watched file's contents at
// that moment.
type watcher struct {
	changes chan string
	done    chan struct{}
	cancel  context.CancelFunc
	logs    *syncBuf
}

type syncBuf = logbuf.Buffer

func startWatch(t *testing.T, cfg watch.Config, read string) *watcher {
	t.Helper()
	w := &watcher{changes: make(chan string, 100), done: make(chan struct{}), logs: &syncBuf{}}
	var inCallback sync.Mutex
	cfg.OnChange = func() {
		if !inCallback.TryLock() {
			t.Error("OnChange called concurrently")
			return
		}
		defer inCallback.Unlock()
		data, _ := os.ReadFile(read)
		w.changes <- string(data)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(w.logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		defer close(w.done)
		watch.Run(ctx, cfg)
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// next waits for the next OnChange.
func (w *watcher) next(t *testing.T, within time.Duration, what string) string {
	t.Helper()
	select {
	case got := <-w.changes:
		return got
	case <-time.After(within):
		t.Fatalf("no OnChange within %v after %s", within, what)
		return ""
	}
}

// none asserts that no OnChange arrives for a while. (A negative can only be checked
// by waiting; the wait is several debounce periods.)
func (w *watcher) none(t *testing.T, wait time.Duration, what string) {
	t.Helper()
	select {
	case got := <-w.changes:
		t.Fatalf("OnChange after %s (contents %q), want none", what, got)
	case <-time.After(wait):
	}
}

// started waits for the OnChange that Run makes once when watching starts (after its
// fsnotify watches are in place, so it doubles as a readiness signal) and returns the
// contents it saw.
func (w *watcher) started(t *testing.T) string {
	t.Helper()
	return w.next(t, 5*time.Second, "watch start")
}

func TestRunKubernetesSymlinkSwap(t *testing.T) {
	root := t.TempDir()
	sec := newSecretDir(t, root, map[string]string{"tls.crt": "cert generation 1", "tls.key": "key generation 1"})
	w := startWatch(t, watch.Config{
		Paths:        []string{sec.Path("tls.crt"), sec.Path("tls.key")},
		PollInterval: time.Hour, // fsnotify only
		Debounce:     50 * time.Millisecond,
	}, sec.Path("tls.crt"))
	if got := w.started(t); got != "cert generation 1" {
		t.Fatalf("start-up OnChange saw %q", got)
	}

	for gen := 2; gen <= 4; gen++ {
		want := fmt.Sprintf("cert generation %d", gen)
		start := time.Now()
		sec.Update(t, bytesOf(map[string]string{"tls.crt": want, "tls.key": fmt.Sprintf("key generation %d", gen)}))
		got := w.next(t, time.Second, "a ..data swap")
		if got != want {
			t.Fatalf("OnChange saw %q, want %q", got, want)
		}
		t.Logf("generation %d: OnChange after %v", gen, time.Since(start).Round(time.Millisecond))
		// A swap is several events (mkdir, symlink, rename, remove): one OnChange.
		w.none(t, 200*time.Millisecond, "the same swap")
	}
}

func TestRunNoCallbackWithoutContentChange(t *testing.T) {
	root := t.TempDir()
	sec := newSecretDir(t, root, map[string]string{"ca.crt": "bundle 1"})
	w := startWatch(t, watch.Config{
		Paths:        []string{sec.Path("ca.crt")},
		PollInterval: 50 * time.Millisecond, // polling runs too: it must not report either
		Debounce:     20 * time.Millisecond,
	}, sec.Path("ca.crt"))
	w.started(t)

	// touch: new mtime, same bytes.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(sec.Path("ca.crt"), future, future); err != nil {
		t.Fatal(err)
	}
	// A rewrite in place with the same bytes (through the symlinks: the current generation).
	if err := os.WriteFile(sec.Path("ca.crt"), []byte("bundle 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A ..data swap to an identical generation (a resync of an unchanged Secret).
	sec.Update(t, bytesOf(map[string]string{"ca.crt": "bundle 1"}))
	// An unrelated file appearing in the directory.
	if err := os.WriteFile(filepath.Join(root, "unrelated"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.none(t, 400*time.Millisecond, "touch, same-content rewrite, identical swap and an unrelated file")

	// A real change after all that is reported once.
	sec.Update(t, bytesOf(map[string]string{"ca.crt": "bundle 2"}))
	if got := w.next(t, time.Second, "a real change"); got != "bundle 2" {
		t.Fatalf("OnChange saw %q", got)
	}
	w.none(t, 200*time.Millisecond, "the same change")
}

func TestRunPollingWhenDirectoryReplaced(t *testing.T) {
	// fsnotify watches the file's directory by inode. When that directory is removed
	// and recreated (a volume remounted, a tool that replaces the whole directory), the
	// watch is gone for good and only polling notices later changes.
	for _, tt := range []struct {
		name string
		poll time.Duration
		want bool
	}{
		{"poll 100ms", 100 * time.Millisecond, true},
		{"poll 1h", time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(t.TempDir(), "mount")
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(sub, "api-key")
			if err := os.WriteFile(file, []byte("key 1"), 0o600); err != nil {
				t.Fatal(err)
			}
			w := startWatch(t, watch.Config{Paths: []string{file}, PollInterval: tt.poll, Debounce: 20 * time.Millisecond}, file)
			w.started(t)
			if err := os.RemoveAll(sub); err != nil {
				t.Fatal(err)
			}
			// The removal itself is a change (the files vanished) and fsnotify sees it.
			if got := w.next(t, time.Second, "removing the directory"); got != "" {
				t.Fatalf("OnChange after removal saw %q", got)
			}
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte("key 2"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.want {
				if got := w.next(t, time.Second, "recreating the directory (polling)"); got != "key 2" {
					t.Fatalf("OnChange saw %q, want key 2", got)
				}
				// And polling keeps working for in-place rewrites.
				if err := os.WriteFile(file, []byte("key 3"), 0o600); err != nil {
					t.Fatal(err)
				}
				if got := w.next(t, time.Second, "rewriting in place (polling)"); got != "key 3" {
					t.Fatalf("OnChange saw %q, want key 3", got)
				}
			} else {
				w.none(t, 500*time.Millisecond, "recreating the directory with polling off (fsnotify lost its watch)")
			}
		})
	}
}

func TestRunPollingOnlyWhenDirectoryMissing(t *testing.T) {
	// The directory does not exist yet at start (a volume mounted late): fsnotify cannot
	// watch it, which is logged, and polling finds the file when it appears.
	dir := filepath.Join(t.TempDir(), "late")
	file := filepath.Join(dir, "policy.yaml")
	w := startWatch(t, watch.Config{Paths: []string{file}, PollInterval: 50 * time.Millisecond}, file)
	if got := w.started(t); got != "" {
		t.Fatalf("start-up OnChange saw %q for a missing file", got)
	}
	if logs := w.logs.String(); !strings.Contains(logs, "cannot watch directory") || !strings.Contains(logs, dir) {
		t.Fatalf("no warning naming the unwatchable directory; logs: %s", logs)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("rules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t, time.Second, "the file appearing"); got != "rules: []\n" {
		t.Fatalf("OnChange saw %q", got)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, watch.Config{Paths: []string{file}, PollInterval: 10 * time.Millisecond, Debounce: 10 * time.Millisecond}, file)
	w.started(t)
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// No callbacks after Run returned.
	if err := os.WriteFile(file, []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.none(t, 100*time.Millisecond, "a change after cancel")

	// A context that is already cancelled returns at once (after at most the start-up
	// OnChange).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	var calls atomic.Int32
	go func() {
		watch.Run(ctx, watch.Config{Paths: []string{file}, OnChange: func() { calls.Add(1) }, Logger: slog.New(slog.DiscardHandler)})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run with a cancelled context did not return")
	}
	if n := calls.Load(); n > 1 {
		t.Errorf("%d OnChange calls with a cancelled context", n)
	}
}

func TestRunCatchesUpAtStart(t *testing.T) {
	// The caller loads a file, the file changes, then the watch starts: the start-up
	// OnChange lets the caller see the change; nothing else follows.
	root := t.TempDir()
	sec := newSecretDir(t, root, map[string]string{"api-key": "key A"})
	loaded := "key A"
	sec.Update(t, bytesOf(map[string]string{"api-key": "key B"})) // before Run
	w := startWatch(t, watch.Config{Paths: []string{sec.Path("api-key")}, PollInterval: 50 * time.Millisecond, Debounce: 20 * time.Millisecond}, sec.Path("api-key"))
	if got := w.started(t); got != "key B" || got == loaded {
		t.Fatalf("start-up OnChange saw %q, want key B", got)
	}
	w.none(t, 300*time.Millisecond, "start-up with no further change")
}
