// Package catalog is fgimg's image repository: a record of every image
// and target a build made or exported, the usage of each, and an SQLite
// index over them that `fgimg images`, `show` and `purge` query.
//
// The records are the source of truth, files in the cache directory
// written atomically; the index can always be rebuilt from them:
//
//	catalog/entries/<hex>-<name>.json  one Entry per image or target build
//	catalog/usage/<hex>-<name>.log     its usage events, one JSON line each
//	catalog/keep/<hex>-<name>          present: the entry is never purged
//	catalog/stacks/<hex>.json          the software stack of image <hex>
//	catalog/pending.log                what builds recorded since the index last read it
//	catalog/index.db                   the SQLite index (WAL mode)
package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/opencontainers/go-digest"
)

// Entry types.
const (
	TypeImage  = "image"
	TypeTarget = "target"
)

// Entry statuses.
const (
	StatusBuilt  = "built"
	StatusPurged = "purged"
	// StatusRegenerated: `fgimg regenerate` rebuilt the entry and every
	// stage digest and artifact digest equalled the recorded ones.
	StatusRegenerated = "regenerated, verified"
)

// Entry is the record of one build of one image or target.
type Entry struct {
	// ID is the image's last stage digest, or the target write's digest.
	ID   digest.Digest `json:"id"`
	Name string        `json:"name"`
	Type string        `json:"type"` // image or target
	// The image's catalog metadata (lang.Metadata); a target has its image's.
	Owner       string   `json:"owner"`
	OS          string   `json:"os"`
	Arch        string   `json:"arch,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags"`
	Permission  string   `json:"permission"`
	// Kind is the "vm type": "image" for an image, the target kind
	// (tar, oci, raw, qcow2, netboot, ...) for a target.
	Kind string `json:"kind"`
	// Aim is the infrastructure a target is for: see Aim.
	Aim    string `json:"aim,omitempty"`
	Status string `json:"status"`
	// Locations are where the artifacts are: OUT/<target> and what
	// registrations.json lists.
	Locations []string  `json:"locations,omitempty"`
	Created   time.Time `json:"created"`
	// Size is the bytes of the entry's stored layers (image) or artifacts (target).
	Size int64 `json:"size"`
	// Image and ImageID are a target's image.
	Image   string        `json:"image,omitempty"`
	ImageID digest.Digest `json:"image_id,omitempty"`
	// Pedigree names the image's ancestors and itself, root first.
	Pedigree []string `json:"pedigree"`
	// Stages are every stage the entry stands on, origin first (a
	// target's write last).
	Stages    []Stage    `json:"stages"`
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Templates are the template files of the configuration built.
	Templates []Template `json:"templates,omitempty"`
	// Vars are the -var and -var-file arguments of the build, in order
	// (regenerate gives them again); Variables the value every declared
	// variable ended with, as JSON (diff names those that differ).
	Vars      []Var                      `json:"vars,omitempty"`
	Variables map[string]json.RawMessage `json:"variables,omitempty"`
	Git       *Git                       `json:"git,omitempty"`
	// Version is fgimg's version.
	Version         string `json:"fgimg_version"`
	SourceDateEpoch *int64 `json:"source_date_epoch,omitempty"`
	// Stack is the image's software stack; nil with StackError when it
	// could not be read ("unknown").
	Stack      *swstack.Stack `json:"software_stack,omitempty"`
	StackError string         `json:"software_stack_error,omitempty"`
	// Registrations is OUT/<target>/registrations.json, when present.
	Registrations json.RawMessage `json:"registrations,omitempty"`
	// Purged is when purge removed the entry's stored bytes.
	Purged *time.Time `json:"purged,omitempty"`
}

// Stage is one stage an entry stands on.
type Stage struct {
	Digest digest.Digest   `json:"digest"`
	Kind   string          `json:"kind"`
	Inputs []digest.Digest `json:"inputs,omitempty"`
	// Size is the bytes of its stored outputs.
	Size int64 `json:"size"`
	// Outputs are the digests of its stored outputs (a layer, or a
	// target's artifacts): what regenerate verifies an image by.
	Outputs []digest.Digest `json:"outputs,omitempty"`
	// Spec is its canonical spec (planner.SpecJSON), what its digest
	// covers: diff names the fields in which two builds' stages differ.
	Spec json.RawMessage `json:"spec,omitempty"`
}

// Var is one -var NAME=VALUE or -var-file FILE argument of a build.
type Var struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
	File  string `json:"file,omitempty"` // absolute
}

// Artifact is one of a target's artifacts.
type Artifact struct {
	Path      string        `json:"path"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"media_type,omitempty"`
}

// Template is one template file and its content digest.
type Template struct {
	Path   string        `json:"path"`
	Digest digest.Digest `json:"digest"`
}

// Git is the git commit that held the templates.
type Git struct {
	Root   string `json:"root"`
	Commit string `json:"commit"`
	// Dirty: a template differs from the commit (or is not in it).
	Dirty bool `json:"dirty"`
}

// Vetted is the digest vetting checks and approvals are kept under: an
// image's own, a target's root filesystem (its write's input).
func (e *Entry) Vetted() digest.Digest {
	if e.Type == "target" && len(e.Stages) > 0 {
		if in := e.Stages[len(e.Stages)-1].Inputs; len(in) > 0 {
			return in[0]
		}
	}
	return e.ID
}

// Key identifies an entry: its digest's hex and its name.
func (e *Entry) Key() string { return key(e.ID, e.Name) }

func key(id digest.Digest, name string) string { return id.Encoded() + "-" + name }

// Aim says what infrastructure a target kind is for: a cloud kind names
// its cloud, disks are for VMs, netboot for bare metal, tar and oci for
// containers.
func Aim(kind string) string {
	switch kind {
	case "raw", "qcow2", "disk":
		return "vm"
	case "netboot":
		return "baremetal"
	case "tar", "oci":
		return "container"
	}
	return kind
}

// names are image and target names as lang allows them; they become
// file names, so nothing else is accepted.
var validName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// Files is the catalog's directory of record files.
type Files struct {
	store *cache.Store
	dir   string
}

// NewFiles returns the record files of the catalog in store.
func NewFiles(store *cache.Store) (*Files, error) {
	f := &Files{store: store, dir: filepath.Join(store.Dir(), "catalog")}
	for _, sub := range []string{"entries", "usage", "keep", "stacks"} {
		if err := os.MkdirAll(filepath.Join(f.dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
	}
	return f, nil
}

// Dir is the catalog's directory.
func (f *Files) Dir() string { return f.dir }

func (f *Files) entryPath(k string) string { return filepath.Join(f.dir, "entries", k+".json") }
func (f *Files) usagePath(k string) string { return filepath.Join(f.dir, "usage", k+".log") }
func (f *Files) keepPath(k string) string  { return filepath.Join(f.dir, "keep", k) }

// Exists reports whether the record of entry (id, name) exists.
func (f *Files) Exists(id digest.Digest, name string) bool { return f.has(key(id, name)) }

func (f *Files) has(k string) bool {
	_, err := os.Stat(f.entryPath(k))
	return err == nil
}

// Put writes e's record, atomically.
func (f *Files) Put(e *Entry) error {
	if err := id(e.ID); err != nil {
		return err
	}
	if !validName.MatchString(e.Name) {
		return fmt.Errorf("catalog: invalid name %q", e.Name)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	if err := f.store.WriteFile(f.entryPath(e.Key()), append(b, '\n')); err != nil {
		return fmt.Errorf("catalog: writing %s: %w", e.Key(), err)
	}
	return nil
}

func id(d digest.Digest) error {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("catalog: invalid id %q", d)
	}
	return nil
}

// Get reads the record of entry key k.
func (f *Files) Get(k string) (*Entry, error) {
	b, err := os.ReadFile(f.entryPath(k))
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", f.entryPath(k), err)
	}
	if e.Key() != k {
		return nil, fmt.Errorf("catalog: %s holds entry %s", f.entryPath(k), e.Key())
	}
	return &e, nil
}

// Keys lists the keys of every record.
func (f *Files) Keys() ([]string, error) {
	des, err := os.ReadDir(filepath.Join(f.dir, "entries"))
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var keys []string
	for _, de := range des {
		if k, ok := strings.CutSuffix(de.Name(), ".json"); ok {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Event is one use of an entry.
type Event struct {
	Who  string    `json:"who"`
	When time.Time `json:"when"`
	// What: build export, boot, register or fetch.
	What string `json:"what"`
}

// Usage kinds.
const (
	UseExport   = "export"
	UseBoot     = "boot"
	UseRegister = "register"
	UseFetch    = "fetch"
)

// appendUsage appends ev to k's usage log in one write, so that a crash
// leaves at most a torn last line, which readUsage skips.
func (f *Files) appendUsage(k string, ev Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	w, err := os.OpenFile(f.usagePath(k), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// readUsage reads k's usage log; a torn or garbled line is skipped.
func (f *Files) readUsage(k string) ([]Event, error) {
	b, err := os.ReadFile(f.usagePath(k))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var evs []Event
	for _, line := range strings.Split(string(b), "\n") {
		var ev Event
		if line == "" || json.Unmarshal([]byte(line), &ev) != nil || ev.When.IsZero() {
			continue
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// setKeep marks or unmarks k as kept.
func (f *Files) setKeep(k string, keep bool) error {
	if !keep {
		if err := os.Remove(f.keepPath(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return f.store.WriteFile(f.keepPath(k), nil)
}

func (f *Files) kept(k string) bool {
	_, err := os.Stat(f.keepPath(k))
	return err == nil
}
