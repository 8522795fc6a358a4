package cpio

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/testkit"
)

var (
	old    = time.Date(2019, 6, 1, 0, 0, 0, 0, time.UTC)
	epoch  = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	future = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
)

// sampleTree makes a tree with every kind of entry WriteTree handles:
// directories, files with odd modes and owners, a hard link pair and a
// triple, a file hard-linked to a name outside the tree, symlinks, a fifo
// and (as root) device nodes. Times are old, except etc/new's.
func sampleTree(t testing.TB) string {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin", "dev", "etc/ssl", "usr/lib", "a", "a-b", "tmp"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	write := func(name, body string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(os.WriteFile(p, []byte(body), mode))
		must(os.Chmod(p, mode))
	}
	write("bin/tool", "#!/bin/sh\necho tool\n", 0o755|os.ModeSetuid)
	write("etc/shadow", "root:*:1::::::\n", 0o640)
	write("etc/new", "changed lately\n", 0o644)
	write("a/x", "x", 0o644)
	write("a-b/y", "y", 0o644)
	write("usr/lib/empty", "", 0o644)
	write("usr/lib/big", strings.Repeat("big file contents\n", 200_000), 0o644) // > 3 MB: spans buffers
	write("usr/lib/pair-1", "shared by two names\n", 0o644)
	must(os.Link(filepath.Join(dir, "usr/lib/pair-1"), filepath.Join(dir, "usr/lib/pair-2")))
	write("etc/ssl/triple", "three names\n", 0o600)
	must(os.Link(filepath.Join(dir, "etc/ssl/triple"), filepath.Join(dir, "bin/triple")))
	must(os.Link(filepath.Join(dir, "etc/ssl/triple"), filepath.Join(dir, "usr/lib/triple")))
	write("etc/lonely", "my other name is outside the tree\n", 0o644)
	must(os.Link(filepath.Join(dir, "etc/lonely"), filepath.Join(top, "outside")))
	must(os.Symlink("tool", filepath.Join(dir, "bin/sh")))
	must(os.Symlink("/etc/ssl/triple", filepath.Join(dir, "etc/abs")))
	must(os.Symlink("nowhere", filepath.Join(dir, "etc/dangling")))
	must(unix.Mkfifo(filepath.Join(dir, "dev/initctl"), 0o600))
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(dir, "dev/sda1"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 1))))
		must(unix.Mknod(filepath.Join(dir, "dev/ttyS0"), unix.S_IFCHR|0o620, int(unix.Mkdev(4, 64))))
		for name, mode := range map[string]uint32{"dev/null": 0o666, "dev/sda1": 0o660, "dev/ttyS0": 0o620} {
			must(unix.Chmod(filepath.Join(dir, name), mode)) // mknod applied the umask
		}
		must(os.Lchown(filepath.Join(dir, "etc/shadow"), 0, 42))
		must(os.Lchown(filepath.Join(dir, "dev/ttyS0"), 0, 5))
		must(os.Lchown(filepath.Join(dir, "usr/lib/pair-1"), 1000, 1000))
		must(os.Lchown(filepath.Join(dir, "bin/sh"), 3, 4))
	}
	setTimes(t, dir, old)
	ts := []unix.Timespec{unix.NsecToTimespec(future.UnixNano()), unix.NsecToTimespec(future.UnixNano())}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, "etc/new"), ts, unix.AT_SYMLINK_NOFOLLOW))
	return dir
}

func setTimes(t testing.TB, dir string, when time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func writeTree(t testing.TB, dir string, opts TreeOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteTree(context.Background(), &b, dir, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func byName(es []entryOf) map[string]entryOf {
	m := map[string]entryOf{}
	for _, e := range es {
		m[e.Name] = e
	}
	return m
}

func TestWriteTreeOrderAndInodes(t *testing.T) {
	dir := sampleTree(t)
	es := readAll(t, writeTree(t, dir, TreeOptions{Epoch: &epoch}))
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	want := []string{".", "a", "a/x", "a-b", "a-b/y", "bin", "bin/sh", "bin/tool", "bin/triple", "dev", "dev/initctl"}
	if os.Geteuid() == 0 {
		want = append(want, "dev/null", "dev/sda1", "dev/ttyS0")
	}
	want = append(want, "etc", "etc/abs", "etc/dangling", "etc/lonely", "etc/new", "etc/shadow", "etc/ssl", "etc/ssl/triple",
		"tmp", "usr", "usr/lib", "usr/lib/big", "usr/lib/empty", "usr/lib/pair-1", "usr/lib/pair-2", "usr/lib/triple")
	if !slices.Equal(names, want) {
		t.Fatalf("entries in order:\n got %q\nwant %q", names, want)
	}

	// Inodes count from 1 in output order; a hard link reuses its first
	// name's number.
	next := uint32(1)
	seen := map[uint32]string{}
	for _, e := range es {
		if first, ok := seen[e.Ino]; ok {
			if e.Nlink < 2 {
				t.Errorf("%s shares inode %d with %s but has nlink %d", e.Name, e.Ino, first, e.Nlink)
			}
			continue
		}
		if e.Ino != next {
			t.Errorf("%s: inode %d, want %d (numbered in output order)", e.Name, e.Ino, next)
		}
		seen[e.Ino] = e.Name
		next++
		if e.DevMajor != 0 || e.DevMinor != 0 {
			t.Errorf("%s: device %d:%d leaks the host's", e.Name, e.DevMajor, e.DevMinor)
		}
	}

	m := byName(es)
	for _, group := range [][]string{{"usr/lib/pair-1", "usr/lib/pair-2"}, {"bin/triple", "etc/ssl/triple", "usr/lib/triple"}} {
		first := m[group[0]]
		for i, name := range group {
			e := m[name]
			if e.Ino != first.Ino || e.Nlink != uint32(len(group)) {
				t.Errorf("%s: inode %d nlink %d, want inode %d nlink %d", name, e.Ino, e.Nlink, first.Ino, len(group))
			}
			wantSize := int64(0) // data with the first name only
			if i == 0 {
				wantSize = int64(len(first.data))
			}
			if e.Size != wantSize || (i > 0 && e.data != "") {
				t.Errorf("%s: size %d, want %d", name, e.Size, wantSize)
			}
		}
	}
	if m["bin/triple"].data != "three names\n" || m["usr/lib/pair-1"].data != "shared by two names\n" {
		t.Errorf("hard-linked data not carried by the first name: %q, %q", m["bin/triple"].data, m["usr/lib/pair-1"].data)
	}
	if e := m["etc/lonely"]; e.Nlink != 1 || e.data == "" {
		t.Errorf("etc/lonely (its other name is outside the tree): nlink %d, data %q; want nlink 1 and its data", e.Nlink, e.data)
	}
	// Directories: 2 plus their subdirectories, whatever the host says.
	for name, n := range map[string]uint32{".": 9, "etc": 3, "usr": 3, "usr/lib": 2} {
		if m[name].Nlink != n {
			t.Errorf("%s: nlink %d, want %d", name, m[name].Nlink, n)
		}
	}
}

func TestWriteTreeMetadata(t *testing.T) {
	dir := sampleTree(t)
	m := byName(readAll(t, writeTree(t, dir, TreeOptions{Epoch: &epoch})))
	check := func(name string, mode uint32, uid, gid uint32) {
		t.Helper()
		e, ok := m[name]
		if !ok {
			t.Errorf("%s missing", name)
			return
		}
		if e.Mode != mode || e.Uid != uid || e.Gid != gid {
			t.Errorf("%s: mode %o owner %d:%d, want mode %o owner %d:%d", name, e.Mode, e.Uid, e.Gid, mode, uid, gid)
		}
	}
	check("bin/tool", TypeReg|0o4755, 0, 0)
	check("tmp", TypeDir|0o1777, 0, 0)
	check("dev/initctl", TypeFifo|0o600, 0, 0)
	check("etc/dangling", TypeSymlink|0o777, 0, 0)
	if m["bin/sh"].Linkname != "tool" || m["etc/abs"].Linkname != "/etc/ssl/triple" || m["etc/dangling"].Linkname != "nowhere" {
		t.Errorf("symlink targets: %q %q %q", m["bin/sh"].Linkname, m["etc/abs"].Linkname, m["etc/dangling"].Linkname)
	}
	if m["usr/lib/big"].data != strings.Repeat("big file contents\n", 200_000) {
		t.Error("usr/lib/big: contents differ")
	}
	if os.Geteuid() == 0 {
		check("etc/shadow", TypeReg|0o640, 0, 42)
		check("usr/lib/pair-2", TypeReg|0o644, 1000, 1000)
		check("bin/sh", TypeSymlink|0o777, 3, 4)
		check("dev/ttyS0", TypeChar|0o620, 0, 5)
		check("dev/sda1", TypeBlock|0o660, 0, 0)
		for name, want := range map[string][2]uint32{"dev/null": {1, 3}, "dev/sda1": {8, 1}, "dev/ttyS0": {4, 64}} {
			if e := m[name]; e.RdevMajor != want[0] || e.RdevMinor != want[1] || e.Size != 0 {
				t.Errorf("%s: device %d,%d size %d, want %d,%d and no data", name, e.RdevMajor, e.RdevMinor, e.Size, want[0], want[1])
			}
		}
	}
	// Times: clamped to the epoch when later, kept when earlier.
	for name, e := range m {
		want := old.Unix()
		if name == "etc/new" {
			want = epoch.Unix()
		}
		if e.Mtime != want {
			t.Errorf("%s: mtime %s, want %s", name, time.Unix(e.Mtime, 0).UTC(), time.Unix(want, 0).UTC())
		}
	}
	m = byName(readAll(t, writeTree(t, dir, TreeOptions{})))
	if got := m["etc/new"].Mtime; got != future.Unix() {
		t.Errorf("without an epoch etc/new's mtime is %s, want %s", time.Unix(got, 0).UTC(), future)
	}
}

// TestWriteTreeDeterministic archives the same tree twice, and a copy of
// it whose files have other host inode numbers (and were created in
// another order): all three archives must be the same bytes.
func TestWriteTreeDeterministic(t *testing.T) {
	dir := sampleTree(t)
	a := writeTree(t, dir, TreeOptions{Epoch: &epoch})
	if b := writeTree(t, dir, TreeOptions{Epoch: &epoch}); !bytes.Equal(a, b) {
		t.Fatal("two archives of the same tree differ")
	}
	cp := filepath.Join(t.TempDir(), "copy")
	// Burn some inode numbers so the copy cannot get the same ones.
	for i := range 50 {
		os.WriteFile(filepath.Join(filepath.Dir(cp), fmt.Sprint("burn", i)), nil, 0o644)
	}
	if out, err := exec.Command("cp", "-a", dir, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	var st1, st2 unix.Stat_t
	unix.Lstat(filepath.Join(dir, "usr/lib/pair-1"), &st1)
	unix.Lstat(filepath.Join(cp, "usr/lib/pair-1"), &st2)
	if st1.Ino == st2.Ino {
		t.Fatal("the copy has the same inode numbers; the test proves nothing")
	}
	if b := writeTree(t, cp, TreeOptions{Epoch: &epoch}); !bytes.Equal(a, b) {
		t.Error("archives of a tree and of its copy differ: host inode numbers or order leak into the archive")
	}
}

// TestWriteTreeExtractsWithGNUCpio extracts the archive with GNU cpio
// and compares the result with the source tree.
func TestWriteTreeExtractsWithGNUCpio(t *testing.T) {
	testkit.Need(t, "cpio")
	dir := sampleTree(t)
	archive := filepath.Join(t.TempDir(), "a.cpio")
	if err := os.WriteFile(archive, writeTree(t, dir, TreeOptions{Epoch: &epoch}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", `cpio -idm --quiet --no-absolute-filenames < "$1"`, "sh", archive)
	cmd.Dir = out
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, o)
	}
	err := filepath.Walk(dir, func(p string, src os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil // the extraction directory's own mode is not the archive's business
		}
		var a, b unix.Stat_t
		unix.Lstat(p, &a)
		if err := unix.Lstat(filepath.Join(out, rel), &b); err != nil {
			t.Errorf("%s: not extracted: %v", rel, err)
			return nil
		}
		if a.Mode != b.Mode || a.Rdev != b.Rdev || (os.Geteuid() == 0 && (a.Uid != b.Uid || a.Gid != b.Gid)) {
			t.Errorf("%s: extracted mode %o rdev %x owner %d:%d, source %o %x %d:%d", rel, b.Mode, b.Rdev, b.Uid, b.Gid, a.Mode, a.Rdev, a.Uid, a.Gid)
		}
		switch {
		case src.Mode().IsRegular():
			x, _ := os.ReadFile(p)
			y, _ := os.ReadFile(filepath.Join(out, rel))
			if !bytes.Equal(x, y) {
				t.Errorf("%s: contents differ", rel)
			}
			if b.Mtim.Sec != min(a.Mtim.Sec, epoch.Unix()) {
				t.Errorf("%s: mtime %d, want %d", rel, b.Mtim.Sec, min(a.Mtim.Sec, epoch.Unix()))
			}
		case src.Mode()&os.ModeSymlink != 0:
			x, _ := os.Readlink(p)
			y, _ := os.Readlink(filepath.Join(out, rel))
			if x != y {
				t.Errorf("%s: symlink to %q, want %q", rel, y, x)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ino := func(rel string) (uint64, uint64) {
		var st unix.Stat_t
		unix.Lstat(filepath.Join(out, rel), &st)
		return st.Ino, uint64(st.Nlink)
	}
	i1, n1 := ino("usr/lib/pair-1")
	i2, _ := ino("usr/lib/pair-2")
	t1, tn := ino("bin/triple")
	t2, _ := ino("etc/ssl/triple")
	t3, _ := ino("usr/lib/triple")
	if i1 != i2 || n1 != 2 || t1 != t2 || t2 != t3 || tn != 3 {
		t.Errorf("hard links not restored: pair %d/%d (nlink %d), triple %d/%d/%d (nlink %d)", i1, i2, n1, t1, t2, t3, tn)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "usr/lib/pair-2")); string(b) != "shared by two names\n" {
		t.Errorf("usr/lib/pair-2 reads %q after extraction", b)
	}
}

func TestWriteTreeExtra(t *testing.T) {
	dir := sampleTree(t)
	initLink := Header{Name: "init", Mode: TypeSymlink | 0o777, Linkname: "sbin/init", Mtime: old.Unix()}
	console := Header{Name: "dev/console", Mode: TypeChar | 0o600, RdevMajor: 5, RdevMinor: 1}
	shadow := Header{Name: "etc/shadow", Mode: TypeSymlink | 0o777, Linkname: "elsewhere"}
	es := readAll(t, writeTree(t, dir, TreeOptions{Extra: []Header{initLink, console, shadow}}))
	m := byName(es)
	if e := m["init"]; e.Linkname != "sbin/init" || e.Mode != TypeSymlink|0o777 || e.Mtime != old.Unix() {
		t.Errorf("init: %+v", e)
	}
	if e := m["dev/console"]; e.Mode != TypeChar|0o600 || e.RdevMajor != 5 || e.RdevMinor != 1 {
		t.Errorf("dev/console: %+v", e)
	}
	if e := m["etc/shadow"]; e.Mode&TypeMask != TypeReg {
		t.Errorf("an extra entry replaced the tree's etc/shadow: %+v", e)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name)
	}
	if i := slices.Index(names, "init"); i < 0 || names[i-1] != "etc/ssl/triple" || names[i+1] != "tmp" {
		t.Errorf("init not in sorted place: %q", names)
	}
	if !slices.IsSortedFunc(inodesOf(es), func(a, b uint32) int { return int(a) - int(b) }) {
		t.Error("inodes not in output order with extra entries")
	}

	err := WriteTree(context.Background(), &bytes.Buffer{}, dir, TreeOptions{Extra: []Header{{Name: "nosuch/x", Mode: TypeDir | 0o755}}})
	if err == nil || !strings.Contains(err.Error(), `no directory "nosuch"`) {
		t.Errorf("extra entry in a missing directory: got %v", err)
	}
	err = WriteTree(context.Background(), &bytes.Buffer{}, dir, TreeOptions{Extra: []Header{{Name: "/init", Mode: TypeDir | 0o755}}})
	if err == nil {
		t.Error("absolute extra name accepted")
	}
}

func inodesOf(es []entryOf) []uint32 {
	var out []uint32
	for _, e := range es {
		if !slices.Contains(out, e.Ino) {
			out = append(out, e.Ino)
		}
	}
	return out
}

func TestWriteTreeCancel(t *testing.T) {
	dir := sampleTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteTree(ctx, &bytes.Buffer{}, dir, TreeOptions{}); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled WriteTree: got %v", err)
	}
}

func TestWriteTreeNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if err := WriteTree(context.Background(), &bytes.Buffer{}, f, TreeOptions{}); err == nil {
		t.Error("WriteTree of a file succeeded")
	}
}
