// Package outdir writes targets' folders into the output directory (-o
// OUT) without touching what fgimg did not write.
//
// OUT is often a directory the user keeps other things in (their home,
// a project), and a target's name is whatever the template says, so
// OUT/<target> may be anything. Replace overwrites OUT/<target> only when
// its manifest.json shows that fgimg wrote it and it holds nothing else,
// swaps the new folder in atomically (it is never missing or half
// written), and serialises writers of one OUT with a lock, so concurrent
// builds into one OUT each leave a complete folder. Outside refuses an
// OUT that lies inside the cache, whose files a target could overwrite.
package outdir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ManifestName is the file every folder fgimg writes holds; it lists the
// folder's other files.
const ManifestName = "manifest.json"

// RegistrationsName is the file `fgimg register` adds to a target's
// folder: where its images are registered. A folder holding it besides
// what its manifest lists is still fgimg's.
const RegistrationsName = "registrations.json"

// manifest is the part of a target's manifest.json that shows what
// fgimg wrote: the target's name and its artifacts' paths.
type manifest struct {
	Target    string `json:"target"`
	Artifacts []struct {
		Path string `json:"path"`
	} `json:"artifacts"`
}

// Outside returns an error when out is cache or lies inside it, after
// symlinks: a target named "blobs" would otherwise replace the cache's
// blobs.
func Outside(out, cache string) error {
	o, err := resolve(out)
	if err != nil {
		return err
	}
	c, err := resolve(cache)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(c, o); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("the output directory %s lies inside the cache %s; choose one outside it (-o)", out, cache)
	}
	return nil
}

// resolve makes p absolute and resolves the symlinks of its longest
// existing prefix (p itself may not exist yet).
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(r, rest), nil
		}
		if dir == filepath.Dir(dir) {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// Replace makes out/name a folder holding what fill writes into the
// empty directory it is given. It holds out's lock throughout; it
// refuses, naming the path, an out/name that fgimg did not write (see
// Owned); and it swaps the finished folder in with one rename, so that
// out/name is at every moment either the old folder or the new one.
func Replace(out, name string, fill func(dir string) error) (err error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, filepath.Separator) {
		return fmt.Errorf("%q cannot name a folder in %s", name, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	unlock, err := lock(out)
	if err != nil {
		return err
	}
	defer unlock()
	dst := filepath.Join(out, name)
	exists, err := Owned(dst, name)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(out, "."+name+".fgimg-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if !exists {
		if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("writing %s: %w", dst, err)
		}
		return nil
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("replacing %s: %w", dst, err)
	}
	return os.RemoveAll(tmp) // now the old folder
}

// Owned reports whether dir exists, and returns an error naming the path
// unless it is absent or a folder that fgimg wrote for target name: a
// directory whose manifest.json names the target and lists every other
// file in it. fgimg replaces only such folders.
func Owned(dir, name string) (exists bool, err error) {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	refuse := func(why string) error {
		return fmt.Errorf("%s %s, so fgimg did not write it and will not replace it; move it away or choose another output directory (-o)", dir, why)
	}
	if !fi.IsDir() {
		return true, refuse("exists and is not a directory")
	}
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return true, refuse("has no " + ManifestName)
	}
	if err != nil {
		return true, err
	}
	var m manifest
	if json.Unmarshal(b, &m) != nil || m.Target != name {
		return true, refuse("has a " + ManifestName + " that is not fgimg's for target " + name)
	}
	listed := map[string]bool{ManifestName: true, RegistrationsName: true}
	for _, a := range m.Artifacts {
		listed[filepath.FromSlash(a.Path)] = true
	}
	return true, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() || listed[rel] {
			return nil
		}
		return fmt.Errorf("%s holds %s, which its %s does not list, so fgimg did not write it and will not replace the folder; move it away or choose another output directory (-o)", dir, rel, ManifestName)
	})
}

// lock takes an exclusive flock on the directory out itself: writers of
// one OUT, in this process or others, take turns, and nothing is added
// to the user's directory for it. The lock dies with the process.
func lock(out string) (unlock func(), err error) {
	f, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", out, err)
	}
	return func() { f.Close() }, nil
}
