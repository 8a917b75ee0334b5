package livepeer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

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
	data, err := ReadKeyFile(f.path)
	if err != nil {
		return APIKey{}, fmt.Errorf("cannot read the key file: %w", err)
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

// ErrKeyFileNotRegular: the key file is a FIFO, a device, a socket or a directory.
// Reading a FIFO blocks until some process writes to it (start-up would hang, deaf to
// SIGTERM, and so would every reload); a device may never end.
var ErrKeyFileNotRegular = errors.New("not a regular file: genservice reads the key only from a regular file holding only the key (a symlink to one, as in a Kubernetes Secret volume, is fine)")

// ReadKeyFile reads a key file safely: it follows symlinks (Kubernetes Secret volumes are
// symlinks to regular files) but reads only a regular file, never blocks on a FIFO, and
// reads at most MaxKeyFileSize+1 bytes (ParseKeyFile refuses more than MaxKeyFileSize).
// Errors say what is wrong with the file and never show its contents; callers prefix
// "cannot read the key file" and name the variable (LIVEPEER_API_KEY_FILE).
func ReadKeyFile(path string) ([]byte, error) {
	// Stat first, so that a FIFO or a device is never even opened: opening a FIFO for
	// reading waits for a writer, and opening a device can have side effects.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	// O_NONBLOCK: should the path be swapped for a FIFO between Stat and open, the open
	// still returns at once, and the check on the open file below refuses it.
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if fi, err = file.Stat(); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(path, fi.Mode())
	}
	return io.ReadAll(io.LimitReader(file, MaxKeyFileSize+1))
}

func notRegular(path string, m fs.FileMode) error {
	kind := "special file"
	switch {
	case m&fs.ModeNamedPipe != 0:
		kind = "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		kind = "socket"
	case m&fs.ModeDevice != 0:
		kind = "device"
	case m.IsDir():
		kind = "directory"
	}
	return fmt.Errorf("%s is a %s, %w", path, kind, ErrKeyFileNotRegular)
}
