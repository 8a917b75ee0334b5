// Package watch notices when files change, the way Kubernetes changes them: a mounted
// Secret or ConfigMap is a directory whose files are symlinks through "..data", and an
// update swaps that symlink atomically. Watching the file itself misses that, so the
// watcher watches each file's directory (fsnotify) and, because events can be lost
// (network filesystems, overflowing queues), also polls the files' contents.
package watch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Config configures a Watcher.
type Config struct {
	// Paths are the files to watch.
	Paths []string
	// OnChange is called (from the watcher's goroutine, never concurrently) after any of
	// the files' contents changed, and once when watching starts, so that a change made
	// between the caller's first load and the start of the watch is not missed. It
	// re-reads and validates the files itself, and should do nothing when they hold what
	// it already has.
	OnChange func()
	// PollInterval is the polling backstop. Default 10s.
	PollInterval time.Duration
	// Debounce coalesces bursts of events (a symlink swap produces several). Default 100ms.
	Debounce time.Duration
	// Logger receives watch failures. Default slog.Default().
	Logger *slog.Logger
}

// Run watches until ctx ends. It returns only when ctx is done; a failure to set up
// fsnotify is logged and leaves polling in charge.
func Run(ctx context.Context, cfg Config) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	sums := make([][32]byte, len(cfg.Paths))
	for i, p := range cfg.Paths {
		sums[i] = sum(p)
	}
	changed := func() bool {
		any := false
		for i, p := range cfg.Paths {
			s := sum(p)
			if !bytes.Equal(s[:], sums[i][:]) {
				sums[i] = s
				any = true
			}
		}
		return any
	}

	var events chan fsnotify.Event
	var errs chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		cfg.Logger.Warn("file watch unavailable; polling only", slog.String("error", err.Error()))
	} else {
		defer w.Close()
		dirs := map[string]bool{}
		for _, p := range cfg.Paths {
			d := filepath.Dir(p)
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := w.Add(d); err != nil {
				cfg.Logger.Warn("cannot watch directory; polling only for it", slog.String("dir", d), slog.String("error", err.Error()))
			}
		}
		events, errs = w.Events, w.Errors
	}

	cfg.OnChange()
	poll := time.NewTicker(cfg.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any event in a watched directory may be the ..data swap; compare contents
			// once the burst settles.
			debounce.Reset(cfg.Debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			cfg.Logger.Warn("file watch error; polling continues", slog.String("error", err.Error()))
		case <-debounce.C:
			if changed() {
				cfg.OnChange()
			}
		case <-poll.C:
			if changed() {
				cfg.OnChange()
			}
		}
	}
}

// sum hashes a file's contents; an unreadable file hashes as empty, so its reappearance
// counts as a change.
func sum(path string) [32]byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(data)
}
