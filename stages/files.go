package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/fgimg/fgimg/internal/fsat"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// runFiles writes the entries in spec order, parents first.
//
// Paths are resolved as the image sees them (see root): an absolute
// symlink on the way leads to its target inside the image, one climbing
// above the root is an error. An existing file or symlink at an entry's
// path is replaced, never written through; an existing directory is kept
// (its mode and owner set), and so is a symlink to a directory inside the
// image when the entry is a directory, so that a tree placed over "/lib"
// of a merged-/usr image lands in /usr/lib.
func runFiles(ctx context.Context, s *Files, env *Env) error {
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	defer r.close()
	ids, err := loadIDs(r)
	if err != nil {
		return err
	}
	for _, e := range s.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeEntry(r, ids, e); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		fmt.Fprintf(env.Log, "fgimg: wrote %s %s (%04o %s:%s)\n", e.Type, e.Path, e.Mode&0o7777, e.Owner, e.Group)
		if e.Path == "/etc/passwd" || e.Path == "/etc/group" {
			// Later entries may be owned by the accounts it brings.
			if ids, err = loadIDs(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeEntry(r *root, ids *idDB, e FileEntry) error {
	rel, err := relPath(e.Path)
	if err != nil {
		return err
	}
	uid, err := ids.uid(e.Owner)
	if err != nil {
		return err
	}
	gid, err := ids.gid(e.Group)
	if err != nil {
		return err
	}
	switch e.Type {
	case TypeDir:
		return writeDir(r, rel, e.Mode, uid, gid)
	case TypeFile:
		dirfd, name, err := r.resolve(rel, true, false)
		if err != nil {
			return err
		}
		defer unix.Close(dirfd)
		return replaceFile(dirfd, name, func(f *os.File) error { return fillFile(f, e) }, e.Mode, uid, gid)
	case TypeSymlink:
		if e.Target == "" {
			return errors.New("symlink without a target")
		}
		dirfd, name, err := r.resolve(rel, true, false)
		if err != nil {
			return err
		}
		defer unix.Close(dirfd)
		return replaceSymlink(dirfd, name, e.Target, uid, gid)
	}
	return fmt.Errorf("unknown file type %q", e.Type)
}

// fillFile writes an entry's content, from Content or streamed from the
// host file Source, checking it against the planned digest.
func fillFile(f *os.File, e FileEntry) error {
	var src io.Reader
	switch {
	case e.Source != "" && e.Content == nil:
		in, err := fsat.OpenRegular(e.Source)
		if err != nil {
			return err
		}
		defer in.Close()
		src = in
	default:
		src = strings.NewReader(string(e.Content))
	}
	var v digest.Verifier
	if e.Digest != "" && e.Digest.Validate() == nil {
		v = e.Digest.Verifier()
		src = io.TeeReader(src, v)
	}
	if _, err := io.Copy(f, src); err != nil {
		return err
	}
	if v != nil && !v.Verified() {
		what := "its content"
		if e.Source != "" {
			what = "source " + e.Source
		}
		return fmt.Errorf("%s changed since the plan was made (its digest is no longer %s); plan again", what, e.Digest)
	}
	return nil
}

// writeDir makes rel a directory with mode and owner. An existing
// directory is kept; so is a symlink that leads to one inside the image.
func writeDir(r *root, rel string, mode uint32, uid, gid int) error {
	dirfd, name, err := r.resolve(rel, true, false)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	var st unix.Stat_t
	err = unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == unix.ENOENT:
		return mkdirOwned(dirfd, name, mode, uid, gid)
	case err != nil:
		return err
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		tfd, tname, err := r.resolve(rel, false, true)
		if err == nil {
			defer unix.Close(tfd)
			var tst unix.Stat_t
			if unix.Fstatat(tfd, tname, &tst, unix.AT_SYMLINK_NOFOLLOW) == nil && tst.Mode&unix.S_IFMT == unix.S_IFDIR {
				dirfd, name = tfd, tname
				break
			}
		}
		// A dangling symlink, or one to something else: replace it.
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return err
		}
		return mkdirOwned(dirfd, name, mode, uid, gid)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return err
		}
		return mkdirOwned(dirfd, name, mode, uid, gid)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return setOwnerMode(fd, uid, gid, mode)
}

// replaceSymlink creates the symlink next to name and renames it over.
func replaceSymlink(dirfd int, name, target string, uid, gid int) error {
	if name == "." {
		return errors.New("is the root directory")
	}
	if err := refuseDir(dirfd, name); err != nil {
		return err
	}
	for i := 0; ; i++ {
		tmp := tempName(name, i)
		err := unix.Symlinkat(target, dirfd, tmp)
		if err == unix.EEXIST && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Fchownat(dirfd, tmp, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			err = unix.Renameat(dirfd, tmp, dirfd, name)
			if err == nil {
				return nil
			}
		}
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
}

// idDB holds the image's own users and groups, by name.
type idDB struct {
	users  map[string]passwdEntry
	groups map[string]groupEntry
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
	shell    string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// loadIDs reads /etc/passwd and /etc/group of the image (missing files
// read as empty).
func loadIDs(r *root) (*idDB, error) {
	db := &idDB{users: map[string]passwdEntry{}, groups: map[string]groupEntry{}}
	b, err := r.readFile("/etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("reading the image's /etc/passwd: %w", err)
	}
	for _, f := range dbLines(b) {
		if len(f) < 7 {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			continue
		}
		if _, dup := db.users[f[0]]; !dup {
			db.users[f[0]] = passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5], shell: f[6]}
		}
	}
	b, err = r.readFile("/etc/group")
	if err != nil {
		return nil, fmt.Errorf("reading the image's /etc/group: %w", err)
	}
	for _, f := range dbLines(b) {
		if len(f) < 4 {
			continue
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		var members []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		if _, dup := db.groups[f[0]]; !dup {
			db.groups[f[0]] = groupEntry{name: f[0], gid: gid, members: members}
		}
	}
	return db, nil
}

// dbLines splits a colon-separated database into fields, skipping
// comments, blank lines and NIS "+"/"-" entries.
func dbLines(b []byte) [][]string {
	var out [][]string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == '+' || l[0] == '-' {
			continue
		}
		out = append(out, strings.Split(l, ":"))
	}
	return out
}

// numericID parses a user or group given as a number.
func numericID(s string) (int, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, false
	}
	return int(n), true
}

// uid resolves an owner: a number as is, a name against the image's
// /etc/passwd ("root" is 0 even without one).
func (db *idDB) uid(owner string) (int, error) {
	if n, ok := numericID(owner); ok {
		return n, nil
	}
	if u, ok := db.users[owner]; ok {
		return u.uid, nil
	}
	if owner == "root" || owner == "" {
		return 0, nil
	}
	return 0, fmt.Errorf("owner %q is not a user of the image (not in its /etc/passwd); files are placed before the image's own users are created, so give a number or create the user in a parent image", owner)
}

// gid resolves a group like uid does, against /etc/group.
func (db *idDB) gid(group string) (int, error) {
	if n, ok := numericID(group); ok {
		return n, nil
	}
	if g, ok := db.groups[group]; ok {
		return g.gid, nil
	}
	if group == "root" || group == "" {
		return 0, nil
	}
	return 0, fmt.Errorf("group %q is not a group of the image (not in its /etc/group); files are placed before the image's own users and groups are created, so give a number or create the group in a parent image", group)
}
