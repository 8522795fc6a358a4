package swstack

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
)

// Bounds on what Read takes from an image: a hostile image must not make
// it read without end. The dpkg status of a full desktop is a few MiB.
const (
	maxDatabase = 256 << 20 // a package database
	maxSmall    = 1 << 20   // os-release
	maxEntries  = 1 << 16   // entries of one directory
)

// Read reads the software stack of the root filesystem at root.
//
// Every path is resolved inside root as the booted image would see it
// (rootpath.InRoot): an absolute symlink starts again at root and ".."
// stops there, so a planted symlink never leads Read out of the image.
// A part the image does not have (no package database, no kernel) is
// left empty; a part that is there but unreadable is an error.
func Read(root string) (*Stack, error) {
	r, err := rootpath.OpenRoot(root, rootpath.InRoot)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	img := &image{r: r, root: root}
	st := &Stack{Packages: []Package{}}
	if err := img.readPackages(st); err != nil {
		return nil, err
	}
	if st.Kernels, err = img.kernels(); err != nil {
		return nil, err
	}
	if st.Services, err = img.services(); err != nil {
		return nil, err
	}
	if err := img.osRelease(st); err != nil {
		return nil, err
	}
	sortPackages(st.Packages)
	return st, nil
}

// readPackages reads the first package database the image has.
func (img *image) readPackages(st *Stack) error {
	for _, db := range databases {
		pkgs, err := db.read(img, db.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the %s database /%s: %w", db.manager, db.path, err)
		}
		st.Manager, st.Packages = db.manager, pkgs
		return nil
	}
	return nil
}

// databases are the package databases Read knows, in the order it looks
// for them. read fails with an error wrapping fs.ErrNotExist when the
// image has no such database.
var databases = []struct {
	manager, path string
	read          func(img *image, rel string) ([]Package, error)
}{
	{"dpkg", "var/lib/dpkg/status", parsing(parseDpkg)},
	{"apk", "lib/apk/db/installed", parsing(parseApk)},
	{"rpm", "usr/lib/sysimage/rpm/rpmdb.sqlite", (*image).readRpmSqlite},
	{"rpm", "var/lib/rpm/rpmdb.sqlite", (*image).readRpmSqlite},
}

// parsing reads a text database whole and parses it.
func parsing(parse func([]byte) ([]Package, error)) func(*image, string) ([]Package, error) {
	return func(img *image, rel string) ([]Package, error) {
		b, err := img.readFile(rel, maxDatabase)
		if err != nil {
			return nil, err
		}
		return parse(b)
	}
}

// image reads files of one root, never leaving it.
type image struct {
	r    *rootpath.Root
	root string
	dirs map[string]map[string]entry // readDirCached's
}

// open opens the regular file rel, following symlinks inside the root.
func (img *image) open(rel string) (*os.File, error) { return img.r.OpenRegular(rel) }

// openBounded opens the regular file rel and returns its size, refusing
// one larger than max.
func (img *image) openBounded(rel string, max int64) (*os.File, int64, error) {
	f, err := img.open(rel)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if fi.Size() > max {
		f.Close()
		return nil, 0, fmt.Errorf("/%s is %d bytes, more than the %d read from an image", rel, fi.Size(), max)
	}
	return f, fi.Size(), nil
}

// readFile reads the regular file rel, at most max bytes; larger is an
// error. A missing file is an error wrapping fs.ErrNotExist.
func (img *image) readFile(rel string, max int64) ([]byte, error) {
	f, size, err := img.openBounded(rel, max)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 0, size+1)
	b, err = readAll(io.LimitReader(f, max+1), b)
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", rel, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("/%s is more than the %d bytes read from an image", rel, max)
	}
	return b, nil
}

func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// entry is one directory entry; Link is a symlink's target.
type entry struct {
	Name string
	Type fs.FileMode // fs.ModeDir, fs.ModeSymlink or 0
	Link string
}

// readDir lists the directory rel, sorted by name, with symlinks' targets.
// A missing directory lists nothing.
func (img *image) readDir(rel string) ([]entry, error) {
	fd, err := img.r.Open(rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	defer f.Close()
	des, err := f.ReadDir(maxEntries + 1)
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(des) > maxEntries {
		return nil, fmt.Errorf("/%s has more than %d entries", rel, maxEntries)
	}
	out := make([]entry, 0, len(des))
	for _, de := range des {
		e := entry{Name: de.Name(), Type: de.Type() & (fs.ModeDir | fs.ModeSymlink)}
		if e.Type == fs.ModeSymlink {
			if e.Link, err = readlinkAt(int(f.Fd()), e.Name); err != nil {
				return nil, fmt.Errorf("reading the symlink /%s: %w", path.Join(rel, e.Name), err)
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// readlinkAt reads a symlink's target; image symlinks are short, and a
// longer one than PATH_MAX is no path the kernel would follow anyway.
func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// kernels lists the kernel versions of /lib/modules/<v> and /boot/vmlinuz-<v>.
func (img *image) kernels() ([]string, error) {
	set := map[string]bool{}
	mods, err := img.readDir("lib/modules")
	if err != nil {
		return nil, err
	}
	for _, e := range mods {
		if e.Type == fs.ModeDir {
			set[e.Name] = true
		}
	}
	boot, err := img.readDir("boot")
	if err != nil {
		return nil, err
	}
	for _, e := range boot {
		if v, ok := strings.CutPrefix(e.Name, "vmlinuz-"); ok && v != "" && e.Type == 0 {
			set[v] = true
		}
	}
	return sortedKeys(set), nil
}

// osRelease reads ID and VERSION_ID from /etc/os-release, or from
// /usr/lib/os-release when /etc has none (os-release(5)).
func (img *image) osRelease(st *Stack) error {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		b, err := img.readFile(p, maxSmall)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok {
				continue
			}
			switch k {
			case "ID":
				st.OSID = unquote(v)
			case "VERSION_ID":
				st.OSVersionID = unquote(v)
			}
		}
		return nil
	}
	return nil
}

// unquote undoes os-release's shell-style quoting of one value.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		q := v[0]
		v = v[1 : len(v)-1]
		if q == '"' {
			var b strings.Builder
			for i := 0; i < len(v); i++ {
				if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
					i++
				}
				b.WriteByte(v[i])
			}
			v = b.String()
		}
	}
	return v
}

func sortedKeys(set map[string]bool) []string {
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortPackages(p []Package) {
	sort.Slice(p, func(i, j int) bool {
		if p[i].Name != p[j].Name {
			return p[i].Name < p[j].Name
		}
		if p[i].Arch != p[j].Arch {
			return p[i].Arch < p[j].Arch
		}
		return p[i].Version < p[j].Version
	})
}
