package rootpath_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
	"github.com/fgimg/fgimg/internal/rootpath/rootpathtest"
)

var modes = []rootpath.Mode{rootpath.Beneath, rootpath.InRoot}

func check(t *testing.T, c rootpathtest.Case, mode rootpath.Mode, got string, err error) {
	t.Helper()
	want := c.Want(mode)
	switch {
	case want.Err != nil && !errors.Is(err, want.Err):
		t.Errorf("%s %q: got %q, %v; want an error wrapping %v", mode, c.Path, got, err, want.Err)
	case want.Err == nil && (err != nil || got != want.Path):
		t.Errorf("%s %q: got %q, %v; want %q", mode, c.Path, got, err, want.Path)
	}
}

// TestResolve runs the cases through Walk on disk, the step-by-step
// resolution behind both modes.
func TestResolve(t *testing.T) {
	dir := t.TempDir()
	rootpathtest.MakeDisk(t, dir)
	for _, mode := range modes {
		r, err := rootpath.OpenRoot(dir, mode)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for _, c := range rootpathtest.Cases {
			res, err := r.Resolve(c.Path, rootpath.Options{FollowFinal: true})
			got := ""
			if err == nil {
				got = res.Full()
				unix.Close(res.Dir)
			}
			check(t, c, mode, got, err)
		}
	}
}

// TestOpen runs the cases through Open with openat2 and with the walk it
// falls back to: both must open the file Want names, or fail alike.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	rootpathtest.MakeDisk(t, dir)
	for _, fallback := range []bool{false, true} {
		rootpath.UseOpenat2(!fallback)
		for _, mode := range modes {
			r, err := rootpath.OpenRoot(dir, mode)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rootpathtest.Cases {
				t.Run(fmt.Sprintf("fallback=%v/%s/%s", fallback, mode, c.Path), func(t *testing.T) {
					fd, err := r.Open(c.Path, unix.O_PATH, 0)
					want := c.Want(mode)
					if want.Err == nil {
						if _, serr := os.Lstat(filepath.Join(dir, want.Path)); serr != nil {
							want.Err = unix.ENOENT // Open needs the file itself
						}
					}
					if want.Err != nil {
						if !errors.Is(err, want.Err) {
							t.Errorf("got %v, want an error wrapping %v", err, want.Err)
						}
						if err == nil {
							unix.Close(fd)
						}
						return
					}
					if err != nil {
						t.Fatalf("want %q: %v", want.Path, err)
					}
					defer unix.Close(fd)
					var got, exp unix.Stat_t
					if err := unix.Fstat(fd, &got); err != nil {
						t.Fatal(err)
					}
					if err := unix.Lstat(filepath.Join(dir, want.Path), &exp); err != nil {
						t.Fatal(err)
					}
					if got.Ino != exp.Ino || got.Dev != exp.Dev {
						t.Errorf("opened another file than %q", want.Path)
					}
				})
			}
			r.Close()
		}
	}
	rootpath.UseOpenat2(true)
}

// TestJoin runs the cases through Join, which disks, netboot and the
// sandbox use: a missing component is no error, the rest is joined.
func TestJoin(t *testing.T) {
	dir := t.TempDir()
	rootpathtest.MakeDisk(t, dir)
	for _, mode := range modes {
		for _, c := range rootpathtest.Cases {
			got, err := rootpath.Join(dir, "/"+c.Path, mode)
			want := c.Want(mode)
			if errors.Is(want.Err, unix.ENOENT) {
				continue // Join goes on lexically; see TestJoinMissing
			}
			if err == nil {
				rel, rerr := filepath.Rel(dir, got)
				if rerr != nil {
					t.Fatal(rerr)
				}
				if got = rel; rel == "." {
					got = ""
				}
			}
			check(t, c, mode, got, err)
		}
	}
}

func TestJoinMissing(t *testing.T) {
	dir := t.TempDir()
	rootpathtest.MakeDisk(t, dir)
	// As systemd-resolved's /etc/resolv.conf, into a directory not there.
	if err := os.Symlink("../run/systemd/stub", filepath.Join(dir, "dir/stub")); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/dir/stub":             "run/systemd/stub",
		"/rootlink/etc/x":       "etc/x",
		"/dangling/x/../y":      "nowhere/y",
		"/absdangling/a/b":      "nowhere/a/b",
		"/missing/../../../etc": "etc",
	} {
		got, err := rootpath.Join(dir, p, rootpath.InRoot)
		if err != nil || got != filepath.Join(dir, want) {
			t.Errorf("Join(%q) = %q, %v; want %q", p, got, err, filepath.Join(dir, want))
		}
	}
}

// TestCreate: missing directories are made on the way, but never where
// a symlink's target names them.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	rootpathtest.MakeDisk(t, dir)
	r, err := rootpath.OpenRoot(dir, rootpath.InRoot)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fd, err := r.OpenDir("abs/new/deeper", true)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if st, err := os.Stat(filepath.Join(dir, "dir/new/deeper")); err != nil || !st.IsDir() {
		t.Errorf("abs/new/deeper not made as dir/new/deeper: %v", err)
	}
	if _, err := r.OpenDir("dangling/x", true); !errors.Is(err, unix.ENOENT) {
		t.Errorf("through a dangling symlink: got %v, want ENOENT", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); err == nil {
		t.Error("a dangling symlink's target was created")
	}
}
