package targets

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/layer"
)

var t0 = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// ent is one entry of a hand-made layer tar. Typeflag 0 means a regular
// file; a name ending in "/" a directory.
type ent struct {
	name  string
	typ   byte
	body  string
	link  string // symlink or hard link target
	mode  int64
	uid   int
	gid   int
	major int64
	minor int64
	mtime time.Time
	pax   map[string]string
	uname string
}

func dir(name string) ent        { return ent{name: name + "/", typ: tar.TypeDir, mode: 0o755} }
func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}
func whiteout(name string) ent           { return file(name, "") }
func (e ent) withMode(m int64) ent       { e.mode = m; return e }
func (e ent) withTime(tm time.Time) ent  { e.mtime = tm; return e }
func (e ent) withOwner(uid, gid int) ent { e.uid, e.gid = uid, gid; return e }

// tarBytes writes entries as an uncompressed tar, in the given order.
func tarBytes(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mt := e.mtime
		if mt.IsZero() {
			mt = t0
		}
		h := &tar.Header{
			Typeflag: typ, Name: e.name, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Uname: e.uname, ModTime: mt, Devmajor: e.major, Devminor: e.minor,
			PAXRecords: e.pax, Format: tar.FormatPAX,
		}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("writing %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// layerFile stores b as a layer blob the way the cache would.
func layerFile(t testing.TB, kind string, b []byte) Layer {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Layer{Digest: digest.FromBytes(b), Size: int64(len(b)), Path: p, Kind: kind}
}

func tarLayer(t testing.TB, kind string, ents ...ent) Layer {
	t.Helper()
	return layerFile(t, kind, tarBytes(t, ents...))
}

// treeLayer makes a layer of the tree fill makes, with layer.WriteTree.
func treeLayer(t testing.TB, kind string, fill func(dir string)) Layer {
	t.Helper()
	dir := t.TempDir()
	fill(dir)
	var b bytes.Buffer
	if err := layer.WriteTree(&b, dir, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	return layerFile(t, kind, b.Bytes())
}

func squash(t testing.TB, layers []Layer, epoch *time.Time) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Squash(context.Background(), &b, layers, epoch); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type member struct {
	hdr  *tar.Header
	body string
}

func readTar(t testing.TB, r io.Reader) []member {
	t.Helper()
	tr := tar.NewReader(r)
	var out []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		out = append(out, member{h, string(b)})
	}
}

// describe lists a tar's entries one a line: type, name, target or
// contents, mode.
func describe(ms []member) string {
	var sb strings.Builder
	for _, m := range ms {
		h := m.hdr
		fmt.Fprintf(&sb, "%c %s", h.Typeflag, h.Name)
		switch h.Typeflag {
		case tar.TypeSymlink, tar.TypeLink:
			fmt.Fprintf(&sb, " -> %s", h.Linkname)
		case tar.TypeReg:
			fmt.Fprintf(&sb, " %q", m.body)
		}
		fmt.Fprintf(&sb, " %o\n", h.Mode)
	}
	return sb.String()
}

// applyAll extracts layers one by one with layer.Apply into a new
// directory, as a snapshot is made.
func applyAll(t testing.TB, layers ...Layer) string {
	t.Helper()
	dst := t.TempDir()
	for _, l := range layers {
		f, err := os.Open(l.Path)
		if err != nil {
			t.Fatal(err)
		}
		err = layer.Apply(f, dst, layer.ApplyOptions{})
		f.Close()
		if err != nil {
			t.Fatalf("applying %s: %v", l.Path, err)
		}
	}
	return dst
}

func treeBytes(t testing.TB, dir string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := layer.WriteTree(&b, dir, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// listFiles lists the regular files below dir, slash-separated and sorted.
func listFiles(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}
