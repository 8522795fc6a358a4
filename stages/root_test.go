package stages

import (
	"errors"
	"path"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath/rootpathtest"
)

// TestRootResolvesInRoot runs the resolver cases through the root that
// stages write images with: as the image sees its paths (InRoot).
func TestRootResolvesInRoot(t *testing.T) {
	dir := t.TempDir()
	rootpathtest.MakeDisk(t, dir)
	r, err := openRootDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	for _, c := range rootpathtest.Cases {
		want := c.InRoot
		dirfd, name, err := r.resolve(c.Path, false, true)
		if want.Err != nil {
			if !errors.Is(err, want.Err) {
				t.Errorf("%q: got %v, want an error wrapping %v", c.Path, err, want.Err)
			}
			if err == nil {
				unix.Close(dirfd)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.Path, err)
			continue
		}
		var got, exp unix.Stat_t
		gerr := unix.Fstatat(dirfd, name, &got, unix.AT_SYMLINK_NOFOLLOW)
		eerr := unix.Lstat(filepath.Join(dir, want.Path), &exp)
		unix.Close(dirfd)
		if gerr != eerr || (gerr == nil && got.Ino != exp.Ino) || (gerr != nil && name != path.Base(want.Path)) {
			t.Errorf("%q: resolved to %q (%v), want %q (%v)", c.Path, name, gerr, want.Path, eerr)
		}
	}
}
