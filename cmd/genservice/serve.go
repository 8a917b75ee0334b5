package main

import (
	"log/slog"
	"os"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// drainTimeout is how long the demo waits for its servers on Ctrl-C.
const drainTimeout = 5 * time.Second
