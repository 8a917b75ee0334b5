// Package reload keeps a value that is read from files and replaced, without a restart,
// when the files change: the serving certificate, the backend API key, the
// authorization policy. Each of them reads and validates its files in its own way; what
// happens around that is the same for all and lives here once:
//
//   - the first load must succeed (start-up refuses a bad file);
//   - a reload reads, compares with what is in force, swaps atomically, then reports;
//   - a reload that reads what is already in force is not a reload: no swap, no log
//     line, no callback (the watch checks once at start, and a touch changes nothing);
//   - a bad file keeps the current value, and the log line says why;
//   - the callback (metrics) runs after the swap, so whoever reacts to it sees the new
//     value.
package reload

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"genservice/watch"
)

// Config configures a Value.
type Config[T any] struct {
	// Paths are the files the value is read from; Watch watches them. With exactly one,
	// the log lines name it as "file"; with several, Load's errors must say which file
	// is at fault.
	Paths []string
	// Load reads and validates the files and returns the value and a hash of what it
	// was read from. Equal hashes mean "nothing changed": hash what matters to the
	// value (the parsed key, not the file's trailing newline), never store a secret in
	// the clear. Its errors are logged and returned: they must not show secrets.
	Load func() (T, [32]byte, error)
	// Rejected is the ERROR log message when a reload fails and the current value is
	// kept, e.g. "policy file rejected; keeping the current policy".
	Rejected string
	// Reloaded is the INFO log message after a new value was swapped in.
	Reloaded string
	// Describe, if set, says what the log lines say about a value: the new one after a
	// reload, the kept one after a rejection. Never secrets: a fingerprint, a subject.
	Describe func(T) []slog.Attr
	// DescribePrevious, if set, says what the reload line says about the value that
	// was replaced (so that an operator sees old and new side by side).
	DescribePrevious func(T) []slog.Attr
	// OnReload, if set, is called after every reload attempt that was not a no-op,
	// with its error (nil once the new value is in force), for metrics.
	OnReload func(err error)
	// Logger receives the reload lines and watch failures. Default slog.Default().
	Logger *slog.Logger
}

// Value holds the current value. Its methods are safe for concurrent use.
type Value[T any] struct {
	cfg Config[T]
	cur atomic.Pointer[loaded[T]]
	mu  sync.Mutex // serialises reloads, so compare-and-swap sees a stable current value
}

// loaded is one generation of the value with the hash it was read from.
type loaded[T any] struct {
	v   T
	sum [32]byte
}

// New loads the value for the first time; it fails, without logging, if that load does:
// start-up reports the error itself, naming the flag or variable.
func New[T any](cfg Config[T]) (*Value[T], error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	v, sum, err := cfg.Load()
	if err != nil {
		return nil, err
	}
	r := &Value[T]{cfg: cfg}
	r.cur.Store(&loaded[T]{v: v, sum: sum})
	return r, nil
}

// Current returns the value in force. A caller that keeps it keeps that generation,
// whatever reloads happen meanwhile.
func (r *Value[T]) Current() T { return r.cur.Load().v }

// Reload reads the files again and swaps in the new value if it differs. On error the
// current value stays in force, the error is logged (at ERROR, with the kept value's
// description) and reported to OnReload. changed is true only when a new value was
// swapped in.
func (r *Value[T]) Reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	v, sum, err := r.cfg.Load()
	if err != nil {
		attrs := append(r.fileAttrs(), slog.String("reason", err.Error()))
		attrs = append(attrs, describe(r.cfg.Describe, old.v)...)
		r.cfg.Logger.LogAttrs(context.Background(), slog.LevelError, r.cfg.Rejected, attrs...)
		r.report(err)
		return false, err
	}
	if sum == old.sum {
		return false, nil // nothing changed: not a reload
	}
	r.cur.Store(&loaded[T]{v: v, sum: sum})
	r.report(nil)
	attrs := append(r.fileAttrs(), describe(r.cfg.Describe, v)...)
	attrs = append(attrs, describe(r.cfg.DescribePrevious, old.v)...)
	r.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, r.cfg.Reloaded, attrs...)
	return true, nil
}

// Watch reloads the value whenever one of its files changes, until ctx ends. It
// reloads once when it starts, so that a change made between New and Watch is not
// missed (the watcher's baseline is the files as they are when it starts).
func (r *Value[T]) Watch(ctx context.Context) {
	watch.Run(ctx, watch.Config{Paths: r.cfg.Paths, Logger: r.cfg.Logger, OnChange: func() { _, _ = r.Reload() }})
}

func (r *Value[T]) report(err error) {
	if r.cfg.OnReload != nil {
		r.cfg.OnReload(err)
	}
}

// fileAttrs names the file when there is only one; with several, Load's error names
// the one at fault, and the success line describes the value instead.
func (r *Value[T]) fileAttrs() []slog.Attr {
	if len(r.cfg.Paths) == 1 {
		return []slog.Attr{slog.String("file", r.cfg.Paths[0])}
	}
	return nil
}

func describe[T any](f func(T) []slog.Attr, v T) []slog.Attr {
	if f == nil {
		return nil
	}
	return f(v)
}
