package stages

import (
	"encoding/json"

	"github.com/opencontainers/go-digest"
)

// Spec is the hashed part of a stage: the canonical parameters that
// decide its output. Fields tagged `json:"-"` say where to find inputs
// (host paths) and are not hashed: their content is, through digests.
type Spec interface {
	// Kind names the stage kind, such as "packages".
	Kind() string
}

// formatVersion is hashed into every digest; bump it when the meaning of
// a spec changes so that old cache entries stop matching.
const formatVersion = 1

// kindVersions is hashed into the digests of one kind of stage; bump a
// kind's entry when what its code writes changes for the same spec, so
// that its old cache entries stop matching and no other kind's do.
//
// 2: the stages that install packages (bootstrap, packages, cloud-init)
// remove the logs and caches that record the build's time, and set the
// Java keystore's times (scrubBuildTraces).
var kindVersions = map[string]int{"bootstrap": 2, "packages": 2, "cloud-init": 2}

// Digest identifies a stage: its kind, canonical spec and the digest of
// the stage below it ("" for an origin).
func Digest(s Spec, input digest.Digest) digest.Digest {
	b, err := json.Marshal(struct {
		Format int           `json:"fgimg"`
		Kind   string        `json:"kind"`
		Code   int           `json:"code,omitempty"`
		Input  digest.Digest `json:"input,omitempty"`
		Spec   Spec          `json:"spec"`
	}{formatVersion, s.Kind(), kindVersions[s.Kind()], input, s})
	if err != nil {
		panic("stages: spec does not marshal: " + err.Error()) // specs are plain data
	}
	return digest.FromBytes(b)
}

// Bootstrap builds a root filesystem from scratch.
type Bootstrap struct {
	Tool       string        `json:"tool"` // debootstrap, mmdebstrap or tar
	Suite      string        `json:"suite,omitempty"`
	Mirror     string        `json:"mirror,omitempty"`
	Variant    string        `json:"variant,omitempty"`
	Components []string      `json:"components,omitempty"`
	Include    []string      `json:"include,omitempty"` // sorted
	Arch       string        `json:"arch"`
	Source     digest.Digest `json:"source,omitempty"` // tar: the tarball's content
	SourcePath string        `json:"-"`
}

// From pulls an OCI image.
type From struct {
	Ref  string `json:"ref"`
	Arch string `json:"arch"`
	// Local is the content digest of a local image's index or archive,
	// so that a changed local image changes the stage.
	Local digest.Digest `json:"local,omitempty"`
}

// Packages installs packages with the image's own package manager.
type Packages struct {
	Names []string `json:"names"` // sorted, without duplicates
}

// Files places files, directories and symlinks.
type Files struct {
	Entries []FileEntry `json:"entries"` // sorted by path: parents first
}

// File entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// FileEntry is one path written by a files stage.
type FileEntry struct {
	Path   string        `json:"path"`
	Type   string        `json:"type"`
	Mode   uint32        `json:"mode"`
	Owner  string        `json:"owner"`
	Group  string        `json:"group"`
	Digest digest.Digest `json:"digest,omitempty"` // a file's content
	Target string        `json:"target,omitempty"` // a symlink's target
	// Where the content comes from: a host path, or inline content.
	Source  string `json:"-"`
	Content []byte `json:"-"`
}

// Users creates accounts, in name order.
type Users struct {
	Users []User `json:"users"`
}

// User is one account.
type User struct {
	Name              string   `json:"name"`
	UID               *int64   `json:"uid,omitempty"`
	Groups            []string `json:"groups,omitempty"` // sorted
	Shell             string   `json:"shell,omitempty"`
	Home              string   `json:"home,omitempty"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
}

// Services enables and disables systemd units, in unit order.
type Services struct {
	Units []Unit `json:"units"`
}

// Unit is one systemd unit's boot state.
type Unit struct {
	Name    string `json:"name"`
	Enabled bool   `json:"enabled"`
}

// Script runs shell commands in order: the image's run phase.
type Script struct {
	Commands []string `json:"commands"`
	// Network gives the commands outbound network access; without it
	// they have only a loopback interface of their own.
	Network bool `json:"network,omitempty"`
}

func (*Bootstrap) Kind() string { return "bootstrap" }
func (*From) Kind() string      { return "from" }
func (*Packages) Kind() string  { return "packages" }
func (*Files) Kind() string     { return "files" }
func (*Users) Kind() string     { return "users" }
func (*Services) Kind() string  { return "services" }
func (*Script) Kind() string    { return "run" }
