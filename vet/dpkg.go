package vet

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"sync"
)

// dpkgFiles is what the dpkg database says of the files in the image:
// who owns each and the checksum each had when installed. Reading it and
// hashing in Go is dpkg --verify's (and debsums') check, done in the
// image's own database without running a program from the image.
type dpkgFiles struct {
	// owner maps a real path to the package that lists it.
	owner map[string]string
	sums  []fileSum
}

type fileSum struct {
	path, md5, pkg string
}

const dpkgInfo = "/var/lib/dpkg/info"

// readDpkgFiles reads the file lists, checksums and diversions; nil
// when the image has no dpkg database.
func readDpkgFiles(img *image) (*dpkgFiles, error) {
	if st, err := img.read("/var/lib/dpkg/status"); err != nil || st == nil {
		return nil, err
	}
	d := &dpkgFiles{owner: map[string]string{}}
	lists, err := img.glob(dpkgInfo, "*.list")
	if err != nil {
		return nil, err
	}
	for _, l := range lists {
		pkg := pkgOf(l, ".list")
		b, err := img.read(l)
		if err != nil {
			return nil, err
		}
		for _, p := range strings.Split(string(b), "\n") {
			if p != "" && p != "/." {
				if _, ok := d.owner[img.canon(p)]; !ok {
					d.owner[img.canon(p)] = pkg
				}
			}
		}
	}
	// A diversion moves a package's file aside (from → to) for another
	// package's: the moved file still belongs to the first, at "to".
	divert := map[string]string{}
	if b, err := img.read("/var/lib/dpkg/diversions"); err != nil {
		return nil, err
	} else if b != nil {
		ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		for i := 0; i+2 < len(ls); i += 3 {
			from, to, by := ls[i], ls[i+1], ls[i+2]
			divert[img.canon(from)] = to
			owner := d.owner[img.canon(from)]
			if owner == "" {
				owner = by
			}
			d.owner[img.canon(to)] = owner
		}
	}
	sums, err := img.glob(dpkgInfo, "*.md5sums")
	if err != nil {
		return nil, err
	}
	for _, s := range sums {
		pkg := pkgOf(s, ".md5sums")
		b, err := img.read(s)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			sum, p, ok := strings.Cut(l, "  ")
			if !ok || len(sum) != 32 {
				continue
			}
			real := img.canon("/" + strings.TrimPrefix(p, "/"))
			if to, ok := divert[real]; ok && d.owner[real] != pkg {
				real = img.canon(to)
			}
			d.sums = append(d.sums, fileSum{path: real, md5: sum, pkg: pkg})
		}
	}
	return d, nil
}

// pkgOf is the package a /var/lib/dpkg/info file is for, without its
// architecture.
func pkgOf(p, suffix string) string {
	name := strings.TrimSuffix(p[strings.LastIndexByte(p, '/')+1:], suffix)
	name, _, _ = strings.Cut(name, ":")
	return name
}

// verifyPackages hashes every packaged file, jobs at once, and notes
// those whose content differs from the package's checksum. A file the
// image lacks is not a finding (images drop documentation on purpose).
func (img *image) verifyPackages(jobs int) error {
	if img.pkgs == nil {
		return nil
	}
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	work := make(chan fileSum, 256)
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := md5.New()
			buf := make([]byte, 128<<10)
			for s := range work {
				differs, err := img.differs(s, h, buf)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if differs {
					img.modified[s.path] = s.pkg
				}
				mu.Unlock()
			}
		}()
	}
	for _, s := range img.pkgs.sums {
		work <- s
	}
	close(work)
	wg.Wait()
	return first
}

func (img *image) differs(s fileSum, h interface {
	io.Writer
	Sum([]byte) []byte
	Reset()
}, buf []byte) (bool, error) {
	f, err := img.open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		if errors.Is(err, errNotRegular) {
			return true, nil
		}
		return false, err
	}
	defer f.Close()
	h.Reset()
	if _, err := io.CopyBuffer(h, f, buf); err != nil {
		return false, fmt.Errorf("hashing %s: %w", s.path, err)
	}
	return hex.EncodeToString(h.Sum(nil)) != s.md5, nil
}

// packagedFiles reports the setuid and setgid files no package owns or
// whose content differs from the package's, and every other packaged
// file that differs.
func (img *image) packagedFiles() error {
	setuid := map[string]bool{}
	for _, w := range img.setuid {
		setuid[w.path] = true
		bits := "setuid"
		if w.mode&fs.ModeSetuid == 0 {
			bits = "setgid"
		} else if w.mode&fs.ModeSetgid != 0 {
			bits = "setuid and setgid"
		}
		switch pkg, owned := img.owner(w.path); {
		case !owned:
			img.add(Finding{ID: IDSetuidUnowned, Severity: High, Path: w.path,
				Detail: fmt.Sprintf("%s (%s) and no package owns it", bits, w.mode.Perm()|w.mode&(fs.ModeSetuid|fs.ModeSetgid)),
				Fix:    "install the program from a package, or drop the bit (a file block's mode without 4000/2000, or chmod u-s,g-s in run)"})
		case img.modified[w.path] != "":
			img.add(Finding{ID: IDSetuidModified, Severity: Critical, Path: w.path, Package: pkg,
				Detail: bits + " and its content differs from package " + pkg + "'s",
				Fix:    "do not overwrite packaged programs: remove the file block or run command that changes " + w.path + ", or reinstall " + pkg})
		}
	}
	for p, pkg := range img.modified {
		if setuid[p] {
			continue
		}
		sev := Medium
		if fi, err := img.stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			sev = High // a program
		}
		img.add(Finding{ID: IDModified, Severity: sev, Path: p, Package: pkg,
			Detail: "content differs from package " + pkg + "'s checksum (dpkg --verify)",
			Fix:    "do not overwrite packaged files: remove the file block or run command that changes " + p + " (configure through conffiles or a drop-in directory), or reinstall " + pkg})
	}
	return nil
}

// owner returns the package owning the real path p; without a dpkg
// database nothing is owned.
func (img *image) owner(p string) (string, bool) {
	if img.pkgs == nil {
		return "", false
	}
	pkg, ok := img.pkgs.owner[p]
	return pkg, ok
}
