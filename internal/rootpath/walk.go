package rootpath

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Mode says what a path may do at the root's edge.
type Mode int

const (
	// Beneath refuses a path that leads out of the root: an absolute
	// symlink, or ".." above the root.
	Beneath Mode = iota
	// InRoot resolves as a chroot: absolute symlinks start again at the
	// root, and ".." at the root stays there.
	InRoot
)

func (m Mode) String() string {
	if m == InRoot {
		return "in-root"
	}
	return "beneath"
}

// ErrEscape is wrapped by errors for paths that lead outside the root in
// [Beneath] mode.
var ErrEscape = errors.New("the path leads outside the root filesystem")

// MaxSymlinks is how many symlinks one resolution follows, as the
// kernel's MAXSYMLINKS; more is ELOOP.
const MaxSymlinks = 40

// Kind is what a directory entry is, as far as resolution cares.
type Kind int

const (
	KindOther Kind = iota
	KindDir
	KindSymlink
)

// Tree is a directory tree Walk can step through. D is a handle on a
// directory (a file descriptor, a node). Lstat reports a missing name
// with an error wrapping fs.ErrNotExist (unix.ENOENT does).
type Tree[D any] interface {
	Lstat(dir D, name string) (Kind, error)
	Readlink(dir D, name string) (string, error)
	// Enter returns a handle on the directory name in dir.
	Enter(dir D, name string) (D, error)
	// Mkdir creates the directory name in dir, for Options.Create.
	Mkdir(dir D, name string) error
	// Dup returns a second handle on dir; Release lets one go.
	Dup(dir D) (D, error)
	Release(dir D)
}

// Options tune a Walk.
type Options struct {
	// FollowFinal follows a symlink in the final component; otherwise
	// the symlink itself is the result.
	FollowFinal bool
	// Create makes missing directories on the way. Directories a
	// symlink's target names are never created (as mkdir -p, which does
	// not create through a dangling symlink).
	Create bool
	// Lexical goes on past a missing directory by joining the rest of
	// the components as words (".." still stopping at the root); Dir is
	// then the deepest directory that exists, and Path and Name spell
	// the whole path.
	Lexical bool
}

// Result is where a path leads: the directory that holds its final
// component, and that component's name, which need not exist ("." when
// the path names Dir itself).
type Result[D any] struct {
	Dir  D      // the caller's, to Release
	Path string // Dir's path from the root, slash-separated ("" for the root)
	Name string
}

// Full is the result's path from the root ("" for the root itself).
func (r Result[D]) Full() string {
	if r.Name == "." {
		return r.Path
	}
	return path.Join(r.Path, r.Name)
}

type comp struct {
	name    string
	viaLink bool // from a symlink's target
}

// split splits a path into components, dropping empty ones and ".". A
// path ending in "/" or "/." (or naming the root) keeps a final "." so
// that its last real component must be a directory and is entered.
func split(p string, viaLink bool) []comp {
	var cs []comp
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			cs = append(cs, comp{c, viaLink})
		}
	}
	if len(cs) == 0 || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") {
		cs = append(cs, comp{".", viaLink})
	}
	return cs
}

// Walk resolves rel (slash-separated, relative to root; leading slashes
// are dropped) in t, following symlinks as mode says. root stays the
// caller's. Errors wrap ErrEscape, unix.ELOOP, unix.ENOTDIR or, for a
// missing directory on the way, unix.ENOENT.
func Walk[D any](t Tree[D], root D, rel string, mode Mode, o Options) (Result[D], error) {
	stack := []D{root}
	var names []string
	releaseAll := func() {
		for _, d := range stack[1:] {
			t.Release(d)
		}
		stack = stack[:1]
		names = names[:0]
	}
	fail := func(err error) (Result[D], error) {
		releaseAll()
		return Result[D]{}, err
	}
	done := func(name string) (Result[D], error) {
		res := Result[D]{Path: strings.Join(names, "/"), Name: name}
		if len(stack) == 1 {
			d, err := t.Dup(root)
			if err != nil {
				return fail(err)
			}
			res.Dir = d
		} else {
			res.Dir = stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			releaseAll()
		}
		return res, nil
	}

	comps := split(rel, false)
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		last := len(comps) == 0
		top := stack[len(stack)-1]
		switch c.name {
		case ".":
			return done(".") // only ever last
		case "..":
			if len(stack) == 1 {
				if mode == Beneath {
					return fail(ErrEscape)
				}
			} else {
				t.Release(top)
				stack = stack[:len(stack)-1]
				names = names[:len(names)-1]
			}
			if last {
				return done(".")
			}
			continue
		}
		kind, err := t.Lstat(top, c.name)
		switch {
		case errors.Is(err, fs.ErrNotExist) && last:
			return done(c.name)
		case errors.Is(err, fs.ErrNotExist) && o.Create && !c.viaLink:
			if err := t.Mkdir(top, c.name); err != nil {
				return fail(err)
			}
			kind = KindDir
		case errors.Is(err, fs.ErrNotExist) && o.Lexical:
			words := append([]string{}, names...)
			for _, r := range append([]comp{c}, comps...) {
				switch {
				case r.name == ".":
				case r.name != "..":
					words = append(words, r.name)
				case len(words) > 0:
					words = words[:len(words)-1]
				case mode == Beneath:
					return fail(ErrEscape)
				}
			}
			res, err := done(".")
			if err == nil && len(words) > 0 {
				res.Path, res.Name = strings.Join(words[:len(words)-1], "/"), words[len(words)-1]
			} else if err == nil {
				res.Path = ""
			}
			return res, err
		case err != nil:
			return fail(err)
		}
		if kind == KindSymlink && (!last || o.FollowFinal) {
			if links++; links > MaxSymlinks {
				return fail(unix.ELOOP)
			}
			target, err := t.Readlink(top, c.name)
			if err != nil {
				return fail(err)
			}
			if target == "" {
				return fail(unix.ENOENT) // as the kernel treats an empty target
			}
			if strings.HasPrefix(target, "/") {
				if mode == Beneath {
					return fail(ErrEscape)
				}
				releaseAll()
			}
			tc := split(target, true)
			if !last && tc[len(tc)-1].name == "." {
				tc = tc[:len(tc)-1] // more components follow anyway
			}
			comps = append(tc, comps...)
			continue
		}
		if last {
			return done(c.name)
		}
		if kind != KindDir {
			return fail(unix.ENOTDIR)
		}
		d, err := t.Enter(top, c.name)
		if err != nil {
			return fail(err)
		}
		stack = append(stack, d)
		names = append(names, c.name)
	}
	return done(".")
}

// CleanName validates the name of an archive member (or a hard link's
// target) and returns it relative to the root, "" for the root itself.
// Absolute names, ".." components and NUL bytes are refused: an
// archive's names never leave the directory it is extracted into.
func CleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("empty name")
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%q is absolute", name)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%q contains a NUL byte", name)
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%q has a \"..\" component", name)
		}
	}
	rel := path.Clean(name)
	if rel == "." {
		return "", nil
	}
	return rel, nil
}
