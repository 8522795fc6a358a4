package fsat

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func openDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func write(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Removing a tree removes a symlink in it, never what it points to.
func TestRemoveAllKeepsSymlinkTargets(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	write(t, filepath.Join(outside, "precious"))
	write(t, filepath.Join(root, "tree/a/b/file"))
	if err := os.Symlink(outside, filepath.Join(root, "tree/a/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "top-link")); err != nil {
		t.Fatal(err)
	}
	fd := openDir(t, root)
	for _, name := range []string{"tree", "top-link", "missing"} {
		if err := RemoveAll(fd, name); err != nil {
			t.Fatalf("RemoveAll(%s): %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Fatalf("a symlink's target was removed: %v", err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("left in root: %v", ents)
	}
}

func TestClearDirKeeps(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"a.deb", "b.deb", "partial/x", "lock"} {
		write(t, filepath.Join(root, "cache", n))
	}
	fd := openDir(t, root)
	if err := ClearDir(fd, "cache", func(n string) bool { return strings.HasSuffix(n, ".deb") }); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "cache"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"a.deb", "b.deb"}) {
		t.Fatalf("left %v, want the .deb files", names)
	}
	// A symlink to a directory is not cleared through.
	other := t.TempDir()
	write(t, filepath.Join(other, "keep"))
	os.Symlink(other, filepath.Join(root, "dirlink"))
	if err := ClearDir(fd, "dirlink", nil); err == nil {
		t.Fatal("ClearDir followed a symlink")
	}
	if _, err := os.Stat(filepath.Join(other, "keep")); err != nil {
		t.Fatal(err)
	}
}

func TestReadlinkLong(t *testing.T) {
	dir := t.TempDir()
	target := strings.Repeat("d/", 300) + "end"
	if err := os.Symlink(target, filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	got, err := Readlink(openDir(t, dir), "l")
	if err != nil || got != target {
		t.Fatalf("Readlink = %d bytes, %v; want %d bytes", len(got), err, len(target))
	}
}

func TestOpenRegularRefusesSymlinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "real", "f"))
	if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "real", "flink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(string) error{
		"openat2": func(p string) error {
			f, err := OpenRegular(p)
			if err == nil {
				f.Close()
			}
			return err
		},
		"component walk": func(p string) error {
			fd, err := openNoSymlinks(p, unix.O_RDONLY|unix.O_NONBLOCK)
			if err == nil {
				unix.Close(fd)
			}
			return err
		},
	} {
		if err := open(filepath.Join(dir, "real", "f")); err != nil {
			t.Errorf("%s: a plain path: %v", name, err)
		}
		for _, p := range []string{"link/f", "real/flink"} {
			if err := open(filepath.Join(dir, p)); err == nil {
				t.Errorf("%s: %s was opened through a symlink", name, p)
			}
		}
	}
	if _, err := OpenRegular(filepath.Join(dir, "fifo")); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO: %v", err)
	}
	if _, err := OpenRegular("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a device: %v", err)
	}
}
