package targets

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/stages"
)

// OpenNebula is the opennebula kind: the image adapted for OpenNebula
// (cloud-init with the OpenNebula datasource, which reads the context
// CD-ROM), its disk as an OS image, and the registration steps,
// register.json and register.sh.
type OpenNebula struct{}

// OpenNebulaSpec is an opennebula target's hashed spec.
type OpenNebulaSpec struct {
	CloudSpec
	Datastore  string `json:"datastore"`  // ID or name
	DevPrefix  string `json:"dev_prefix"` // vd, sd, hd
	Persistent bool   `json:"persistent,omitempty"`
	// Permission is the image's permissions as oneimage chmod takes
	// them: 600 (private), 640 (group:NAME), 644 (public).
	Permission string `json:"permission"`
}

// Kind implements Spec.
func (*OpenNebulaSpec) Kind() string { return "opennebula" }

// Name implements Kind.
func (OpenNebula) Name() string { return "opennebula" }

var devPrefix = regexp.MustCompile(`^[a-z]{1,4}$`)

// Schema implements Kind.
func (OpenNebula) Schema() *lang.TargetSchema {
	s := cloudSchema(checkOneAttribute)
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "datastore", Type: cty.String, Default: cty.StringVal("default"), Validate: validateCloudName,
			Doc: "the image datastore, by ID or name"},
		lang.TargetAttribute{Name: "dev_prefix", Type: cty.String, Default: cty.StringVal("vd"), Validate: func(v cty.Value) error {
			if !devPrefix.MatchString(v.AsString()) {
				return fmt.Errorf("%q is not a device prefix: write vd (virtio), sd (SCSI) or hd (IDE)", v.AsString())
			}
			return nil
		}, Doc: "the device name prefix of the image's disk: vd (virtio), sd, hd"},
		lang.TargetAttribute{Name: "persistent", Type: cty.Bool, Default: cty.False,
			Doc: "a persistent image: VMs write back to it"},
	)
	for i, a := range s.Attributes {
		switch a.Name {
		case "boot": // OpenNebula boots an OS image from its disk: it needs a boot loader
			s.Attributes[i].Enum = []string{BootBIOS, BootUEFI, BootHybrid}
		case "name":
			s.Attributes[i].Validate = validateOneName
		}
	}
	return s
}

// Spec implements Kind.
func (OpenNebula) Spec(t *lang.Target) Spec {
	s := &OpenNebulaSpec{CloudSpec: cloudSpec(t), Datastore: t.Str("datastore"), DevPrefix: t.Str("dev_prefix"),
		Persistent: t.Bool("persistent"), Permission: "600"}
	switch p := t.Image.Meta.Permission; {
	case p == "public":
		s.Permission = "644"
	case strings.HasPrefix(p, "group:"):
		s.Permission = "640"
	}
	return s
}

// Adapt implements Adapter: cloud-init for OpenNebula, and the disk's.
func (OpenNebula) Adapt(_ Spec, image digest.Digest) []stages.Spec {
	return adaptCloud(image, "OpenNebula", []string{"OpenNebula"},
		fileEntry("/var/lib/cloud/scripts/per-instance/fgimg-opennebula-start-script", 0o755, oneStartScript))
}

// oneStartScript runs the context's START_SCRIPT_BASE64 or START_SCRIPT
// once per instance, as OpenNebula's own contextualization packages do:
// cloud-init's OpenNebula datasource runs USER_DATA only, and users of
// OpenNebula's templates write start scripts. cloud-init runs it from
// its per-instance scripts, after the datasource set the hostname and
// keys.
const oneStartScript = `#!/bin/sh
# Written by fgimg for OpenNebula targets: runs the context CD-ROM's
# START_SCRIPT_BASE64 (or START_SCRIPT) once per instance, as OpenNebula's
# contextualization does; cloud-init runs it from its per-instance scripts.
set -eu
dev=$(blkid -l -t LABEL=CONTEXT -o device 2>/dev/null) || exit 0
[ -n "$dev" ] || exit 0
mnt=$(mktemp -d)
script=$(mktemp)
trap 'umount "$mnt" 2>/dev/null; rmdir "$mnt"; rm -f "$script"' EXIT
mount -o ro "$dev" "$mnt"
(
	. "$mnt/context.sh"
	if [ -n "${START_SCRIPT_BASE64:-}" ]; then
		printf '%s' "$START_SCRIPT_BASE64" | base64 -d
	elif [ -n "${START_SCRIPT:-}" ]; then
		printf '%s\n' "$START_SCRIPT"
	fi
) >"$script"
[ -s "$script" ] || exit 0
chmod 700 "$script"
if [ "$(head -c 2 "$script")" = "#!" ]; then
	"$script"
else
	/bin/sh "$script"
fi
`

// Boot implements Kind.
func (OpenNebula) Boot(sp Spec) (*Boot, error) {
	spec, err := specAs[*OpenNebulaSpec](sp, "opennebula")
	if err != nil {
		return nil, err
	}
	return spec.boot(diskMediaType(spec.Format), spec.Format)
}

// Write implements Kind.
func (OpenNebula) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*OpenNebulaSpec](sp, "opennebula")
	if err != nil {
		return nil, err
	}
	if spec.Boot == BootNone {
		return nil, errors.New(`opennebula target: boot = "none": the disk could not boot`)
	}
	w, err := writeCloud(ctx, in, &spec.CloudSpec, dir, false)
	if err != nil {
		return nil, fmt.Errorf("opennebula target: %w", err)
	}
	steps := []register.Step{openNebulaStep(spec, w)}
	arts, err := writeRegistration(dir, in, "opennebula", &spec.CloudSpec, "", steps, openNebulaScript(spec, steps[0]), []Artifact{w.disk.Artifact})
	if err != nil {
		return nil, fmt.Errorf("opennebula target: %w", err)
	}
	return arts, nil
}

// validateOneName checks an image name as oned does
// (PoolObjectSQL::name_is_valid).
func validateOneName(v cty.Value) error {
	if err := validateCloudName(v); err != nil {
		return err
	}
	if i := strings.IndexAny(v.AsString(), "&|:\\\";/'#{}$<>"); i >= 0 {
		return fmt.Errorf("OpenNebula refuses the character %q in an image name", v.AsString()[i])
	}
	return nil
}

// oneAttribute is what OpenNebula takes as a template attribute's name.
var oneAttribute = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// oneCore are the image attributes fgimg register sets from the step
// itself (its name, format and options), which a property must not set.
var oneCore = []string{"NAME", "PATH", "SOURCE", "SIZE", "TYPE", "FORMAT", "DEV_PREFIX", "PERSISTENT"}

// checkOneAttribute checks a template's property as an OpenNebula image
// template attribute: oned upper-cases names, ends a quoted value at a
// quote not after a backslash, and refuses "]]>" and control characters.
func checkOneAttribute(k, v string) error {
	switch {
	case !oneAttribute.MatchString(k):
		return fmt.Errorf("%q is not an OpenNebula attribute name: use letters, digits and _", k)
	case slices.Contains(oneCore, strings.ToUpper(k)):
		return fmt.Errorf("property %q: fgimg sets the image's %s from the target (name, format, dev_prefix, persistent)", k, strings.ToUpper(k))
	case strings.HasSuffix(v, `\`):
		return fmt.Errorf("property %q ends in a backslash, which an OpenNebula template cannot hold", k)
	case strings.Contains(v, "]]>"):
		return fmt.Errorf(`property %q holds "]]>", which OpenNebula's template parser refuses`, k)
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' || r == 0x7f }):
		return fmt.Errorf("property %q holds a control character, which an OpenNebula template cannot carry", k)
	}
	return nil
}

// openNebulaStep is the OS image: its template attributes as
// properties, the datastore and the rest as options.
func openNebulaStep(spec *OpenNebulaSpec, w *cloudWrite) register.Step {
	s := cloudStep("disk", w.disk, spec.Name, &spec.CloudSpec)
	s.Format, s.Visibility = spec.Format, spec.Permission
	// TYPE, FORMAT, DEV_PREFIX and PERSISTENT come from the step's
	// format and options, not its properties.
	p := s.Properties
	p["DRIVER"] = spec.Format
	if pretty := w.osRelease["PRETTY_NAME"]; pretty != "" {
		p["DESCRIPTION"] = pretty + ", built by fgimg from image " + spec.Image
	}
	mergeTemplate(&s, &spec.CloudSpec)
	s.Options = map[string]string{
		"datastore":  spec.Datastore,
		"dev_prefix": spec.DevPrefix,
		"persistent": fmt.Sprint(spec.Persistent),
	}
	return s
}

// oneTemplateValue quotes v for an OpenNebula template: in double
// quotes, a double quote as \" (a backslash is otherwise itself in
// oned's grammar; checkOneAttribute refuses a value ending in one).
func oneTemplateValue(v string) string {
	return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
}

// openNebulaScript is register.sh: oneimage create, the properties
// appended as template attributes, oneimage chmod.
func openNebulaScript(spec *OpenNebulaSpec, s register.Step) string {
	var b strings.Builder
	b.WriteString(scriptHead("into OpenNebula", []register.Step{s}))
	b.WriteString("# The front-end must be able to read the disk at this path.\n")
	b.WriteString("id=$(oneimage create \\\n")
	fmt.Fprintf(&b, "\t-d %s --name %s \\\n", shquote.Quote(spec.Datastore), shquote.Quote(s.Name))
	fmt.Fprintf(&b, "\t--path \"$PWD\"/%s --type OS \\\n", shquote.Quote(s.Artifact))
	fmt.Fprintf(&b, "\t--prefix %s --format %s --driver %s", shquote.Quote(spec.DevPrefix), shquote.Quote(spec.Format), shquote.Quote(spec.Format))
	if spec.Persistent {
		b.WriteString(" --persistent")
	}
	b.WriteString(" |\n\tsed -n 's/^ID: *//p')\n")
	b.WriteString("[ -n \"$id\" ] || { echo \"register.sh: oneimage create printed no image ID\" >&2; exit 1; }\n")
	b.WriteString("echo \"disk: image $id\"\n")
	b.WriteString("attrs=$(mktemp)\ntrap 'rm -f \"$attrs\"' EXIT\n")
	b.WriteString("printf '%s\\n' \\\n")
	for _, k := range sortedKeys(s.Properties) {
		fmt.Fprintf(&b, "\t%s \\\n", shquote.Quote(k+" = "+oneTemplateValue(s.Properties[k])))
	}
	b.WriteString("\t>\"$attrs\"\n")
	b.WriteString("oneimage update \"$id\" --append \"$attrs\"\n")
	fmt.Fprintf(&b, "oneimage chmod \"$id\" %s\n", shquote.Quote(spec.Permission))
	return b.String()
}
