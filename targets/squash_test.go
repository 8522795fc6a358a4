package targets

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/testkit"
)

// chain is a three-layer image exercising what squashing must get right.
// Upper layers carry the directories they change, as layer.WriteDiff
// writes them.
func chain(t testing.TB) []Layer {
	t.Helper()
	base := tarLayer(t, "bootstrap",
		dir("bin"),
		file("bin/tool", "tool v1").withMode(0o755),
		dir("dirfile"),
		file("dirfile/child", "child"),
		dir("etc"),
		file("etc/gone", "gone"),
		file("etc/passwd", "root v1"),
		file("filedir", "was a file"),
		symlink("lib", "usr/lib"),
		dir("opt"),
		dir("opt/keep"),
		file("opt/keep/a", "a"),
		dir("opt/keep/sub"),
		file("opt/keep/sub/b", "b"),
		dir("usr"),
		dir("usr/lib"),
		file("usr/lib/libc", "libc"),
		dir("usr/share"),
		file("usr/share/orig", "one inode"),
		hardlink("usr/share/copy1", "usr/share/orig"),
		hardlink("usr/share/copy2", "usr/share/orig"),
		dir("var"),
		dir("var/cache"),
		dir("var/cache/olddir"),
		file("var/cache/olddir/x", "x"),
		file("var/cache/old", "old"),
	)
	upper := tarLayer(t, "packages",
		file("dirfile", "now a file"),
		dir("etc").withTime(t0.Add(time.Hour)),
		whiteout("etc/.wh.gone"),
		file("etc/passwd", "root v2").withMode(0o600),
		dir("filedir").withMode(0o700),
		file("filedir/inner", "inner"),
		file("lib/extra", "through the symlink"),
		dir("opt"),
		whiteout("opt/.wh.keep"),
		dir("usr"),
		dir("usr/lib"),
		dir("usr/share"),
		whiteout("usr/share/.wh.orig"), // copy1 and copy2 survive
		dir("var"),
		dir("var/cache"),
		whiteout("var/cache/.wh..wh..opq"),
		file("var/cache/new", "new"),
	)
	top := tarLayer(t, "files",
		dir("bin"),
		file("bin/tool", "tool v3").withMode(0o755),
		dir("etc").withTime(t0.Add(2*time.Hour)),
		dir("etc/gone"),
		file("etc/gone/again", "again"),
		dir("usr"),
		dir("usr/share"),
		hardlink("usr/share/copy3", "usr/share/copy2"),
	)
	return []Layer{base, upper, top}
}

const chainWant = `5 bin/ 755
0 bin/tool "tool v3" 755
0 dirfile "now a file" 644
5 etc/ 755
5 etc/gone/ 755
0 etc/gone/again "again" 644
0 etc/passwd "root v2" 600
5 filedir/ 700
0 filedir/inner "inner" 644
2 lib -> usr/lib 777
5 opt/ 755
5 usr/ 755
5 usr/lib/ 755
0 usr/lib/extra "through the symlink" 644
0 usr/lib/libc "libc" 644
5 usr/share/ 755
0 usr/share/copy1 "one inode" 644
1 usr/share/copy2 -> usr/share/copy1 644
1 usr/share/copy3 -> usr/share/copy1 644
5 var/ 755
5 var/cache/ 755
0 var/cache/new "new" 644
`

func TestSquash(t *testing.T) {
	out := squash(t, chain(t), nil)
	ms := readTar(t, bytes.NewReader(out))
	if got := describe(ms); got != chainWant {
		t.Errorf("squashed tree:\n%s\nwant:\n%s", got, chainWant)
	}
	for _, m := range ms {
		if strings.Contains(m.hdr.Name, ".wh.") {
			t.Errorf("whiteout %s in output", m.hdr.Name)
		}
	}
	if h := ms[3].hdr; h.Name != "etc/" || !h.ModTime.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("%s: mtime %v, want the top layer's %v", h.Name, h.ModTime, t0.Add(2*time.Hour))
	}
}

// The tarball extracted must be the tree the layers give when applied one
// by one, as a snapshot is made.
func TestSquashMatchesLayerApply(t *testing.T) {
	layers := chain(t)
	want := treeBytes(t, applyAll(t, layers...))
	squashed := layerFile(t, "", squash(t, layers, nil))
	got := treeBytes(t, applyAll(t, squashed))
	if !bytes.Equal(got, want) {
		t.Errorf("extracted squash differs from layers applied in turn:\n%s\nwant:\n%s",
			describe(readTar(t, bytes.NewReader(got))), describe(readTar(t, bytes.NewReader(want))))
	}
}

// A hard link whose target an upper layer deleted must still give an
// archive GNU tar extracts, with all surviving names one file.
func TestSquashHardLinkTargetDeleted(t *testing.T) {
	testkit.Need(t, "tar")
	out := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(out, squash(t, chain(t), nil), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if b, err := exec.Command("tar", "-xf", out, "-C", dst).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, b)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dst, "usr/share/copy3"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 3 {
		t.Errorf("usr/share/copy3 has %d links, want 3", st.Nlink)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "usr/share/copy2")); string(b) != "one inode" {
		t.Errorf("usr/share/copy2 = %q", b)
	}
}

// A single layer written by layer.WriteTree squashes to itself: every
// header field, order and content survives.
func TestSquashSingleLayerIsIdentity(t *testing.T) {
	l := treeLayer(t, "bootstrap", func(dir string) { testkit.BusyboxRootfs(t, dir) })
	want, err := os.ReadFile(l.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := squash(t, []Layer{l}, nil); !bytes.Equal(got, want) {
		t.Errorf("squash of one layer differs from it:\n%s\nwant:\n%s",
			describe(readTar(t, bytes.NewReader(got))), describe(readTar(t, bytes.NewReader(want))))
	}
}

func TestSquashKeepsMetadata(t *testing.T) {
	capability := "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	long := strings.Repeat("long-directory-name/", 6) + "file"
	frac := time.Date(2019, 5, 6, 7, 8, 9, 500_000_000, time.UTC)
	l := tarLayer(t, "bootstrap",
		dir("dev"),
		ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o660, gid: 6, major: 8, minor: 0},
		dir("home"),
		dir("home/alice").withMode(0o750).withOwner(1000, 1000),
		ent{name: "home/alice/notes", typ: tar.TypeReg, body: "hi", mode: 0o640, uid: 1000, gid: 1000, uname: "alice",
			pax: map[string]string{
				"SCHILY.xattr.user.comment":           "kept",
				"SCHILY.xattr.security.capability":    capability,
				"SCHILY.xattr.trusted.overlay.opaque": "y",
			}},
		ent{name: "run", typ: tar.TypeFifo, mode: 0o600},
		file("usr/bin/sudo", "sudo").withMode(0o4755),
		file(long, "deep").withTime(frac),
	)
	ms := readTar(t, bytes.NewReader(squash(t, []Layer{l}, nil)))
	byName := map[string]*tar.Header{}
	for _, m := range ms {
		byName[m.hdr.Name] = m.hdr
	}
	check := func(name string, ok func(h *tar.Header) bool) {
		t.Helper()
		h := byName[name]
		if h == nil {
			t.Errorf("%s missing", name)
		} else if !ok(h) {
			t.Errorf("%s: wrong header %+v", name, *h)
		}
	}
	check("dev/null", func(h *tar.Header) bool {
		return h.Typeflag == tar.TypeChar && h.Devmajor == 1 && h.Devminor == 3 && h.Mode == 0o666
	})
	check("dev/sda", func(h *tar.Header) bool {
		return h.Typeflag == tar.TypeBlock && h.Devmajor == 8 && h.Devminor == 0 && h.Gid == 6 && h.Mode == 0o660
	})
	check("home/alice/", func(h *tar.Header) bool { return h.Uid == 1000 && h.Gid == 1000 && h.Mode == 0o750 })
	check("home/alice/notes", func(h *tar.Header) bool {
		return h.Uid == 1000 && h.Uname == "" && h.Mode == 0o640 &&
			h.PAXRecords["SCHILY.xattr.user.comment"] == "kept" &&
			h.PAXRecords["SCHILY.xattr.security.capability"] == capability &&
			h.PAXRecords["SCHILY.xattr.trusted.overlay.opaque"] == ""
	})
	check("run", func(h *tar.Header) bool { return h.Typeflag == tar.TypeFifo && h.Mode == 0o600 })
	check("usr/", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode == 0o755 })
	check("usr/bin/sudo", func(h *tar.Header) bool { return h.Mode == 0o4755 })
	check(long, func(h *tar.Header) bool { return h.ModTime.Equal(frac) })
}

func TestSquashSourceDateEpoch(t *testing.T) {
	early, late := t0.AddDate(-10, 0, 0), t0.AddDate(10, 0, 0)
	l := tarLayer(t, "bootstrap",
		dir("d").withTime(late),
		file("d/early", "e").withTime(early),
		file("d/late", "l").withTime(late),
	)
	for _, tc := range []struct {
		epoch     *time.Time
		wantLate  time.Time
		wantEarly time.Time
	}{
		{nil, late, early},
		{&t0, t0, early},
	} {
		ms := readTar(t, bytes.NewReader(squash(t, []Layer{l}, tc.epoch)))
		got := map[string]time.Time{}
		for _, m := range ms {
			got[m.hdr.Name] = m.hdr.ModTime
		}
		if !got["d/"].Equal(tc.wantLate) || !got["d/late"].Equal(tc.wantLate) || !got["d/early"].Equal(tc.wantEarly) {
			t.Errorf("epoch %v: times %v, want late %v, early %v", tc.epoch, got, tc.wantLate, tc.wantEarly)
		}
	}
}

// Sparse entries, which GNU tar writes and archive/tar expands, cannot be
// copied by offset; the entries after them must still be right.
func TestSquashSparse(t *testing.T) {
	testkit.Need(t, "tar")
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "a-sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 3<<20)
	f.Truncate(8 << 20)
	f.Close()
	if err := os.WriteFile(filepath.Join(src, "b-after"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(src, "a-sparse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "layer.tar")
			cmd := exec.Command("tar", "--sparse", "--format="+format, "-cf", p, "-C", src, ".")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, b)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sparse := false
			tr := tar.NewReader(bytes.NewReader(b))
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				sparse = sparse || (h.Name == "./a-sparse" && isSparse(h))
			}
			if !sparse {
				t.Fatal("tar wrote no sparse entry for a-sparse")
			}
			ms := readTar(t, bytes.NewReader(squash(t, []Layer{layerFile(t, "bootstrap", b)}, nil)))
			if len(ms) != 2 || ms[0].hdr.Name != "a-sparse" || ms[1].hdr.Name != "b-after" {
				t.Fatalf("entries:\n%s", describe(ms))
			}
			if ms[0].body != string(want) {
				t.Errorf("sparse file contents differ (%d bytes, want %d)", len(ms[0].body), len(want))
			}
			if ms[1].body != "after" {
				t.Errorf("b-after = %q", ms[1].body)
			}
		})
	}
}

func TestSquashErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		ents []ent
		want string
	}{
		{"dangling hard link", []ent{hardlink("a", "nosuch")}, `hard link to "nosuch"`},
		{"escaping name", []ent{file("../x", "x")}, `".." component`},
		{"absolute name", []ent{file("/etc/x", "x")}, "absolute"},
		{"file as parent", []ent{file("f", ""), file("f/x", "x")}, "f: not a directory"},
		{"symlink loop", []ent{symlink("a", "b"), symlink("b", "a"), file("a/x", "")}, "too many levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Squash(context.Background(), &bytes.Buffer{}, []Layer{tarLayer(t, "", tc.ents...)}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	err := Squash(context.Background(), &bytes.Buffer{}, []Layer{{Path: filepath.Join(t.TempDir(), "missing")}}, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing layer file: %v", err)
	}
}

func TestSquashCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Squash(ctx, &bytes.Buffer{}, chain(t), nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}
