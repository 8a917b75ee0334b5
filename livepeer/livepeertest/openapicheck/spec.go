package openapicheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// SpecEnv names an environment variable that, when set, overrides where
// SpecPath looks.
const SpecEnv = "LIVEPEER_OPENAPI_SPEC"

// ErrSpecNotFound is returned (wrapped) by SpecPath when there is no spec.
var ErrSpecNotFound = errors.New("gateway OpenAPI spec not found")

// specRel is where the spec lives relative to the directory holding both
// the repository and shared/ (the checkout and CI both lay them side by
// side).
var specRel = filepath.Join("shared", "livepeer", "gateway.openapi.yaml")

// SpecPath finds shared/livepeer/gateway.openapi.yaml by walking up from
// the working directory: the first ancestor with a shared/ holding the spec
// wins, which for a test run inside the repository is the repository
// root's parent. SpecEnv, if set, is used instead.
func SpecPath() (string, error) {
	if p := os.Getenv(SpecEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v", ErrSpecNotFound, SpecEnv, p, err)
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSpecNotFound, err)
	}
	for {
		p := filepath.Join(dir, specRel)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%w: no %s above the working directory", ErrSpecNotFound, specRel)
		}
		dir = parent
	}
}

// TB is the part of testing.TB that ForTest uses; this package does not
// import testing.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*Checker{}
)

// ForTest returns a Checker for the spec SpecPath finds, loaded once per
// process. Without a spec it skips the test, except in CI (CI=true), where
// the spec must be present and its absence fails the test.
func ForTest(tb TB) *Checker {
	tb.Helper()
	path, err := SpecPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("openapicheck: %v (required when CI=true)", err)
		} else {
			tb.Skipf("openapicheck: %v", err)
		}
		return nil
	}
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := cache[path]; ok {
		return c
	}
	c, err := Load(path)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	cache[path] = c
	return c
}
