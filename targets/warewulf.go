package targets

import (
	"context"
	"fmt"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/baremetal"
)

// Warewulf is the warewulf kind: an image for Warewulf v4, which boots
// stateless nodes from images it builds out of a chroot directory. The
// image carries its own kernel (Warewulf 4.6 takes the image's); Warewulf's
// overlays configure the node (network, fstab), so the image is written as
// it is: rootfs.tar[.gz|.zst], the root filesystem (the tar kind's), with
// register.json and register.sh. fgimg register unpacks it into a chroot
// directory, marks it with /etc/fgimg-release (the tarball's digest,
// target and image: Warewulf keeps no digest of its own) and runs
// `wwctl image import DIR NAME`, `wwctl image build NAME` and, when asked,
// `wwctl profile set --image NAME PROFILE`.
type Warewulf struct{}

// WarewulfSpec is a warewulf target's hashed spec.
type WarewulfSpec struct {
	// Name is the Warewulf image's name; Target and Image the target's
	// and the fgimg image's.
	Name        string `json:"name"`
	Target      string `json:"target"`
	Image       string `json:"image"`
	Compression string `json:"compression"`
	// Profile is the Warewulf profile whose image register sets; empty:
	// none.
	Profile string `json:"profile,omitempty"`
	Replace bool   `json:"replace,omitempty"`
}

// Kind implements Spec.
func (*WarewulfSpec) Kind() string { return "warewulf" }

// Summary implements Spec.
func (s *WarewulfSpec) Summary() string {
	sum := fmt.Sprintf("image %q, %s", s.Name, s.Compression)
	if s.Profile != "" {
		sum += ", profile " + s.Profile
	}
	return sum
}

// Name implements Kind.
func (Warewulf) Name() string { return "warewulf" }

// Schema implements Kind.
func (Warewulf) Schema() *lang.TargetSchema {
	return &lang.TargetSchema{Attributes: []lang.TargetAttribute{
		{Name: "name", Type: cty.String, Validate: validateBareMetalName,
			Doc: "the Warewulf image's name; default: the target's name"},
		compressionAttr("the root filesystem tarball's compression"),
		{Name: "profile", Type: cty.String, Validate: validateBareMetalName,
			Doc: "the Warewulf profile that boots the image (wwctl profile set --image); default: none"},
		{Name: "replace", Type: cty.Bool, Default: cty.False,
			Doc: "delete the older images fgimg registered for this target once the new one is built"},
	}}
}

// Spec implements Kind.
func (Warewulf) Spec(t *lang.Target) Spec {
	s := &WarewulfSpec{Name: t.Str("name"), Target: t.Name, Image: t.Image.Name, Compression: t.Str("compression"),
		Profile: t.Str("profile"), Replace: t.Bool("replace")}
	if s.Name == "" {
		s.Name = t.Name
	}
	return s
}

// Boot implements Kind: Warewulf builds the node's image at register
// time, from the root filesystem the artifact holds: the node boots the
// image's kernel with the whole image as its initramfs, as a netboot of
// the image would (Root).
func (Warewulf) Boot(Spec) (*Boot, error) {
	return &Boot{Root: true, Firmware: FirmwareAny}, nil
}

// Write implements Kind.
func (Warewulf) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	arts, err := writeWarewulf(ctx, in, sp, dir)
	if err != nil {
		return nil, fmt.Errorf("warewulf target: %w", err)
	}
	return arts, nil
}

func writeWarewulf(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*WarewulfSpec](sp, "warewulf")
	if err != nil {
		return nil, err
	}
	if in.Root != "" { // Warewulf 4.6 boots the image's own kernel
		if _, err := imageKernel(in); err != nil {
			return nil, err
		}
	}
	arts, err := Tar{}.Write(ctx, in, &TarSpec{Compression: spec.Compression}, dir)
	if err != nil {
		return nil, err
	}
	a, err := measure(dir, arts[0])
	if err != nil {
		return nil, err
	}
	mark := baremetal.Mark{Digest: a.digest, Target: spec.Target, Image: spec.Image, Step: "image", Name: spec.Name}
	step := register.Step{
		ID: "image", Artifact: a.Path, Digest: a.digest, Size: a.size, Name: spec.Name,
		Format: strings.TrimPrefix(a.Path, "rootfs."), Properties: mark.Properties(),
	}
	if spec.Profile != "" {
		step.Options = map[string]string{"profile": spec.Profile}
	}
	f := register.File{Version: register.FileVersion, Target: spec.Target, Kind: "warewulf", Image: spec.Image,
		ImageID: in.Image.ID, TargetDigest: in.Digest, Replace: spec.Replace, Steps: []register.Step{step}}
	return writeRegisterFiles(dir, f, warewulfScript(spec, step, mark), arts)
}

// WarewulfReleaseFile is where the mark goes in the image.
const WarewulfReleaseFile = "/etc/fgimg-release"

// warewulfScript is register.sh: the tarball unpacked into a chroot,
// marked, imported, built and given to the profile, under the bare-metal
// lock.
func warewulfScript(spec *WarewulfSpec, s register.Step, mark baremetal.Mark) string {
	var b strings.Builder
	q := shquote.Quote
	b.WriteString(bareMetalScriptHead("this warewulf target on the Warewulf server with wwctl",
		"keeps the older image (compared by the digest in /etc/fgimg-release)", [][2]string{{s.Artifact, s.Digest.Encoded()}}))
	b.WriteString("chroot=$(mktemp -d \"${TMPDIR:-/var/tmp}/fgimg-warewulf.XXXXXX\")\ntrap 'rm -rf \"$chroot\"' EXIT\n")
	fmt.Fprintf(&b, "tar -xpf %s --numeric-owner --xattrs --xattrs-include='*' -C \"$chroot\"\n", q(s.Artifact))
	fmt.Fprintf(&b, "printf '%%s\\n' %s >\"$chroot%s\"\n", shquote.Join(mark.Fields()), WarewulfReleaseFile)
	fmt.Fprintf(&b, "wwctl image import --force \"$chroot\" %s\n", q(spec.Name))
	fmt.Fprintf(&b, "wwctl image build %s\n", q(spec.Name))
	if spec.Profile != "" {
		fmt.Fprintf(&b, "wwctl profile set --yes --image %s %s\n", q(spec.Name), q(spec.Profile))
	}
	return b.String()
}
