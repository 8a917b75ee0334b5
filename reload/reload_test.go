package reload

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"genservice/internal/logbuf"
)

// env is a Value[string] read from one file; contents starting with "bad" fail to load.
type env struct {
	path    string
	logs    *logbuf.Buffer
	reloads chan error
	v       *Value[string]
}

func newEnv(t *testing.T, contents string) (*env, error) {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "value"), logs: &logbuf.Buffer{}, reloads: make(chan error, 100)}
	e.write(t, contents)
	var err error
	e.v, err = New(Config[string]{
		Paths: []string{e.path},
		Load: func() (string, [32]byte, error) {
			data, err := os.ReadFile(e.path)
			if err != nil {
				return "", [32]byte{}, err
			}
			if strings.HasPrefix(string(data), "bad") {
				return "", [32]byte{}, errors.New("bad contents")
			}
			return string(data), sha256.Sum256(data), nil
		},
		Rejected:         "value rejected; keeping the current one",
		Reloaded:         "value reloaded",
		Describe:         func(s string) []slog.Attr { return []slog.Attr{slog.String("value", s)} },
		DescribePrevious: func(s string) []slog.Attr { return []slog.Attr{slog.String("previous", s)} },
		OnReload:         func(err error) { e.reloads <- err },
		Logger:           slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
	return e, err
}

func (e *env) write(t *testing.T, contents string) {
	t.Helper()
	if err := os.WriteFile(e.path, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewFailsOnABadFirstLoad(t *testing.T) {
	e, err := newEnv(t, "bad at start")
	if err == nil || e.v != nil {
		t.Fatalf("New = %v, %v; want an error", e.v, err)
	}
	if e.logs.String() != "" || len(e.reloads) != 0 {
		t.Errorf("a failed first load logged or reported: %q, %d callbacks", e.logs.String(), len(e.reloads))
	}
}

func TestReload(t *testing.T) {
	e, err := newEnv(t, "one")
	if err != nil {
		t.Fatal(err)
	}
	// Unchanged: no swap, no log line, no callback.
	if changed, err := e.v.Reload(); changed || err != nil {
		t.Errorf("unchanged Reload = %v, %v", changed, err)
	}
	if e.logs.String() != "" || len(e.reloads) != 0 {
		t.Errorf("an unchanged reload logged or reported: %q", e.logs.String())
	}

	// Bad: the current value stays, the line says why and what is kept.
	e.write(t, "bad news")
	if changed, err := e.v.Reload(); changed || err == nil {
		t.Errorf("bad Reload = %v, %v", changed, err)
	}
	if got := <-e.reloads; got == nil {
		t.Error("OnReload(nil) for a bad file")
	}
	if e.v.Current() != "one" {
		t.Errorf("value %q after a bad file", e.v.Current())
	}
	logs := e.logs.String()
	for _, want := range []string{`"level":"ERROR"`, `"msg":"value rejected; keeping the current one"`, `"file":"` + e.path + `"`, `"reason":"bad contents"`, `"value":"one"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("rejection line lacks %s: %s", want, logs)
		}
	}

	// Good: swapped before the callback runs; the line describes new and old.
	e.write(t, "two")
	e.v.cfg.OnReload = func(err error) {
		if err == nil && e.v.Current() != "two" {
			t.Errorf("OnReload(nil) ran while %q was still current", e.v.Current())
		}
		e.reloads <- err
	}
	if changed, err := e.v.Reload(); !changed || err != nil {
		t.Errorf("Reload = %v, %v", changed, err)
	}
	if got := <-e.reloads; got != nil {
		t.Errorf("OnReload(%v)", got)
	}
	if !strings.Contains(e.logs.String(), `"msg":"value reloaded","file":"`+e.path+`","value":"two","previous":"one"`) {
		t.Errorf("reload line: %s", e.logs.String())
	}
}

// TestWatchCatchesChangeBeforeStart: a change made between New and Watch is picked up
// as soon as Watch starts, not at the next change or poll.
func TestWatchCatchesChangeBeforeStart(t *testing.T) {
	e, err := newEnv(t, "one")
	if err != nil {
		t.Fatal(err)
	}
	e.write(t, "two")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.v.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-e.reloads:
		if err != nil || e.v.Current() != "two" {
			t.Errorf("OnReload(%v), value %q", err, e.v.Current())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the change made before Watch started was not picked up")
	}
}

func TestNoFileAttributeForSeveralPaths(t *testing.T) {
	var logs logbuf.Buffer
	n := 0
	v, err := New(Config[int]{
		Paths: []string{"a", "b"},
		Load: func() (int, [32]byte, error) {
			n++
			return n, [32]byte{byte(n)}, nil
		},
		Reloaded: "reloaded",
		Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), `"file"`) {
		t.Errorf("with several files the line names one: %s", logs.String())
	}
}
