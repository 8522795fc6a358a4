package layer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath/rootpathtest"
)

var isRoot = os.Geteuid() == 0

func writeFile(t testing.TB, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// userXattrSupported reports whether the filesystem of dir takes user.*
// xattrs on regular files.
func userXattrSupported(t testing.TB, dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	writeFile(t, p, "", 0o644)
	defer os.Remove(p)
	return unix.Setxattr(p, "user.fgimg.probe", []byte("1"), 0) == nil
}

func treeTar(t testing.TB, dir string, opts Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTree(&b, dir, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func apply(t testing.TB, layer []byte, dir string, opts ApplyOptions) {
	t.Helper()
	if err := Apply(bytes.NewReader(layer), dir, opts); err != nil {
		t.Fatal(err)
	}
}

func headers(t testing.TB, b []byte) []*tar.Header {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var hs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
}

func names(hs []*tar.Header) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func describe(t testing.TB, b []byte) string {
	var sb strings.Builder
	for _, h := range headers(t, b) {
		fmt.Fprintf(&sb, "  %c %-24s %o %d:%d %s %q %d,%d %v\n", h.Typeflag, h.Name, h.Mode, h.Uid, h.Gid,
			h.ModTime.UTC().Format(time.RFC3339), h.Linkname, h.Devmajor, h.Devminor, h.PAXRecords)
	}
	return sb.String()
}

func find(hs []*tar.Header, name string) *tar.Header {
	for _, h := range hs {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// makeTree builds a tree with every kind of entry a layer must carry and
// reports whether it could include a user.* xattr.
func makeTree(t *testing.T, dir string) (xattrs bool) {
	writeFile(t, filepath.Join(dir, "a/file"), "hello\n", 0o644)
	writeFile(t, filepath.Join(dir, "a/empty"), "", 0o600)
	writeFile(t, filepath.Join(dir, "a-b"), "sorts after a/ by name but the a/ subtree comes first\n", 0o644)
	must(t, os.MkdirAll(filepath.Join(dir, "z"), 0o755))
	must(t, os.Link(filepath.Join(dir, "a/file"), filepath.Join(dir, "z/hardlink")))
	// 3 MiB and a bit: more than one copy buffer.
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+7)
	writeFile(t, filepath.Join(dir, "big"), string(big), 0o644)
	must(t, os.Symlink("a/file", filepath.Join(dir, "link")))
	must(t, os.Symlink("/nonexistent/target", filepath.Join(dir, "dangling")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	must(t, os.Chmod(filepath.Join(dir, "fifo"), 0o640))
	writeFile(t, filepath.Join(dir, "bin/su"), "#!/bin/sh\n", 0o755)
	must(t, os.Chmod(filepath.Join(dir, "bin/su"), 0o4755|os.ModeSetuid))
	must(t, os.Mkdir(filepath.Join(dir, "tmp"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	writeFile(t, filepath.Join(dir, "locked/inside"), "x", 0o644)
	must(t, os.Chmod(filepath.Join(dir, "locked"), 0o500))
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "locked"), 0o755) }) // lets TempDir clean up without root
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(dir, "a/empty"), old, old))

	if isRoot {
		must(t, os.MkdirAll(filepath.Join(dir, "dev"), 0o755))
		must(t, unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, os.Chmod(filepath.Join(dir, "dev/null"), 0o666))
		writeFile(t, filepath.Join(dir, "owned"), "someone else's\n", 0o640)
		must(t, os.Lchown(filepath.Join(dir, "owned"), 1234, 5678))
		must(t, os.Lchown(filepath.Join(dir, "link"), 1234, 5678))
		// A setuid file owned by someone else, set after the chown.
		writeFile(t, filepath.Join(dir, "bin/other-suid"), "x", 0o644)
		must(t, os.Lchown(filepath.Join(dir, "bin/other-suid"), 42, 43))
		must(t, os.Chmod(filepath.Join(dir, "bin/other-suid"), 0o6755|os.ModeSetuid|os.ModeSetgid))
		// cap_net_bind_service=ep (VFS_CAP_REVISION_2).
		writeFile(t, filepath.Join(dir, "bin/ping"), "ping", 0o755)
		capV2 := []byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		must(t, unix.Setxattr(filepath.Join(dir, "bin/ping"), "security.capability", capV2, 0))
	}
	if userXattrSupported(t, dir) {
		must(t, unix.Setxattr(filepath.Join(dir, "a/file"), "user.fgimg.test", []byte("value"), 0))
		must(t, unix.Setxattr(filepath.Join(dir, "tmp"), "user.fgimg.dir", []byte("d"), 0))
		xattrs = true
	} else {
		t.Log("filesystem does not support user.* xattrs; skipping that part")
	}
	return xattrs
}

func TestRoundTrip(t *testing.T) {
	src := t.TempDir()
	xattrs := makeTree(t, src)
	layer := treeTar(t, src, Options{})
	if again := treeTar(t, src, Options{}); !bytes.Equal(layer, again) {
		t.Fatal("two WriteTree runs over one tree gave different bytes")
	}

	dst := t.TempDir()
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "locked"), 0o755) })
	apply(t, layer, dst, ApplyOptions{})
	if got := treeTar(t, dst, Options{}); !bytes.Equal(layer, got) {
		t.Fatalf("WriteTree after Apply differs\nwant:\n%sgot:\n%s", describe(t, layer), describe(t, got))
	}

	hs := headers(t, layer)
	ns := names(hs)
	// Depth first: the a/ subtree before a-b, though '-' < '/'.
	if i, j := slices.Index(ns, "a/file"), slices.Index(ns, "a-b"); i < 0 || j < 0 || i > j {
		t.Errorf("want a/file before a-b, got order %q", ns)
	}
	if i, j := slices.Index(ns, "a/"), slices.Index(ns, "a/empty"); i < 0 || i > j {
		t.Errorf("want a/ before its children, got order %q", ns)
	}
	for _, h := range hs {
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: Uname/Gname = %q/%q, want empty", h.Name, h.Uname, h.Gname)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: atime/ctime written", h.Name)
		}
	}
	if h := find(hs, "z/hardlink"); h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "a/file" {
		t.Errorf("z/hardlink: want a hard link to a/file, got %+v", h)
	}
	if h := find(hs, "a/empty"); h == nil || !h.ModTime.Equal(time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Errorf("a/empty: mtime not kept: %+v", h)
	}
	if h := find(hs, "tmp/"); h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: want mode 1777, got %+v", h)
	}

	// What a user would check on the extracted tree.
	var a, z unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, "a/file"), &a))
	must(t, unix.Lstat(filepath.Join(dst, "z/hardlink"), &z))
	if a.Ino != z.Ino || a.Nlink != 2 {
		t.Errorf("hard link not restored: inodes %d/%d nlink %d", a.Ino, z.Ino, a.Nlink)
	}
	if fi, err := os.Lstat(filepath.Join(dst, "fifo")); err != nil || fi.Mode().Type() != os.ModeNamedPipe || fi.Mode().Perm() != 0o640 {
		t.Errorf("fifo: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(dst, "link")); err != nil || target != "a/file" {
		t.Errorf("link: %q %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "bin/su")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("bin/su lost setuid: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "locked")); err != nil || fi.Mode().Perm() != 0o500 {
		t.Errorf("locked: want mode 0500, got %v %v", fi, err)
	}
	if xattrs {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dst, "a/file"), "user.fgimg.test", buf)
		if err != nil || string(buf[:n]) != "value" {
			t.Errorf("user xattr not restored: %q %v", buf[:n], err)
		}
		if h := find(hs, "a/file"); h.PAXRecords["SCHILY.xattr.user.fgimg.test"] != "value" {
			t.Errorf("a/file: xattr not in PAX records: %v", h.PAXRecords)
		}
	}
	if isRoot {
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(dst, "dev/null"), &st))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
			t.Errorf("dev/null: want char 1,3, got mode %o rdev %d,%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		must(t, unix.Lstat(filepath.Join(dst, "bin/other-suid"), &st))
		if st.Uid != 42 || st.Gid != 43 || st.Mode&0o7777 != 0o6755 {
			t.Errorf("bin/other-suid: want 42:43 mode 6755, got %d:%d %o", st.Uid, st.Gid, st.Mode&0o7777)
		}
		must(t, unix.Lstat(filepath.Join(dst, "link"), &st))
		if st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("link: symlink owner not restored: %d:%d", st.Uid, st.Gid)
		}
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dst, "bin/ping"), "security.capability", buf)
		if want := []byte{1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}; err != nil || !bytes.Equal(buf[:n], want) {
			t.Errorf("bin/ping: security.capability not restored: %x %v", buf[:max(n, 0)], err)
		}
	}
}

// setTree makes the same small tree in dir with every time set to mtime.
func setTree(t *testing.T, dir string, mtime time.Time) {
	writeFile(t, filepath.Join(dir, "etc/hostname"), "box\n", 0o644)
	writeFile(t, filepath.Join(dir, "usr/bin/tool"), "tool", 0o755)
	must(t, os.Symlink("usr/bin", filepath.Join(dir, "bin")))
	writeFile(t, filepath.Join(dir, "old"), "from long ago", 0o644)
	ts := []unix.Timespec{timespec(mtime), timespec(mtime)}
	for _, p := range []string{"etc/hostname", "usr/bin/tool", "bin", "usr/bin", "usr", "etc"} {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	old := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(dir, "old"), old, old))
}

func TestSourceDateEpochClamps(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	setTree(t, a, time.Date(2024, 1, 1, 10, 0, 0, 123, time.UTC))
	setTree(t, b, time.Date(2025, 6, 1, 12, 30, 0, 0, time.UTC))
	if bytes.Equal(treeTar(t, a, Options{}), treeTar(t, b, Options{})) {
		t.Fatal("trees with different mtimes gave identical layers without SOURCE_DATE_EPOCH; the test proves nothing")
	}
	epoch := time.Date(2023, 3, 4, 5, 6, 7, 0, time.UTC)
	la := treeTar(t, a, Options{SourceDateEpoch: &epoch})
	lb := treeTar(t, b, Options{SourceDateEpoch: &epoch})
	if !bytes.Equal(la, lb) {
		t.Fatalf("clamped layers differ\n%s\n%s", describe(t, la), describe(t, lb))
	}
	for _, h := range headers(t, la) {
		want := epoch
		if h.Name == "old" {
			want = time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC) // older than the epoch: kept
		}
		if !h.ModTime.Equal(want) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, want)
		}
	}
}

func TestEpochFromEnv(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if e, err := EpochFromEnv(); e != nil || err != nil {
		t.Errorf("empty: got %v, %v; want nil, nil", e, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if e, err := EpochFromEnv(); err != nil || e == nil || e.Unix() != 1700000000 {
		t.Errorf("1700000000: got %v, %v", e, err)
	}
	for _, bad := range []string{"yesterday", "-1", "1.5"} {
		t.Setenv("SOURCE_DATE_EPOCH", bad)
		if _, err := EpochFromEnv(); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestApplyCompressed(t *testing.T) {
	src := t.TempDir()
	setTree(t, src, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	plain := treeTar(t, src, Options{})

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err := zw.Write(plain)
	must(t, err)
	must(t, zw.Close())

	var zs bytes.Buffer
	enc, err := zstd.NewWriter(&zs)
	must(t, err)
	_, err = enc.Write(plain)
	must(t, err)
	must(t, enc.Close())

	for name, blob := range map[string][]byte{"plain": plain, "gzip": gz.Bytes(), "zstd": zs.Bytes()} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			apply(t, blob, dst, ApplyOptions{})
			if got := treeTar(t, dst, Options{}); !bytes.Equal(got, plain) {
				t.Errorf("tree differs after applying %s layer:\n%s", name, describe(t, got))
			}
		})
	}

	t.Run("corrupt gzip", func(t *testing.T) {
		bad := bytes.Clone(gz.Bytes())
		bad[len(bad)-6] ^= 0xff // inside the CRC-32 trailer
		if err := Apply(bytes.NewReader(bad), t.TempDir(), ApplyOptions{}); err == nil {
			t.Error("want an error for a gzip stream with a bad checksum")
		}
	})
}

type ent struct {
	name string
	typ  byte
	link string
	body string
}

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1e9, 0)}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		_, err := io.WriteString(tw, e.body)
		must(t, err)
	}
	must(t, tw.Close())
	return b.Bytes()
}

// listing records every path under dir with its type and, for regular
// files, contents, so any write at all shows up.
func listing(t testing.TB, dir string) map[string]string {
	out := map[string]string{}
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[p] = v
		return nil
	}))
	return out
}

func TestApplyRejectsEscapes(t *testing.T) {
	rootpathtest.WithFallback(t, testApplyRejectsEscapes)
}

func testApplyRejectsEscapes(t *testing.T) {
	R, S, D, L := byte(tar.TypeReg), byte(tar.TypeSymlink), byte(tar.TypeDir), byte(tar.TypeLink)
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	writeFile(t, filepath.Join(outside, "secret"), "original", 0o644)
	writeFile(t, filepath.Join(outside, "sub/keep"), "keep", 0o644)

	cases := []struct {
		name string
		bad  string // the entry the error must name
		ents []ent
	}{
		{"dotdot", "../pwned", []ent{{name: "../pwned", typ: R, body: "x"}}},
		{"dotdot inside", "a/../../pwned", []ent{{name: "a/", typ: D}, {name: "a/../../pwned", typ: R, body: "x"}}},
		{"absolute", outside + "/pwned", []ent{{name: outside + "/pwned", typ: R, body: "x"}}},
		{"symlink to / then through it", "rootlink" + outside + "/pwned", []ent{
			{name: "rootlink", typ: S, link: "/"},
			{name: "rootlink" + outside + "/pwned", typ: R, body: "x"}}},
		{"absolute symlink dir", "out/pwned", []ent{
			{name: "out", typ: S, link: outside},
			{name: "out/pwned", typ: R, body: "x"}}},
		{"relative symlink up", "a/b/up/pwned", []ent{
			{name: "a/", typ: D}, {name: "a/b/", typ: D},
			{name: "a/b/up", typ: S, link: "../../../outside"},
			{name: "a/b/up/pwned", typ: R, body: "x"}}},
		{"symlink chain", "x/pwned", []ent{
			{name: "x", typ: S, link: "y"},
			{name: "y", typ: S, link: "../outside"},
			{name: "x/pwned", typ: R, body: "x"}}},
		{"directory through symlink", "out/newdir/", []ent{
			{name: "out", typ: S, link: outside},
			{name: "out/newdir/", typ: D}}},
		{"hardlink to ../outside", "hl", []ent{{name: "hl", typ: L, link: "../outside/secret"}}},
		{"hardlink to absolute", "hl", []ent{{name: "hl", typ: L, link: outside + "/secret"}}},
		{"hardlink through symlink", "hl", []ent{
			{name: "out", typ: S, link: outside},
			{name: "hl", typ: L, link: "out/secret"}}},
		{"whiteout through symlink", "out/.wh.secret", []ent{
			{name: "out", typ: S, link: outside},
			{name: "out/.wh.secret", typ: R}}},
		{"opaque through symlink", "out/.wh..wh..opq", []ent{
			{name: "out", typ: S, link: outside},
			{name: "out/.wh..wh..opq", typ: R}}},
		{"whiteout of ..", "a/.wh..", []ent{{name: "a/", typ: D}, {name: "a/.wh..", typ: R}}},
	}
	before := listing(t, base)
	for _, tc := range cases {
		for _, overlay := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s overlay=%v", tc.name, overlay), func(t *testing.T) {
				root := filepath.Join(base, "root")
				must(t, os.Mkdir(root, 0o755))
				defer os.RemoveAll(root)
				err := Apply(bytes.NewReader(mkTar(t, tc.ents...)), root, ApplyOptions{Overlay: overlay})
				if !errors.Is(err, ErrUnsafePath) {
					t.Fatalf("want ErrUnsafePath, got %v", err)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.bad)) {
					t.Errorf("error does not name entry %q: %v", tc.bad, err)
				}
				must(t, os.RemoveAll(root))
				if after := listing(t, base); !mapsEqual(before, after) {
					t.Errorf("something outside the root changed:\nbefore %v\nafter  %v", before, after)
				}
			})
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestApplyReplacesSymlinkInsteadOfWritingThroughIt(t *testing.T) {
	rootpathtest.WithFallback(t, func(t *testing.T) {
		base := t.TempDir()
		secret := filepath.Join(base, "secret")
		writeFile(t, secret, "original", 0o644)
		root := filepath.Join(base, "root")
		must(t, os.Mkdir(root, 0o755))
		apply(t, mkTar(t,
			ent{name: "evil", typ: tar.TypeSymlink, link: secret},
			ent{name: "evil", typ: tar.TypeReg, body: "replaced"},
		), root, ApplyOptions{})
		if b, _ := os.ReadFile(secret); string(b) != "original" {
			t.Errorf("file behind the symlink was written: %q", b)
		}
		if b, err := os.ReadFile(filepath.Join(root, "evil")); err != nil || string(b) != "replaced" {
			t.Errorf("evil: %q %v", b, err)
		}
	})
}

func TestApplyFollowsSymlinksInsideRoot(t *testing.T) {
	rootpathtest.WithFallback(t, func(t *testing.T) {
		root := t.TempDir()
		apply(t, mkTar(t,
			ent{name: "usr/", typ: tar.TypeDir},
			ent{name: "usr/lib/", typ: tar.TypeDir},
			ent{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
			ent{name: "lib/libc.so", typ: tar.TypeReg, body: "libc"},
			ent{name: "usr/bin/up", typ: tar.TypeSymlink, link: "../lib"},
			ent{name: "usr/bin/up/x", typ: tar.TypeReg, body: "x"},
			ent{name: "abs", typ: tar.TypeSymlink, link: "/etc/passwd"}, // fine as content
			ent{name: "hl", typ: tar.TypeLink, link: "lib/libc.so"},
		), root, ApplyOptions{})
		for p, want := range map[string]string{"usr/lib/libc.so": "libc", "usr/lib/x": "x", "hl": "libc"} {
			if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
				t.Errorf("%s: %q %v, want %q", p, b, err, want)
			}
		}
	})
}

func TestApplyWhiteouts(t *testing.T) {
	root := t.TempDir()
	apply(t, mkTar(t,
		ent{name: "a", typ: tar.TypeReg, body: "a"},
		ent{name: "keep", typ: tar.TypeReg, body: "keep"},
		ent{name: "d/", typ: tar.TypeDir},
		ent{name: "d/old1", typ: tar.TypeReg, body: "1"},
		ent{name: "d/sub/old2", typ: tar.TypeReg, body: "2"},
		ent{name: "gone/", typ: tar.TypeDir},
		ent{name: "gone/f", typ: tar.TypeReg, body: "f"},
	), root, ApplyOptions{})
	apply(t, mkTar(t,
		ent{name: ".wh.a", typ: tar.TypeReg},
		ent{name: ".wh.gone", typ: tar.TypeReg},
		ent{name: "d/", typ: tar.TypeDir},
		ent{name: "d/new", typ: tar.TypeReg, body: "new"}, // before the opaque marker: must survive
		ent{name: "d/.wh..wh..opq", typ: tar.TypeReg},
		ent{name: "missing/.wh.x", typ: tar.TypeReg}, // nothing there: no-op
	), root, ApplyOptions{})
	got := listing(t, root)
	var rels []string
	for p := range got {
		rel, _ := filepath.Rel(root, p)
		rels = append(rels, rel)
	}
	slices.Sort(rels)
	want := []string{".", "d", "d/new", "keep"}
	if !slices.Equal(rels, want) {
		t.Errorf("after whiteouts got %q, want %q", rels, want)
	}
}

func TestApplyReplacesTypes(t *testing.T) {
	root := t.TempDir()
	apply(t, mkTar(t,
		ent{name: "x/", typ: tar.TypeDir},
		ent{name: "x/child", typ: tar.TypeReg, body: "c"},
		ent{name: "y", typ: tar.TypeReg, body: "y"},
	), root, ApplyOptions{})
	apply(t, mkTar(t,
		ent{name: "x", typ: tar.TypeReg, body: "now a file"},
		ent{name: "y/", typ: tar.TypeDir},
		ent{name: "y/inner", typ: tar.TypeReg, body: "i"},
	), root, ApplyOptions{})
	if b, err := os.ReadFile(filepath.Join(root, "x")); err != nil || string(b) != "now a file" {
		t.Errorf("x: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "y/inner")); err != nil || string(b) != "i" {
		t.Errorf("y/inner: %q %v", b, err)
	}
}

func TestApplyOverlayWhiteouts(t *testing.T) {
	if !isRoot {
		t.Skip("needs root: overlay whiteouts are device nodes and the opaque marker a trusted.* xattr")
	}
	for _, userXattr := range []bool{false, true} {
		t.Run(fmt.Sprintf("userxattr=%v", userXattr), func(t *testing.T) {
			root := t.TempDir()
			if userXattr && !userXattrSupported(t, root) {
				t.Skip("filesystem does not support user.* xattrs")
			}
			apply(t, mkTar(t,
				ent{name: "d/", typ: tar.TypeDir},
				ent{name: "d/.wh..wh..opq", typ: tar.TypeReg},
				ent{name: "d/new", typ: tar.TypeReg, body: "n"},
				ent{name: "e/.wh.gone", typ: tar.TypeReg}, // parent implied
			), root, ApplyOptions{Overlay: true, UserXattr: userXattr})
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(root, "e/gone"), &st))
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("e/gone: want char device 0/0, got mode %o rdev %d", st.Mode, st.Rdev)
			}
			if _, err := os.Lstat(filepath.Join(root, "e/.wh.gone")); !os.IsNotExist(err) {
				t.Errorf("e/.wh.gone should not exist as a file: %v", err)
			}
			name, other := "trusted.overlay.opaque", "user.overlay.opaque"
			if userXattr {
				name, other = other, name
			}
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(filepath.Join(root, "d"), name, buf)
			if err != nil || string(buf[:n]) != "y" {
				t.Errorf("d: %s = %q, %v; want \"y\"", name, buf[:max(n, 0)], err)
			}
			if _, err := unix.Lgetxattr(filepath.Join(root, "d"), other, buf); err == nil {
				t.Errorf("d: unexpected %s", other)
			}
			if _, err := os.Stat(filepath.Join(root, "d/new")); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestApplyDropsOverlayXattrs(t *testing.T) {
	if !isRoot {
		t.Skip("needs root to read trusted.* xattrs")
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	must(t, tw.WriteHeader(&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.trusted.overlay.opaque": "y"}}))
	must(t, tw.Close())
	root := t.TempDir()
	apply(t, b.Bytes(), root, ApplyOptions{})
	buf := make([]byte, 256)
	if n, _ := unix.Llistxattr(filepath.Join(root, "d"), buf); strings.Contains(string(buf[:n]), "overlay") {
		t.Errorf("overlay xattrs from the layer were applied: %q", buf[:n])
	}
}

func mountOverlay(t *testing.T, target, opts string) {
	t.Helper()
	if !isRoot {
		t.Skip("mounting overlayfs needs root")
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlayfs here (%v); skipping the overlay test", err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
}

func TestWriteDiffOverlay(t *testing.T) {
	for _, userXattr := range []bool{false, true} {
		t.Run(fmt.Sprintf("userxattr=%v", userXattr), func(t *testing.T) { testWriteDiffOverlay(t, userXattr) })
	}
}

func testWriteDiffOverlay(t *testing.T, userXattr bool) {
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{lower, upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	writeFile(t, filepath.Join(lower, "del.txt"), "delete me", 0o644)
	writeFile(t, filepath.Join(lower, "del2.txt"), "delete me too", 0o644)
	writeFile(t, filepath.Join(lower, "keep.txt"), "keep", 0o644)
	writeFile(t, filepath.Join(lower, "dir/x"), "x", 0o644)
	writeFile(t, filepath.Join(lower, "dir/y"), "y", 0o644)
	writeFile(t, filepath.Join(lower, "keepdir/old"), "old", 0o644)
	lowerLayer := treeTar(t, lower, Options{})

	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if userXattr {
		opts += ",userxattr"
	}
	mountOverlay(t, merged, opts)
	// Two deletions: overlayfs may make whiteouts hard links of one
	// shared inode, which must not come out as a tar hard link.
	must(t, os.Remove(filepath.Join(merged, "del.txt")))
	must(t, os.Remove(filepath.Join(merged, "del2.txt")))
	must(t, os.RemoveAll(filepath.Join(merged, "dir")))
	must(t, os.Mkdir(filepath.Join(merged, "dir"), 0o750))
	writeFile(t, filepath.Join(merged, "dir/new"), "new", 0o644)
	writeFile(t, filepath.Join(merged, "keepdir/added"), "added", 0o644)
	want := treeTar(t, merged, Options{})
	must(t, unix.Unmount(merged, 0))

	var diff bytes.Buffer
	must(t, WriteDiff(&diff, upper, Options{}))
	hs := headers(t, diff.Bytes())
	wantNames := []string{".wh.del.txt", ".wh.del2.txt", "dir/", "dir/.wh..wh..opq", "dir/new", "keepdir/", "keepdir/added"}
	if got := names(hs); !slices.Equal(got, wantNames) {
		t.Fatalf("diff entries %q, want %q\n%s", got, wantNames, describe(t, diff.Bytes()))
	}
	for _, h := range hs {
		for k := range h.PAXRecords {
			if strings.Contains(k, "overlay") {
				t.Errorf("%s: overlay xattr %s copied into the layer", h.Name, k)
			}
		}
		if strings.Contains(h.Name, ".wh.") && (h.Typeflag != tar.TypeReg || h.Size != 0) {
			t.Errorf("%s: whiteout should be an empty regular entry", h.Name)
		}
	}

	// The lower layer plus the diff, applied plainly, is the merged view.
	plain := filepath.Join(base, "plain")
	must(t, os.Mkdir(plain, 0o755))
	apply(t, lowerLayer, plain, ApplyOptions{})
	apply(t, diff.Bytes(), plain, ApplyOptions{})
	if got := treeTar(t, plain, Options{}); !bytes.Equal(got, want) {
		t.Errorf("lower+diff applied differs from the merged view\nwant:\n%sgot:\n%s", describe(t, want), describe(t, got))
	}

	// The diff applied overlay-style and stacked on the lower layer as a
	// lower dir again gives the merged view.
	snap := filepath.Join(base, "snap")
	must(t, os.Mkdir(snap, 0o755))
	apply(t, diff.Bytes(), snap, ApplyOptions{Overlay: true, UserXattr: userXattr})
	stacked := filepath.Join(base, "stacked")
	must(t, os.Mkdir(stacked, 0o755))
	ro := fmt.Sprintf("lowerdir=%s:%s", snap, lower)
	if userXattr {
		ro += ",userxattr"
	}
	mountOverlay(t, stacked, ro)
	if got := treeTar(t, stacked, Options{}); !bytes.Equal(got, want) {
		t.Errorf("overlay-applied snapshot stacked on lower differs from the merged view\nwant:\n%sgot:\n%s", describe(t, want), describe(t, got))
	}
}

func TestWriteDiffRefusesRedirects(t *testing.T) {
	if !isRoot {
		t.Skip("needs root to set trusted.* xattrs")
	}
	upper := t.TempDir()
	must(t, os.Mkdir(filepath.Join(upper, "renamed"), 0o755))
	must(t, unix.Setxattr(filepath.Join(upper, "renamed"), "trusted.overlay.redirect", []byte("/orig"), 0))
	if err := WriteDiff(io.Discard, upper, Options{}); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("want an error about redirect_dir, got %v", err)
	}
}
