package layer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A tree Apply made from a layer compares equal to it, whatever the
// layer's times; any change to names, contents, modes or whiteouts is
// reported with the path.
func TestCompare(t *testing.T) {
	src := t.TempDir()
	makeTree(t, src)
	epoch := time.Unix(1e9, 0)
	whole := treeTar(t, src, Options{SourceDateEpoch: &epoch}) // times differ from the tree's
	diff := mkTar(t,
		ent{name: "a/", typ: tar.TypeDir},
		ent{name: "a/.wh..wh..opq", typ: tar.TypeReg},
		ent{name: "a/new", typ: tar.TypeReg, body: "new"},
		ent{name: ".wh.big", typ: tar.TypeReg},
		ent{name: "etc/", typ: tar.TypeDir},
		ent{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n"},
	)
	for _, tc := range []struct {
		name   string
		layer  []byte
		change func(dir string) error
		want   string
	}{
		{"tree", whole, nil, ""},
		{"tree, a file's content", whole, func(d string) error {
			return os.WriteFile(filepath.Join(d, "a/file"), []byte("HELLO\n"), 0o644)
		}, "a/file differs"},
		{"tree, a mode", whole, func(d string) error { return os.Chmod(filepath.Join(d, "a-b"), 0o4755) }, "a-b differs"},
		{"tree, a planted file", whole, func(d string) error {
			return os.WriteFile(filepath.Join(d, "a/planted"), nil, 0o644)
		}, "a/planted is not in the layer"},
		{"tree, a removed file", whole, func(d string) error { return os.Remove(filepath.Join(d, "link")) }, "link is missing"},
		{"diff", diff, nil, ""},
		{"diff, passwd", diff, func(d string) error {
			return os.WriteFile(filepath.Join(d, "etc/passwd"), []byte("root::0:0::/root:/bin/sh\n"), 0o644)
		}, "etc/passwd differs"},
		{"diff, a whiteout removed", diff, func(d string) error { return os.Remove(filepath.Join(d, "big")) }, ".wh.big is missing"},
		{"diff, opacity removed", diff, func(d string) error {
			return removeXattr(filepath.Join(d, "a"), "trusted.overlay.opaque")
		}, "a/.wh..wh..opq is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.layer == nil || (strings.HasPrefix(tc.name, "diff") && !isRoot) {
				t.Skip("overlay whiteouts need root")
			}
			dir := t.TempDir()
			apply(t, tc.layer, dir, ApplyOptions{Overlay: true})
			if tc.change != nil {
				must(t, tc.change(dir))
			}
			err := Compare(bytes.NewReader(tc.layer), dir)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unchanged tree: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func removeXattr(path, name string) error { return unix.Removexattr(path, name) }

// DiffArchives lists every path two archives differ in, times
// included, and reads a compressed one like a plain one.
func TestDiffArchives(t *testing.T) {
	a := mkTar(t,
		ent{name: "etc/", typ: tar.TypeDir},
		ent{name: "etc/clock", typ: tar.TypeReg, body: "1\n"},
		ent{name: "etc/same", typ: tar.TypeReg, body: "same\n"},
		ent{name: "etc/gone", typ: tar.TypeReg, body: "x"},
		ent{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
	)
	b := mkTar(t,
		ent{name: "etc/", typ: tar.TypeDir},
		ent{name: "etc/clock", typ: tar.TypeReg, body: "2\n"},
		ent{name: "etc/same", typ: tar.TypeReg, body: "same\n"},
		ent{name: "etc/new", typ: tar.TypeReg, body: "y"},
		ent{name: "bin/sh", typ: tar.TypeSymlink, link: "dash"},
	)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(b)
	zw.Close()
	diffs, err := DiffArchives(bytes.NewReader(a), &gz)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diffs {
		got = append(got, d.Path)
	}
	if strings.Join(got, " ") != "bin/sh etc/clock etc/gone etc/new" {
		t.Fatalf("differing paths %v", got)
	}
	if diffs[2].B != "" || diffs[3].A != "" || !strings.Contains(diffs[0].B, `-> "dash"`) {
		t.Errorf("diffs %+v", diffs)
	}
	// Only a time differs.
	c := bytes.Replace(a, []byte(fmt.Sprintf("%011o", 1000000000)), []byte(fmt.Sprintf("%011o", 1000000001)), 1)
	diffs, err = DiffArchives(bytes.NewReader(a), bytes.NewReader(fixChecksum(c)))
	if err != nil || len(diffs) != 1 || diffs[0].Path != "etc" || !strings.Contains(diffs[0].B, "mtime 2001-09-09T01:46:41Z") {
		t.Errorf("a changed time: %+v %v", diffs, err)
	}
	if _, err := DiffArchives(strings.NewReader("not a tar archive at all, and long enough to fail the header read..........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), bytes.NewReader(a)); err == nil {
		t.Errorf("no error for something not an archive")
	}
}

// fixChecksum recomputes the checksum of the first tar header in b.
func fixChecksum(b []byte) []byte {
	h := b[:512]
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}
