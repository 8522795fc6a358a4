// Package rootpathtest holds the cases every in-root path resolver of
// fgimg is tested against: one fixture tree, and where each path in it
// leads in the two modes of package rootpath.
package rootpathtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
)

// Entry is one thing in the fixture: a directory (Name ends in "/"), a
// symlink (Link set) or a regular file.
type Entry struct {
	Name string
	Link string
}

// Chain is the length of the long symlink chain c00 -> c01 -> ... -> dir:
// one more link than the kernel follows.
const Chain = rootpath.MaxSymlinks + 1

// Fixture is the tree, parents before children.
var Fixture = func() []Entry {
	es := []Entry{
		{Name: "dir/"},
		{Name: "dir/file"},
		{Name: "dir/sub/"},
		{Name: "file"},
		{Name: "rootlink", Link: "/"},
		{Name: "abs", Link: "/dir"},
		{Name: "absfile", Link: "/dir/file"},
		{Name: "up", Link: ".."},
		{Name: "dir/up2", Link: "../.."},
		{Name: "dir/back", Link: "../dir"},
		{Name: "dangling", Link: "nowhere"},
		{Name: "absdangling", Link: "/nowhere"},
		{Name: "loop1", Link: "loop2"},
		{Name: "loop2", Link: "loop1"},
		{Name: "self", Link: "self"},
	}
	for i := range Chain {
		next := fmt.Sprintf("c%02d", i+1)
		if i == Chain-1 {
			next = "dir"
		}
		es = append(es, Entry{Name: fmt.Sprintf("c%02d", i), Link: next})
	}
	return es
}()

// Want is where a path leads, following a final symlink: Path is its
// place from the root ("" for the root; its last component need not
// exist), or Err what resolving it fails with.
type Want struct {
	Path string
	Err  error
}

// Case is a path and where it leads in each mode.
type Case struct {
	Path            string
	Beneath, InRoot Want
}

var (
	escape = Want{Err: rootpath.ErrEscape}
	loop   = Want{Err: unix.ELOOP}
	noent  = Want{Err: unix.ENOENT}
	notdir = Want{Err: unix.ENOTDIR}
)

func at(p string) Want { return Want{Path: p} }

// Cases are the paths every resolver is run on.
var Cases = []Case{
	{Path: "", Beneath: at(""), InRoot: at("")},
	{Path: "dir/file", Beneath: at("dir/file"), InRoot: at("dir/file")},
	{Path: "dir/sub/../file", Beneath: at("dir/file"), InRoot: at("dir/file")},
	{Path: "dir/back/file", Beneath: at("dir/file"), InRoot: at("dir/file")},
	{Path: "dir/new", Beneath: at("dir/new"), InRoot: at("dir/new")},
	// ".." above the root.
	{Path: "../file", Beneath: escape, InRoot: at("file")},
	{Path: "dir/../../dir/file", Beneath: escape, InRoot: at("dir/file")},
	{Path: "up/dir/file", Beneath: escape, InRoot: at("dir/file")},
	{Path: "dir/up2/file", Beneath: escape, InRoot: at("file")},
	// Absolute symlinks.
	{Path: "rootlink", Beneath: escape, InRoot: at("")},
	{Path: "rootlink/dir/file", Beneath: escape, InRoot: at("dir/file")},
	{Path: "rootlink/etc/x", Beneath: escape, InRoot: noent},
	{Path: "abs/file", Beneath: escape, InRoot: at("dir/file")},
	{Path: "absfile", Beneath: escape, InRoot: at("dir/file")},
	// Dangling links: a final one leads to a name that does not exist.
	{Path: "dangling", Beneath: at("nowhere"), InRoot: at("nowhere")},
	{Path: "absdangling", Beneath: escape, InRoot: at("nowhere")},
	{Path: "dangling/x", Beneath: noent, InRoot: noent},
	// Loops and long chains.
	{Path: "loop1", Beneath: loop, InRoot: loop},
	{Path: "self/x", Beneath: loop, InRoot: loop},
	{Path: "c01/file", Beneath: at("dir/file"), InRoot: at("dir/file")}, // 40 links
	{Path: "c00/file", Beneath: loop, InRoot: loop},                     // 41
	// Not a directory.
	{Path: "file/x", Beneath: notdir, InRoot: notdir},
}

// Want returns where c leads in mode.
func (c Case) Want(mode rootpath.Mode) Want {
	if mode == rootpath.InRoot {
		return c.InRoot
	}
	return c.Beneath
}

// MakeDisk creates the fixture in the directory root.
func MakeDisk(t testing.TB, root string) {
	t.Helper()
	for _, e := range Fixture {
		p := filepath.Join(root, e.Name)
		var err error
		switch {
		case e.Link != "":
			err = os.Symlink(e.Link, p)
		case e.Name[len(e.Name)-1] == '/':
			err = os.Mkdir(p, 0o755)
		default:
			err = os.WriteFile(p, []byte(e.Name), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// WithFallback runs f with openat2, then with the walk behind it.
func WithFallback(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("fallback", func(t *testing.T) {
		rootpath.UseOpenat2(false)
		defer rootpath.UseOpenat2(true)
		f(t)
	})
}
