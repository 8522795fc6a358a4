package targets

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/stages"
)

// OpenStack is the openstack kind: the image adapted for OpenStack
// (cloud-init with the ConfigDrive and OpenStack datasources), its disk
// as Glance takes it, and the registration steps, register.json and
// register.sh. With boot = "none" the kernel and initrd are registered
// as their own aki and ari images that the disk refers to.
type OpenStack struct{}

// OpenStackSpec is an openstack target's hashed spec.
type OpenStackSpec struct {
	CloudSpec
	Visibility string `json:"visibility"` // private | public | shared | community
	Cloud      string `json:"cloud,omitempty"`
}

// Kind implements Spec.
func (*OpenStackSpec) Kind() string { return "openstack" }

// Name implements Kind.
func (OpenStack) Name() string { return "openstack" }

// Schema implements Kind.
func (OpenStack) Schema() *lang.TargetSchema {
	s := cloudSchema(checkGlanceProperty)
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "visibility", Type: cty.String, Enum: []string{"private", "public", "shared", "community"},
			Doc: "Glance's visibility; default from the image's permission: private, public, or shared for group:NAME"},
		lang.TargetAttribute{Name: "cloud", Type: cty.String, Validate: validateCloudName,
			Doc: "the clouds.yaml entry fgimg register uses; default: OS_CLOUD, else the OS_* environment"},
	)
	return s
}

// Spec implements Kind.
func (OpenStack) Spec(t *lang.Target) Spec {
	s := &OpenStackSpec{CloudSpec: cloudSpec(t), Visibility: t.Str("visibility"), Cloud: t.Str("cloud")}
	if s.Visibility == "" {
		switch p := t.Image.Meta.Permission; {
		case p == "public":
			s.Visibility = "public"
		case strings.HasPrefix(p, "group:"):
			s.Visibility = "shared"
		default:
			s.Visibility = "private"
		}
	}
	return s
}

// Adapt implements Adapter: cloud-init for OpenStack, and the disk's.
func (OpenStack) Adapt(_ Spec, image digest.Digest) []stages.Spec {
	return adaptCloud(image, "OpenStack", []string{"ConfigDrive", "OpenStack"})
}

// Boot implements Kind.
func (OpenStack) Boot(sp Spec) (*Boot, error) {
	spec, err := specAs[*OpenStackSpec](sp, "openstack")
	if err != nil {
		return nil, err
	}
	return spec.boot(diskMediaType(spec.Format), spec.Format)
}

// diskMediaType is the media type of a disk in format.
func diskMediaType(format string) string {
	if format == "raw" {
		return MediaTypeRawDisk
	}
	return MediaTypeQCOW2
}

// Write implements Kind.
func (OpenStack) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*OpenStackSpec](sp, "openstack")
	if err != nil {
		return nil, err
	}
	w, err := writeCloud(ctx, in, &spec.CloudSpec, dir, true)
	if err != nil {
		return nil, fmt.Errorf("openstack target: %w", err)
	}
	steps := openStackSteps(in, spec, w)
	var arts []Artifact
	for _, a := range []*cloudArtifact{w.kernel, w.initrd, w.disk} {
		if a != nil {
			arts = append(arts, a.Artifact)
		}
	}
	arts, err = writeRegistration(dir, in, "openstack", &spec.CloudSpec, spec.Cloud, steps, openStackScript(spec, steps), arts)
	if err != nil {
		return nil, fmt.Errorf("openstack target: %w", err)
	}
	return arts, nil
}

// openStackSteps are the Glance images: the kernel and ramdisk first
// when there are, then the disk.
func openStackSteps(in *Input, spec *OpenStackSpec, w *cloudWrite) []register.Step {
	machine := machineArch(in.Image.Arch)
	var steps []register.Step
	refs := map[string]string{}
	for _, k := range []struct {
		id, prop, format string
		a                *cloudArtifact
	}{{"kernel", "kernel_id", "aki", w.kernel}, {"ramdisk", "ramdisk_id", "ari", w.initrd}} {
		if k.a == nil {
			continue
		}
		s := cloudStep(k.id, k.a, spec.Name+"-"+k.id, &spec.CloudSpec)
		s.Format, s.ContainerFormat, s.Visibility = k.format, k.format, spec.Visibility
		s.Properties["architecture"] = machine
		mergeTemplate(&s, &spec.CloudSpec)
		steps = append(steps, s)
		refs[k.prop] = k.id
	}
	s := cloudStep("disk", w.disk, spec.Name, &spec.CloudSpec)
	s.Format, s.ContainerFormat, s.Visibility = spec.Format, "bare", spec.Visibility
	p := s.Properties
	p["architecture"] = machine
	p["hw_disk_bus"] = "virtio"
	if spec.Boot == BootUEFI {
		p["hw_firmware_type"] = "uefi"
	}
	if id := w.osRelease["ID"]; id != "" {
		p["os_distro"] = id
	}
	if v := w.osRelease["VERSION_ID"]; v != "" {
		p["os_version"] = v
	}
	if len(refs) > 0 {
		// Nova boots the kernel with this command line: the disk's root.
		p["os_command_line"] = w.info.CmdLine
		s.Refs = refs
	}
	mergeTemplate(&s, &spec.CloudSpec)
	if p["hw_disk_bus"] == "scsi" && p["hw_scsi_model"] == "" {
		p["hw_scsi_model"] = "virtio-scsi" // else Nova emulates an LSI controller
	}
	return append(steps, s)
}

// openStackScript is register.sh: the steps as openstack image create
// commands, the kernel's and ramdisk's IDs captured for the disk's.
func openStackScript(spec *OpenStackSpec, steps []register.Step) string {
	var b strings.Builder
	b.WriteString(scriptHead("into OpenStack's Glance", steps))
	cli := "openstack"
	if spec.Cloud != "" {
		cli += " --os-cloud " + shquote.Quote(spec.Cloud)
	}
	for _, s := range steps {
		b.WriteString("\n")
		if s.ID != "disk" {
			fmt.Fprintf(&b, "%s_id=$(", s.ID)
		}
		fmt.Fprintf(&b, "%s image create \\\n", cli)
		fmt.Fprintf(&b, "\t--disk-format %s --container-format %s \\\n", shquote.Quote(s.Format), shquote.Quote(s.ContainerFormat))
		fmt.Fprintf(&b, "\t--file %s --%s \\\n", shquote.Quote(s.Artifact), s.Visibility)
		for _, k := range sortedKeys(s.Properties) {
			fmt.Fprintf(&b, "\t--property %s \\\n", shquote.Quote(k+"="+s.Properties[k]))
		}
		for _, k := range sortedKeys(s.Refs) {
			fmt.Fprintf(&b, "\t--property %s\"$%s_id\" \\\n", shquote.Quote(k+"="), s.Refs[k])
		}
		if s.ID != "disk" {
			fmt.Fprintf(&b, "\t-f value -c id %s)\n", shquote.Quote(s.Name))
			fmt.Fprintf(&b, "echo \"%s: image $%s_id\"\n", s.ID, s.ID)
		} else {
			fmt.Fprintf(&b, "\t%s\n", shquote.Quote(s.Name))
		}
	}
	return b.String()
}

// glanceProperty is what Glance takes as a property's name.
var glanceProperty = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_:.-]{0,254}$`) })

func checkGlanceProperty(k, v string) error {
	if !glanceProperty().MatchString(k) {
		return fmt.Errorf("%q is not a Glance property name: use letters, digits, _, :, . and -, starting with a letter or _", k)
	}
	if len(v) > 255 {
		return fmt.Errorf("property %q is %d bytes long; Glance takes at most 255", k, len(v))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
