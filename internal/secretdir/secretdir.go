// Package secretdir lays out a directory the way the kubelet mounts a Secret or
// ConfigMap, for tests of rotation:
//
//	dir/..2026_01_01_00_00_00.1/tls.crt   the data of one generation
//	dir/..data -> ..2026_01_01_00_00_00.1 the current generation
//	dir/tls.crt -> ..data/tls.crt         what the application opens
//
// Update writes a new generation, points a temporary symlink at it, renames that over
// ..data (atomic) and removes the previous generation, as the kubelet's atomic writer
// does. Watching the file itself misses such a swap; that is what these tests catch.
package secretdir

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir is one mounted Secret or ConfigMap.
type Dir struct {
	dir string
	gen int
	cur string
}

// New creates the layout in dir (created if missing) with files as its first
// generation.
func New(t testing.TB, dir string, files map[string][]byte) *Dir {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &Dir{dir: dir}
	d.Update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Path is the path an application opens for name (dir/name, through ..data).
func (d *Dir) Path(name string) string { return filepath.Join(d.dir, name) }

// Update swaps in a new generation holding files.
func (d *Dir) Update(t testing.TB, files map[string][]byte) {
	t.Helper()
	d.gen++
	gen := fmt.Sprintf("..2026_01_%02d_00_00_00.%d", d.gen%28+1, d.gen)
	if err := os.Mkdir(filepath.Join(d.dir, gen), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d.dir, gen, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if d.cur != "" {
		if err := os.RemoveAll(filepath.Join(d.dir, d.cur)); err != nil {
			t.Fatal(err)
		}
	}
	d.cur = gen
}
