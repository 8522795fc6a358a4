package lang

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Config is one evaluated configuration: every template file of a
// directory (or the files named on the command line) read together.
type Config struct {
	// Dir is the configuration's directory (of the first file when
	// files were named).
	Dir string
	// Files holds every parsed file, templates and variable files alike,
	// for printing diagnostics with source snippets.
	Files map[string]*hcl.File

	Variables []*Variable
	Images    []*Image // in declaration order
	Targets   []*Target

	images map[string]*Image
}

// Image returns the image named name, or nil.
func (c *Config) Image(name string) *Image { return c.images[name] }

// Variable is a declared input value and the value it ended with.
type Variable struct {
	Name        string
	Description string
	Type        cty.Type
	Value       cty.Value
	DeclRange   hcl.Range
}

// Image is one evaluated image block. Exactly one of Parent, From and
// Bootstrap is set.
type Image struct {
	Name      string
	DeclRange hcl.Range
	// Dir is the directory of the file that declares the image.
	Dir string

	Parent    *Image
	From      string // a containers/image reference; local paths made absolute
	Bootstrap *Bootstrap

	Meta Metadata // after inheritance

	Packages []string
	Files    []*File
	Users    []*User
	Services []*Service
	Run      []string
	// Network gives the image's run commands outbound network access
	// (packages always have it); not inherited.
	Network bool
}

// Pedigree returns the image's ancestors and itself, root first.
func (im *Image) Pedigree() []*Image {
	var chain []*Image
	for p := im; p != nil; p = p.Parent {
		chain = append(chain, p)
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain
}

// Metadata is an image's catalog metadata. None of it changes a stage
// digest except Arch, which selects what a bootstrap or pull fetches.
type Metadata struct {
	Description string            `json:"description"`
	OS          string            `json:"os"`
	Arch        string            `json:"arch"`
	Tags        []string          `json:"tags"`
	Owner       string            `json:"owner"`
	Permission  string            `json:"permission"`
	Labels      map[string]string `json:"labels"`
}

// Bootstrap builds a root filesystem from scratch.
type Bootstrap struct {
	Tool       string // debootstrap, mmdebstrap or tar
	Suite      string
	Mirror     string
	Variant    string
	Components []string
	Include    []string
	Source     string // tar: absolute path of the rootfs tarball
	DeclRange  hcl.Range
}

// File is a file or directory placed into the image.
type File struct {
	Path      string  // absolute path in the image
	Content   *string // exactly one of Content and Source
	Source    string  // absolute path on the build host
	Mode      *uint32 // nil: 0644 for files, 0755 for directories
	Owner     string  // name or number, resolved in the image; "" is root
	Group     string
	DeclRange hcl.Range
}

// User is an account created in the image.
type User struct {
	Name              string
	UID               *int64
	Groups            []string
	Shell             string
	Home              string
	SSHAuthorizedKeys []string
	DeclRange         hcl.Range
}

// Service is a systemd unit enabled or disabled at boot.
type Service struct {
	Unit      string // with its suffix: "ssh" becomes "ssh.service"
	Enabled   bool
	DeclRange hcl.Range
}

// Target is an artifact built from an image. Its attributes are those
// of its kind's TargetSchema, evaluated and checked: lang knows no kind
// of its own.
type Target struct {
	Kind      string
	Name      string
	Image     *Image
	DeclRange hcl.Range
	// Attrs holds every attribute of the kind's schema but image: the
	// template's value converted to the attribute's type, else its
	// default, else a null of its type.
	Attrs map[string]cty.Value
	// Ranges holds the expression range of each attribute the template
	// sets, for diagnostics found later.
	Ranges map[string]hcl.Range
	// Vet is the target's vet block, nil without one.
	Vet *Vet
}

// Vet is a target's vet block: how vetting the target's image is
// stricter (or, for a cloud without the operator's policy, looser) than
// its kind's default. It is not part of the target's digest.
type Vet struct {
	// Block is the lowest severity that blocks ("" keeps the default).
	Block     string
	BlockIDs  []string // nil keeps the default
	Allow     []string // nil keeps the default
	Boot      *bool
	DeclRange hcl.Range
}

// VetSeverities are the values of a vet block's block attribute.
var VetSeverities = []string{"info", "low", "medium", "high", "critical", "none"}

// Str returns a string attribute, "" when null.
func (t *Target) Str(name string) string {
	v := t.Attrs[name]
	if v == cty.NilVal || v.IsNull() || !v.Type().Equals(cty.String) {
		return ""
	}
	return v.AsString()
}

// Bool returns a bool attribute, false when null.
func (t *Target) Bool(name string) bool {
	v := t.Attrs[name]
	if v == cty.NilVal || v.IsNull() || !v.Type().Equals(cty.Bool) {
		return false
	}
	return v.True()
}

// StrMap returns a map-of-strings attribute, nil when null or empty.
func (t *Target) StrMap(name string) map[string]string {
	v := t.Attrs[name]
	if v == cty.NilVal || v.IsNull() || !v.Type().IsMapType() || v.LengthInt() == 0 {
		return nil
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		out[k] = e.AsString()
	}
	return out
}

// Strs returns a list-of-strings attribute, nil when null or empty.
func (t *Target) Strs(name string) []string {
	v := t.Attrs[name]
	if v == cty.NilVal || v.IsNull() || !v.CanIterateElements() {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}
