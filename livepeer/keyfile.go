package livepeer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"syscall"

	"genservice/reload"
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
	v *reload.Value[APIKey]
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
	fingerprint := func(name string) func(APIKey) []slog.Attr {
		return func(k APIKey) []slog.Attr { return []slog.Attr{slog.String(name, k.Fingerprint())} }
	}
	v, err := reload.New(reload.Config[APIKey]{
		Paths:            []string{cfg.Path},
		Load:             func() (APIKey, [32]byte, error) { return loadKeyFile(cfg.Path) },
		Rejected:         "API key file is invalid; keeping the current key",
		Reloaded:         "API key reloaded",
		Describe:         fingerprint("keyFingerprint"),
		DescribePrevious: fingerprint("previousFingerprint"),
		OnReload:         cfg.OnReload,
		Logger:           cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &FileKey{v: v}, nil
}

// loadKeyFile reads and validates the key. The hash is of the key, not of the file, so
// that rewriting the same key with or without its trailing newline is not a reload.
func loadKeyFile(path string) (APIKey, [32]byte, error) {
	data, err := ReadKeyFile(path)
	if err != nil {
		return APIKey{}, [32]byte{}, fmt.Errorf("cannot read the key file: %w", err)
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return APIKey{}, [32]byte{}, err
	}
	return k, sha256.Sum256([]byte(k.raw())), nil
}

// Key implements KeySource.
func (f *FileKey) Key() APIKey { return f.v.Current() }

// Reload re-reads the file and swaps in a valid new key. An invalid file keeps the
// current key; the error says why (never showing the file's contents).
func (f *FileKey) Reload() (changed bool, err error) { return f.v.Reload() }

// Refresh implements Refresher: the client calls it on a 401, synchronously, so a key
// rotated before the watch noticed is used at once.
func (f *FileKey) Refresh() APIKey {
	_, _ = f.v.Reload()
	return f.v.Current()
}

// Watch reloads the key whenever the file changes, until ctx ends.
func (f *FileKey) Watch(ctx context.Context) { f.v.Watch(ctx) }

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
