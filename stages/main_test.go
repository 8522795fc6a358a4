package stages

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/stages/sandbox"
)

// TestMain makes the test binary serve as the sandbox init, and runs the
// tests in a private mount namespace (sandbox.Isolate) so that overlays
// mounted by tests vanish with the test binary, as they do with fgimg.
func TestMain(m *testing.M) {
	sandbox.Init()
	// Without root the tests that need it skip; a user namespace would
	// make them fail on chown instead.
	if os.Geteuid() == 0 {
		if err := sandbox.Isolate(); err != nil {
			fmt.Fprintf(os.Stderr, "stages tests: %v; tests on overlays will be skipped\n", err)
		}
	}
	code := m.Run()
	removeDebianBase()
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: stages change ownership and run commands in a sandbox")
	}
}

// busyboxRoot returns a fresh testkit busybox root filesystem.
func busyboxRoot(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	testkit.BusyboxRootfs(t, dir)
	return dir
}

// runStage runs spec on root and returns its log.
func runStage(t *testing.T, spec Spec, root string) (string, error) {
	t.Helper()
	return runStageCtx(t, context.Background(), spec, root)
}

func runStageCtx(t *testing.T, ctx context.Context, spec Spec, root string) (string, error) {
	t.Helper()
	var log testkit.SyncBuffer
	_, err := Run(ctx, spec, &Env{Root: root, Log: &log, Arch: debianArch()})
	return log.String(), err
}

func mustRunStage(t *testing.T, spec Spec, root string) string {
	t.Helper()
	log, err := runStage(t, spec, root)
	if err != nil {
		t.Fatalf("%s stage: %v\nlog:\n%s", spec.Kind(), err, log)
	}
	return log
}

// lstat returns the metadata of root/rel, not following a final symlink.
func lstat(t *testing.T, root, rel string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
		t.Fatalf("lstat %s: %v", rel, err)
	}
	return st
}

// checkMeta checks the type, permission bits and owner of root/rel.
func checkMeta(t *testing.T, root, rel string, typ uint32, mode uint32, uid, gid int) {
	t.Helper()
	st := lstat(t, root, rel)
	if st.Mode&unix.S_IFMT != typ {
		t.Errorf("%s: type %o, want %o", rel, st.Mode&unix.S_IFMT, typ)
	}
	if typ != unix.S_IFLNK && st.Mode&0o7777 != mode {
		t.Errorf("%s: mode %04o, want %04o", rel, st.Mode&0o7777, mode)
	}
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, uid, gid)
	}
}

func readRootFile(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeRootFile(t *testing.T, root, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func exists(root, rel string) bool {
	_, err := os.Lstat(filepath.Join(root, rel))
	return err == nil
}

// dirEntries lists the names in root/rel ("" for a missing directory).
func dirEntries(t *testing.T, root, rel string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, rel))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// overlay mounts an overlay of lowers (topmost first) with a fresh upper
// directory until the test ends, and returns the merged root and upper.
func overlay(t *testing.T, lowers ...string) (merged, upper string) {
	t.Helper()
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unmount, err := sandbox.MountOverlay(lowers, "", upper, work, merged)
	if errors.Is(err, sandbox.ErrNotIsolated) {
		t.Skip("no private mount namespace for overlays (sandbox.Isolate failed)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unmount(); err != nil {
			t.Error(err)
		}
	})
	return merged, upper
}
