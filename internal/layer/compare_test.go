package layer

import (
	"archive/tar"
	"bytes"
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
