package cache

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/layer"
)

// unpackLayer is how the engine unpacks a layer into a snapshot.
func unpackLayer(r io.Reader, dir string) error {
	return layer.Apply(r, dir, layer.ApplyOptions{Overlay: true})
}

// A snapshot edited after unpacking (an etc/passwd with an empty root
// password) is what later stages build on; verify must find it, say so,
// and drop it so that the next use unpacks the layer again.
func TestVerifyFindsATamperedSnapshot(t *testing.T) {
	s := openStore(t, t.TempDir())
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	passwd := "root:x:0:0:root:/root:/bin/sh\n"
	os.WriteFile(filepath.Join(tree, "etc", "passwd"), []byte(passwd), 0o644)
	var buf bytes.Buffer
	if err := layer.WriteTree(&buf, tree, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	desc, err := s.PutBlob(&buf)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(desc.Digest, unpackLayer)
	if err != nil {
		t.Fatal(err)
	}
	assertClean(t, s)

	for _, tamper := range []struct {
		what, want string
		do         func() error
	}{
		{"edited passwd", "etc/passwd differs", func() error {
			return os.WriteFile(filepath.Join(snap, "etc", "passwd"), []byte("root::0:0:root:/root:/bin/sh\n"), 0o644)
		}},
		{"planted file", "etc/sudoers is not in the layer", func() error {
			return os.WriteFile(filepath.Join(snap, "etc", "sudoers"), []byte("ALL ALL=(ALL) NOPASSWD: ALL\n"), 0o440)
		}},
	} {
		if err := tamper.do(); err != nil {
			t.Fatal(err)
		}
		problems, err := s.Verify()
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 1 || problems[0].Kind != TamperedSnapshot || problems[0].Path != snap ||
			!strings.Contains(problems[0].String(), tamper.want) {
			t.Errorf("%s: Verify = %v, want one tampered snapshot %s with %q", tamper.what, problems, snap, tamper.want)
		}
		if _, err := os.Stat(snap); err == nil {
			t.Errorf("%s: the tampered snapshot is still there", tamper.what)
		}
		again, err := s.Snapshot(desc.Digest, unpackLayer)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(again, "etc", "passwd")); string(b) != passwd {
			t.Errorf("%s: after verify, the snapshot's passwd is %q", tamper.what, b)
		}
		assertClean(t, s)
	}
}

// A snapshot whose layer blob is gone cannot be checked: it is dropped.
func TestVerifyDropsASnapshotWithoutItsBlob(t *testing.T) {
	s := openStore(t, t.TempDir())
	stray := filepath.Join(s.SnapshotsDir(), "0123456789abcdef")
	os.MkdirAll(filepath.Join(stray, "etc"), 0o755)
	problems, _ := s.Verify()
	if len(problems) != 1 || problems[0].Kind != TamperedSnapshot || !strings.Contains(problems[0].Detail, "no layer blob") {
		t.Errorf("Verify = %v", problems)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("the snapshot without a blob is still there")
	}
}
