package cache

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// openDir is a directory that every user can traverse, as /srv or a
// shared scratch disk is: t.TempDir's own mode (0700) would hide the
// cache from other users whatever fgimg does.
func openDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// asNobody runs a command as user nobody and reports whether it succeeded.
func asNobody(t *testing.T, name string, args ...string) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a command as another user")
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd.Run() == nil
}

// Another local user must not read, or run, what a snapshot holds: an
// image's setuid-root binary run from the cache by anyone is root.
func TestSnapshotsAreHiddenFromOtherUsers(t *testing.T) {
	dir := filepath.Join(openDir(t), "cache")
	s := openStore(t, dir)
	layer, err := s.PutBlob(bytes.NewReader([]byte("a secret in an image")))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(layer.Digest, func(r io.Reader, dir string) error {
		if err := copyUnpack(r, dir); err != nil {
			return err
		}
		return os.Chmod(dir, 0o755) // as a root filesystem's "./" entry sets it
	})
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(snap, "layer")
	if err := os.Chmod(secret, 0o4755); err != nil { // world-readable, setuid
		t.Fatal(err)
	}
	if asNobody(t, "cat", secret) {
		t.Errorf("user nobody read %s", secret)
	}
	for _, d := range []string{dir, s.SnapshotsDir(), snap} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700 (%v)", d, fi.Mode().Perm(), err)
		}
	}
}

// A cache that an older fgimg created 0755 is made private on open, and
// the user is told.
func TestOpenTightensAnOpenCache(t *testing.T) {
	dir := filepath.Join(openDir(t), "cache")
	s := openStore(t, dir)
	s.Close()
	for _, d := range []string{dir, filepath.Join(dir, "snapshots")} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dir)
	if n := s.Notices(); len(n) != 1 || !strings.Contains(n[0], dir) || !strings.Contains(n[0], "0755") {
		t.Errorf("notices %q, want one naming %s and its old mode", n, dir)
	}
	for _, d := range []string{dir, filepath.Join(dir, "snapshots")} {
		if fi, _ := os.Stat(d); fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
}

// A directory others use is not chmodded under them: --cache-dir /tmp
// must not make /tmp private. fgimg refuses it instead, naming it.
func TestOpenRefusesASharedDirectory(t *testing.T) {
	dir := openDir(t)
	os.WriteFile(filepath.Join(dir, "someone-elses-file"), []byte("x"), 0o644)
	if s, err := Open(dir); err == nil {
		s.Close()
		t.Fatalf("opened %s, a non-empty directory open to other users, as a cache", dir)
	} else if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "0755") {
		t.Errorf("error %q does not name the directory and its mode", err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("the refused directory's mode changed to %v", fi.Mode().Perm())
	}
}

// A cache directory owned by another user is refused: its owner could
// plant files that later builds use.
func TestOpenRefusesAnotherUsersDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := filepath.Join(openDir(t), "cache")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir); err == nil {
		s.Close()
		t.Fatal("opened a cache directory owned by user nobody")
	} else if !strings.Contains(err.Error(), "65534") {
		t.Errorf("error %q does not name the owner", err)
	}
}
