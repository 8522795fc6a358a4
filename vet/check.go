package vet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
	"github.com/fgimg/fgimg/internal/swstack"
)

// Options tune Check.
type Options struct {
	// Stack is the image's software stack (the catalog's SBOM); nil
	// reads it from the root.
	Stack *swstack.Stack
	// Vulns is the vulnerability database to match the stack against;
	// nil matches none.
	Vulns *DB
	// Jobs hash packaged files at once; 0 is the number of CPUs.
	Jobs int
}

// Check runs every static check over the root filesystem at root (a
// mounted image, read-only) and returns the findings, sorted. The
// report's policy is not applied yet (Report.Apply).
func Check(root string, o Options) (*Report, error) {
	start := time.Now()
	img, err := openImage(root)
	if err != nil {
		return nil, err
	}
	defer img.r.Close()
	if o.Stack == nil {
		if o.Stack, err = swstack.Read(root); err != nil {
			return nil, err
		}
	}
	// Hashing the packaged files is the long part: it runs while the
	// tree is walked.
	verified := make(chan error, 1)
	go func() { verified <- img.verifyPackages(o.Jobs) }()
	walkErr := img.walk()
	if err := <-verified; err != nil {
		return nil, err
	}
	if walkErr != nil {
		return nil, walkErr
	}
	for _, c := range []func() error{img.accounts, img.sshd, img.machineID, img.repositories, img.packagedFiles} {
		if err := c(); err != nil {
			return nil, err
		}
	}
	if o.Vulns != nil {
		img.findings = append(img.findings, o.Vulns.Match(o.Stack)...)
	}
	r := &Report{Findings: img.findings}
	if o.Vulns != nil {
		r.VulnDB = o.Vulns.Digest
	}
	SortFindings(r.Findings)
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// SortFindings sorts findings: the most severe first, then by ID and place.
func SortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Package < b.Package
	})
}

// image is a root filesystem being vetted.
type image struct {
	dir string
	r   *rootpath.Root
	// links are the root's top-level directory symlinks (merged /usr:
	// "/bin" → "/usr/bin"), so that a package's "/bin/su" is found at
	// its real path.
	links map[string]string
	// pkgs is what the dpkg database says: nil when the image has none.
	pkgs *dpkgFiles
	// modified are packaged files whose content differs from dpkg's
	// checksum, by real path, with their package.
	modified map[string]string
	// setuid holds the setuid and setgid files the walk found.
	setuid   []walked
	findings []Finding
}

type walked struct {
	path string
	mode fs.FileMode
}

func openImage(root string) (*image, error) {
	r, err := rootpath.OpenRoot(root, rootpath.InRoot)
	if err != nil {
		return nil, err
	}
	img := &image{dir: root, r: r, links: map[string]string{}, modified: map[string]string{}}
	ents, err := os.ReadDir(root)
	if err != nil {
		r.Close()
		return nil, err
	}
	for _, e := range ents {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		t, err := os.Readlink(path.Join(root, e.Name()))
		if err != nil {
			continue
		}
		if fi, err := os.Stat(path.Join(root, path.Clean("/"+t))); err == nil && fi.IsDir() {
			img.links["/"+e.Name()] = path.Clean("/" + t)
		}
	}
	if img.pkgs, err = readDpkgFiles(img); err != nil {
		r.Close()
		return nil, err
	}
	return img, nil
}

// canon is the real path of an absolute path in the image, through the
// top-level directory symlinks.
func (img *image) canon(p string) string {
	first, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if t, ok := img.links["/"+first]; ok {
		if rest == "" {
			return t
		}
		return t + "/" + rest
	}
	return p
}

func (img *image) add(f Finding) { img.findings = append(img.findings, f) }

// open opens the image's regular file p (absolute in the image).
func (img *image) open(p string) (*os.File, error) {
	return img.r.OpenRegular(strings.TrimPrefix(p, "/"))
}

// errNotRegular is open's error (wrapped) for what is not a regular file.
var errNotRegular = rootpath.ErrNotRegular

// maxConfig bounds what vet reads of one configuration file or
// database.
const maxConfig = 64 << 20

// read returns the image's file p, or nil and no error when it has none
// (or it is not a regular file).
func (img *image) read(p string) ([]byte, error) {
	f, err := img.open(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotRegular) || errors.Is(err, unix.ELOOP) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("%s is larger than the %d bytes vet reads", p, maxConfig)
	}
	return b, nil
}

// glob lists the image's entries in directory dir whose names match
// pattern, as absolute paths, sorted.
func (img *image) glob(dir, pattern string) ([]string, error) {
	host, err := rootpath.Join(img.dir, dir, rootpath.InRoot)
	if err != nil {
		return nil, nil
	}
	ents, err := os.ReadDir(host)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if ok, _ := path.Match(pattern, e.Name()); ok {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out, nil
}

func digestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// lines splits b into trimmed lines without comments (#) or blanks.
func lines(b []byte) []string {
	var out []string
	for _, l := range bytes.Split(b, []byte("\n")) {
		s := strings.TrimSpace(string(l))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		out = append(out, s)
	}
	return out
}
