package livepeer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"genservice/watch"
)

// Refresher is a KeySource that can re-read its key on demand. The client calls it
// after a 401: if the operator rotated the key and the watch has not noticed yet, the
// call is retried once with the new key instead of failing.
type Refresher interface {
	KeySource
	// Refresh re-reads the key and returns the current one.
	Refresh() APIKey
}

// FileKey is a KeySource backed by a file (LIVEPEER_API_KEY_FILE), reloaded when the
// file changes. The swap is atomic: a call keeps the key it read when it started, new
// calls get the new key. A file that turns empty or invalid keeps the last good key.
type FileKey struct {
	path     string
	log      *slog.Logger
	cur      atomic.Pointer[APIKey]
	mu       sync.Mutex // serialises reloads
	onReload func(err error)
}

// FileKeyConfig configures a FileKey.
type FileKeyConfig struct {
	Path   string
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt with its error (nil on
	// success), for metrics.
	OnReload func(err error)
}

// NewFileKey reads and validates the key file; it fails if the first read does.
func NewFileKey(cfg FileKeyConfig) (*FileKey, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &FileKey{path: cfg.Path, log: cfg.Logger, onReload: cfg.OnReload}
	k, err := f.read()
	if err != nil {
		return nil, err
	}
	f.cur.Store(&k)
	return f, nil
}

func (f *FileKey) read() (APIKey, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return APIKey{}, fmt.Errorf("cannot read the key file: %v", err)
	}
	return ParseKeyFile(data)
}

// Key implements KeySource.
func (f *FileKey) Key() APIKey { return *f.cur.Load() }

// Reload re-reads the file and swaps in a valid new key. An invalid file keeps the
// current key; the error says why (never showing the file's contents).
func (f *FileKey) Reload() (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.Key()
	k, err := f.read()
	if err != nil {
		f.log.Error("API key file is invalid; keeping the current key",
			slog.String("file", f.path), slog.String("reason", err.Error()),
			slog.String("keyFingerprint", old.Fingerprint()))
		if f.onReload != nil {
			f.onReload(err)
		}
		return false, err
	}
	if k.Equal(old) {
		return false, nil // nothing changed: not a reload
	}
	f.cur.Store(&k)
	if f.onReload != nil {
		f.onReload(nil)
	}
	f.log.Info("API key reloaded", slog.String("file", f.path),
		slog.String("keyFingerprint", k.Fingerprint()), slog.String("previousFingerprint", old.Fingerprint()))
	return true, nil
}

// Refresh implements Refresher.
func (f *FileKey) Refresh() APIKey {
	_, _ = f.Reload()
	return f.Key()
}

// Watch reloads the key whenever the file changes, until ctx ends.
func (f *FileKey) Watch(ctx context.Context) {
	watch.Run(ctx, watch.Config{Paths: []string{f.path}, Logger: f.log, OnChange: func() { _, _ = f.Reload() }})
}
