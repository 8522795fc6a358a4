package targets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/arch"
	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/stages"
)

// Media types of the registration steps a cloud target writes.
const (
	MediaTypeRegister       = "application/vnd.fgimg.register.v1+json"
	MediaTypeRegisterScript = "application/x-shellscript"
)

// CloudSpec is what the cloud kinds (openstack, opennebula) share of
// their hashed spec: the disk, and every name and property the
// registration steps carry.
type CloudSpec struct {
	DiskSpec
	Format string `json:"format"` // qcow2 | raw
	// Name is the image's name in the cloud; Target and Image the
	// target's and the fgimg image's names (fgimg_target, fgimg_image).
	Name    string `json:"name"`
	Target  string `json:"target"`
	Image   string `json:"image"`
	Replace bool   `json:"replace,omitempty"`
	// Properties are the template's, merged over fgimg's own.
	Properties map[string]string `json:"properties,omitempty"`
}

// Summary implements part of Spec.
func (s *CloudSpec) Summary() string {
	return fmt.Sprintf("%q, %s, %s", s.Name, s.Format, s.DiskSpec.Summary())
}

// cloudSchema is the attributes every cloud kind has; refused are the
// attribute names that would hold credentials. checkProperty checks one
// of the template's properties as the cloud takes them.
func cloudSchema(checkProperty func(k, v string) error) *lang.TargetSchema {
	s := diskSchema()
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "name", Type: cty.String, Validate: validateCloudName,
			Doc: "the image's name in the cloud; default: the target's name"},
		lang.TargetAttribute{Name: "format", Type: cty.String, Default: cty.StringVal("qcow2"),
			Enum: []string{"qcow2", "raw"}, Doc: "the disk's format"},
		lang.TargetAttribute{Name: "properties", Type: cty.Map(cty.String), Validate: func(v cty.Value) error {
			return validateProperties(v, checkProperty)
		},
			Doc: "image properties, merged over fgimg's own"},
		lang.TargetAttribute{Name: "replace", Type: cty.Bool, Default: cty.False,
			Doc: "retire older images of this target that fgimg registered once the new one is active"},
	)
	s.Refused = map[string]string{}
	for _, n := range []string{"password", "username", "user", "token", "auth", "auth_url", "credentials", "secret", "api_key", "application_credential_secret", "one_auth", "endpoint"} {
		s.Refused[n] = "A template never holds credentials or endpoints: fgimg register takes them from the environment " +
			"(OpenStack: clouds.yaml and OS_CLOUD or OS_* variables; OpenNebula: ONE_XMLRPC and ONE_AUTH or ~/.one/one_auth)."
	}
	return s
}

func validateCloudName(v cty.Value) error {
	n := v.AsString()
	switch {
	case strings.TrimSpace(n) == "":
		return fmt.Errorf("an image needs a name")
	case len(n) > 255:
		return fmt.Errorf("name is %d bytes long; clouds take at most 255", len(n))
	case strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("name %q contains a control character", n)
	}
	return nil
}

func validateProperties(v cty.Value, check func(k, v string) error) error {
	m := v.AsValueMap()
	for _, k := range sortedKeys(v.AsValueMap()) {
		if strings.HasPrefix(strings.ToLower(k), "fgimg_") {
			return fmt.Errorf("property %q: the fgimg_ properties are fgimg's own, set at build and register time", k)
		}
		if err := check(k, m[k].AsString()); err != nil {
			return err
		}
	}
	return nil
}

// cloudSpec reads the attributes every cloud kind has. The kernel
// command line gets the serial console, for the cloud's console log,
// unless the template names a console of its own.
func cloudSpec(t *lang.Target) CloudSpec {
	s := CloudSpec{DiskSpec: diskSpec(t), Format: t.Str("format"), Name: t.Str("name"),
		Target: t.Name, Image: t.Image.Name, Replace: t.Bool("replace"), Properties: t.StrMap("properties")}
	if s.Name == "" {
		s.Name = t.Name
	}
	console := false
	for _, a := range s.KernelArgs {
		console = console || strings.HasPrefix(a, "console=")
	}
	if !console {
		s.KernelArgs = append(serialConsole(t.Image.Meta.Arch), s.KernelArgs...)
	}
	return s
}

// serialConsole is the kernel arguments that put the console on the
// first serial port, last, so that it is /dev/console (cloud-init's
// output goes there).
func serialConsole(debArch string) []string {
	if debArch == "arm64" || debArch == "armhf" {
		return []string{"console=tty0", "console=ttyAMA0,115200n8"}
	}
	return []string{"console=tty0", "console=ttyS0,115200n8"}
}

// virtioModules are the drivers a cloud VM's disks and network need in
// its initrd.
var virtioModules = []string{"virtio_blk", "virtio_net", "virtio_pci", "virtio_scsi"}

// adaptCloud is the adaptation of a cloud target: cloud-init and the
// rest of stages.CloudInit (shared by all clouds), then the files that
// name the cloud (the datasource list, and extra), then the disk's.
func adaptCloud(image digest.Digest, cloud string, datasources []string, extra ...stages.FileEntry) []stages.Spec {
	return adaptCloudModules(image, virtioModules, cloud, datasources, extra...)
}

// adaptCloudModules is adaptCloud with the initrd's drivers modules
// (ec2 needs more than virtio's).
func adaptCloudModules(image digest.Digest, modules []string, cloud string, datasources []string, extra ...stages.FileEntry) []stages.Spec {
	cfg := fmt.Sprintf("# Written by fgimg for %s targets: where cloud-init finds its configuration.\ndatasource_list: [ %s, None ]\n",
		cloud, strings.Join(datasources, ", "))
	files := &stages.Files{Entries: append([]stages.FileEntry{
		fileEntry("/etc/cloud/cloud.cfg.d/90_fgimg_datasource.cfg", 0o644, cfg)}, extra...)}
	sort.Slice(files.Entries, func(i, j int) bool { return files.Entries[i].Path < files.Entries[j].Path })
	return append([]stages.Spec{&stages.CloudInit{Virtio: modules}, files}, AdaptDisk(image)...)
}

// fileEntry is a file of root's that an adaptation writes.
func fileEntry(path string, mode uint32, content string) stages.FileEntry {
	return stages.FileEntry{Path: path, Type: stages.TypeFile, Mode: mode, Owner: "root", Group: "root",
		Digest: digest.FromString(content), Content: []byte(content)}
}

// cloudArtifact is an artifact a registration step uploads.
type cloudArtifact struct {
	Artifact
	digest digest.Digest
	size   int64
}

// cloudWrite is what writeCloud made: the disk and, with boot = "none",
// the kernel and initrd.
type cloudWrite struct {
	disk, kernel, initrd *cloudArtifact
	info                 DiskInfo
	osRelease            map[string]string
}

// writeCloud writes the disk of spec in its format and, when withKernel
// and the disk has no boot loader, the image's kernel and initrd beside
// it.
func writeCloud(ctx context.Context, in *Input, spec *CloudSpec, dir string, withKernel bool) (*cloudWrite, error) {
	a, info, err := writeDisk(ctx, in, &spec.DiskSpec, dir, spec.Format, false)
	if err != nil {
		return nil, err
	}
	w := &cloudWrite{info: info}
	if w.disk, err = measure(dir, a); err != nil {
		return nil, err
	}
	if withKernel && spec.Boot == BootNone {
		if w.kernel, w.initrd, err = writeKernel(in, dir, "a disk"); err != nil {
			return nil, err
		}
	}
	if w.osRelease, err = readOSRelease(in.Root); err != nil {
		return nil, err
	}
	return w, nil
}

// writeKernel copies the image's kernel and initrd into dir as vmlinuz
// and initrd.img, for the cloud to boot beside what (a disk, a root
// file system).
func writeKernel(in *Input, dir, what string) (kernel, initrd *cloudArtifact, err error) {
	k, err := findBootKernel(in.Root)
	if err != nil {
		return nil, nil, err
	}
	if k == nil || k.initrd == "" {
		return nil, nil, fmt.Errorf("image %q has no kernel and initrd in /boot to register beside %s with boot = \"none\"", in.Image.Name, what)
	}
	for _, c := range []struct {
		dst  **cloudArtifact
		src  string
		file Artifact
	}{
		{&kernel, k.vmlinuz, Artifact{Path: "vmlinuz", MediaType: MediaTypeKernel}},
		{&initrd, k.initrd, Artifact{Path: "initrd.img", MediaType: MediaTypeInitramfs}},
	} {
		if err := writeFile(filepath.Join(dir, c.file.Path), func(f *os.File) error { return copyFrom(f, c.src) }); err != nil {
			return nil, nil, err
		}
		if *c.dst, err = measure(dir, c.file); err != nil {
			return nil, nil, err
		}
	}
	return kernel, initrd, nil
}

// measure takes an artifact's digest and size.
func measure(dir string, a Artifact) (*cloudArtifact, error) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(a.Path)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d, err := digest.SHA256.FromReader(bufio.NewReaderSize(f, copyBufferSize))
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", a.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &cloudArtifact{Artifact: a, digest: d, size: st.Size()}, nil
}

// readOSRelease reads the image's /etc/os-release (or
// /usr/lib/os-release); an image with neither gives an empty map.
func readOSRelease(root string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		host, err := diskResolve(root, p)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(host)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v[1 : len(v)-1])
			}
			out[k] = v
		}
		break
	}
	return out, nil
}

// machineArch is the image's architecture as clouds name it (uname -m).
func machineArch(debArch string) string {
	if a, ok := arch.ByDebian(debArch); ok {
		return a.Machine
	}
	return debArch
}

// cloudStep makes a step for artifact a with fgimg's own properties;
// the caller adds the field's and then mergeTemplate the template's.
func cloudStep(id string, a *cloudArtifact, name string, spec *CloudSpec) register.Step {
	return register.Step{
		ID: id, Artifact: a.Path, Digest: a.digest, Size: a.size, Name: name,
		Properties: map[string]string{
			"fgimg_digest": string(a.digest),
			"fgimg_image":  spec.Image,
			"fgimg_target": spec.Target,
			"fgimg_step":   id,
		},
	}
}

// mergeTemplate sets the template's properties over what a step has.
func mergeTemplate(s *register.Step, spec *CloudSpec) {
	maps.Copy(s.Properties, spec.Properties)
}

// writeRegistration writes register.json and register.sh into dir and
// returns the artifacts: the write's, then those two.
func writeRegistration(dir string, in *Input, kind string, spec *CloudSpec, cloud string, steps []register.Step, script string, arts []Artifact) ([]Artifact, error) {
	f := register.File{
		Version: register.FileVersion, Target: spec.Target, Kind: kind,
		Image: spec.Image, ImageID: in.Image.ID, TargetDigest: in.Digest,
		Cloud: cloud, Replace: spec.Replace, Steps: steps,
	}
	return writeRegisterFiles(dir, f, script, arts)
}

// writeRegisterFiles writes f as register.json and script as register.sh
// into dir and returns arts with those two.
func writeRegisterFiles(dir string, f register.File, script string, arts []Artifact) ([]Artifact, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, register.FileName), b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, register.ScriptName), []byte(script), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Join(dir, register.ScriptName), 0o755); err != nil { // whatever the umask
		return nil, err
	}
	return append(arts,
		Artifact{Path: register.FileName, MediaType: MediaTypeRegister},
		Artifact{Path: register.ScriptName, MediaType: MediaTypeRegisterScript}), nil
}

// scriptHead starts a register.sh: it runs from its own folder and
// checks every artifact's digest before anything is uploaded.
func scriptHead(what string, steps []register.Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# Written by fgimg: registers this target's artifacts %s with the cloud's own CLI,\n", what)
	b.WriteString("# the same steps as register.json (fgimg register performs them idempotently;\n")
	b.WriteString("# this script uploads every time). Credentials come from the environment.\n")
	b.WriteString("set -eu\ncd \"$(dirname \"$0\")\"\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "echo %s | sha256sum -c --quiet -\n", shquote.Quote(s.Digest.Encoded()+"  "+s.Artifact))
	}
	return b.String()
}
