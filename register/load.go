package register

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fgimg/fgimg/internal/outdir"
	"github.com/opencontainers/go-digest"
)

// Target is one built cloud target: its folder OUT/<target>/ and the
// register.json in it.
type Target struct {
	Dir  string
	File File
}

// manifest is the part of OUT/<target>/manifest.json register checks
// artifacts against.
type manifest struct {
	Target    string `json:"target"`
	Artifacts []struct {
		Path   string        `json:"path"`
		Digest digest.Digest `json:"digest"`
		Size   int64         `json:"size"`
	} `json:"artifacts"`
}

// Load reads OUT/<name>/register.json. A target that was never built
// gives an error saying to build it: register never builds (a build
// can take an hour and needs the sandbox; uploading what the user did
// not mean to build would be worse than stopping).
func Load(out, name string) (*Target, error) {
	dir := filepath.Join(out, name)
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("target %q is not built: there is no %s; run `fgimg build -only %s -o %s` first", name, filepath.Join(dir, FileName), name, out)
	}
	if err != nil {
		return nil, err
	}
	t := &Target{Dir: dir}
	if err := json.Unmarshal(b, &t.File); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, FileName), err)
	}
	if err := t.File.check(name); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, FileName), err)
	}
	return t, nil
}

// check rejects a register.json register cannot perform.
func (f *File) check(name string) error {
	if f.Version != FileVersion {
		return fmt.Errorf("format version %d; this fgimg reads version %d (rebuild the target)", f.Version, FileVersion)
	}
	if f.Target != name {
		return fmt.Errorf("is for target %q, not %q", f.Target, name)
	}
	if len(f.Steps) == 0 {
		return errors.New("has no steps")
	}
	seen := map[string]bool{}
	for _, s := range f.Steps {
		switch {
		case s.ID == "" || seen[s.ID]:
			return fmt.Errorf("step %q: missing or repeated id", s.ID)
		case !filepath.IsLocal(filepath.FromSlash(s.Artifact)):
			return fmt.Errorf("step %q: artifact %q is not a path inside the target's folder", s.ID, s.Artifact)
		case s.Digest.Validate() != nil:
			return fmt.Errorf("step %q: bad digest %q", s.ID, s.Digest)
		case s.Name == "":
			return fmt.Errorf("step %q: no image name", s.ID)
		}
		for prop, ref := range s.Refs {
			if !seen[ref] {
				return fmt.Errorf("step %q: %s refers to step %q, which does not come before it", s.ID, prop, ref)
			}
		}
		seen[s.ID] = true
	}
	return nil
}

// Memo remembers file digests by path and stat data (the cache's
// FileHashes), so an unchanged multi-GB artifact is not reread on every
// register.
type Memo interface {
	Get(path string, fi os.FileInfo) (digest.Digest, bool)
	Put(path string, fi os.FileInfo, d digest.Digest)
}

// Verify checks, before anything is uploaded, that every step's
// artifact is the file the build wrote: its size and sha256 match
// register.json and manifest.json (and register.json itself matches the
// manifest when listed there). memo may be nil.
func (t *Target) Verify(memo Memo) error {
	b, err := os.ReadFile(filepath.Join(t.Dir, outdir.ManifestName))
	if err != nil {
		return fmt.Errorf("target %q: %w", t.File.Target, err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(t.Dir, outdir.ManifestName), err)
	}
	listed := map[string]int{}
	for i, a := range m.Artifacts {
		listed[a.Path] = i
	}
	if i, ok := listed[FileName]; ok {
		if err := verifyFile(filepath.Join(t.Dir, FileName), m.Artifacts[i].Digest, m.Artifacts[i].Size, nil); err != nil {
			return err
		}
	}
	for _, s := range t.File.Steps {
		i, ok := listed[s.Artifact]
		if !ok {
			return fmt.Errorf("target %q: %s does not list %s, which step %q uploads", t.File.Target, outdir.ManifestName, s.Artifact, s.ID)
		}
		if a := m.Artifacts[i]; a.Digest != s.Digest || a.Size != s.Size {
			return fmt.Errorf("target %q: %s and %s disagree about %s (%s, %d bytes against %s, %d bytes); rebuild the target",
				t.File.Target, FileName, outdir.ManifestName, s.Artifact, s.Digest, s.Size, a.Digest, a.Size)
		}
		if err := verifyFile(t.path(s), s.Digest, s.Size, memo); err != nil {
			return err
		}
	}
	return nil
}

// path is where step s's artifact is.
func (t *Target) path(s Step) string {
	return filepath.Join(t.Dir, filepath.FromSlash(s.Artifact))
}

func verifyFile(path string, want digest.Digest, size int64, memo Memo) error {
	changed := func(what string) error {
		return fmt.Errorf("%s %s: it changed after the build, so fgimg will not upload it; rebuild it with `fgimg build`", path, what)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() != size {
		return changed(fmt.Sprintf("has %d bytes, not the %d it was built with", fi.Size(), size))
	}
	got, ok := digest.Digest(""), false
	if memo != nil {
		got, ok = memo.Get(path, fi)
	}
	if !ok {
		v := digest.SHA256.Digester()
		if _, err := io.Copy(v.Hash(), f); err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		got = v.Digest()
		if memo != nil {
			memo.Put(path, fi, got)
		}
	}
	if got != want {
		return changed(fmt.Sprintf("has digest %s, not the %s it was built with", got, want))
	}
	return nil
}
