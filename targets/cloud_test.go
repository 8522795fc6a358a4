package targets

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/onefake"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/opennebula"
	"github.com/fgimg/fgimg/register/registertest"
)

// loadTargets loads a template of one image (with the image attributes
// meta) and the targets in src, with every kind's schema.
func loadTargets(t *testing.T, meta, src string) map[string]*lang.Target {
	t.Helper()
	dir := t.TempDir()
	body := "image \"base\" {\n  bootstrap \"debootstrap\" { suite = \"bookworm\" }\n  arch = \"amd64\"\n" + meta + "\n}\n" + src
	if err := os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := lang.Load(lang.LoadOptions{Paths: []string{dir}, Environ: []string{}, TargetKinds: Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	out := map[string]*lang.Target{}
	for _, tg := range cfg.Targets {
		out[tg.Name] = tg
	}
	return out
}

func TestCloudSpecs(t *testing.T) {
	tgs := func(perm string) map[string]*lang.Target {
		return loadTargets(t, "permission = "+perm, `
target "openstack" "os" { image = image.base }
target "openstack" "os-set" {
  image       = image.base
  name        = "Debian 12"
  visibility  = "community"
  cloud       = "lab"
  kernel_args = ["console=hvc0", "quiet"]
  properties  = { hw_vif_model = "e1000" }
  replace     = true
}
target "opennebula" "one" { image = image.base }
target "opennebula" "one-set" {
  image      = image.base
  datastore  = "102"
  dev_prefix = "sd"
  persistent = true
  format     = "raw"
}
`)
	}
	for _, c := range []struct{ perm, visibility, octal string }{
		{`"private"`, "private", "600"},
		{`"public"`, "public", "644"},
		{`"group:hpc"`, "shared", "640"},
	} {
		m := tgs(c.perm)
		os := (OpenStack{}).Spec(m["os"]).(*OpenStackSpec)
		want := &OpenStackSpec{CloudSpec: CloudSpec{
			DiskSpec: DiskSpec{Boot: BootHybrid, Title: "base", KernelArgs: []string{"console=tty0", "console=ttyS0,115200n8"}},
			Format:   "qcow2", Name: "os", Target: "os", Image: "base",
		}, Visibility: c.visibility}
		if !reflect.DeepEqual(os, want) {
			t.Errorf("permission %s: openstack spec\n got %+v\nwant %+v", c.perm, os, want)
		}
		one := (OpenNebula{}).Spec(m["one"]).(*OpenNebulaSpec)
		if one.Permission != c.octal || one.Datastore != "default" || one.DevPrefix != "vd" || one.Persistent || one.Format != "qcow2" {
			t.Errorf("permission %s: opennebula spec %+v", c.perm, one)
		}
	}
	m := tgs(`"public"`)
	set := (OpenStack{}).Spec(m["os-set"]).(*OpenStackSpec)
	if set.Name != "Debian 12" || set.Visibility != "community" || set.Cloud != "lab" || !set.Replace ||
		!slices.Equal(set.KernelArgs, []string{"console=hvc0", "quiet"}) || set.Properties["hw_vif_model"] != "e1000" {
		t.Errorf("openstack spec with attributes: %+v", set)
	}
	one := (OpenNebula{}).Spec(m["one-set"]).(*OpenNebulaSpec)
	if one.Datastore != "102" || one.DevPrefix != "sd" || !one.Persistent || one.Format != "raw" {
		t.Errorf("opennebula spec with attributes: %+v", one)
	}
}

// cloudTree is diskTree with Debian's os-release.
func cloudTree(t *testing.T) string {
	root := diskTree(t)
	writeIn(t, root, "usr/lib/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n")
	os.Remove(filepath.Join(root, "etc/os-release"))
	if err := os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	return root
}

// hostile is a property value and name a shell must not run.
const hostile = "$(touch /tmp/fgimg-pwned)`touch /tmp/fgimg-pwned`'\"; touch /tmp/fgimg-pwned"

// checkSteps checks that each step's digest and size are its file's.
func checkSteps(t *testing.T, dir string, f register.File) {
	t.Helper()
	for _, s := range f.Steps {
		b, err := os.ReadFile(filepath.Join(dir, s.Artifact))
		if err != nil {
			t.Fatal(err)
		}
		if s.Digest != digest.FromBytes(b) || s.Size != int64(len(b)) || s.Properties["fgimg_digest"] != string(s.Digest) {
			t.Errorf("step %s: digest %s size %d, fgimg_digest %s; the file has %s, %d bytes", s.ID, s.Digest, s.Size, s.Properties["fgimg_digest"], digest.FromBytes(b), len(b))
		}
	}
}

// runScript checks register.sh with bash -n and runs it with fake
// commands named fakes on PATH, each recording its arguments (and a
// file argument's content, for oneimage update) and printing what
// reply says. It returns the calls, one []string each.
func runScript(t *testing.T, dir string, fakes ...string) [][]string {
	t.Helper()
	script := filepath.Join(dir, register.ScriptName)
	if st, err := os.Stat(script); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("register.sh is not executable: %v", err)
	}
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n register.sh: %v\n%s", err, out)
	}
	bin, log := t.TempDir(), t.TempDir()
	fake := `#!/bin/sh
n=$(ls "$FAKE_LOG" | wc -l)
n=$((n + 1))
{ printf '%s\0' "$(basename "$0")" "$@"
  # oneimage update ID --append FILE: the file goes away when the script ends.
  if [ "$1" = update ]; then cat "$4"; printf '\0'; fi
} >"$FAKE_LOG/$(printf %03d $n)"
case "$1 $*" in
create*) echo "ID: 4$n" ;;
*"-c id"*) echo "img-$n" ;;
esac
if [ "$(basename "$0")" = euca-register ]; then printf 'IMAGE\temi-%s\n' "$n"; fi
`
	for _, f := range fakes {
		if err := os.WriteFile(filepath.Join(bin, f), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove("/tmp/fgimg-pwned")
	cmd := exec.Command("sh", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_LOG="+log)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("register.sh: %v\n%s", err, out)
	}
	if _, err := os.Stat("/tmp/fgimg-pwned"); err == nil {
		os.Remove("/tmp/fgimg-pwned")
		t.Fatal("register.sh ran a command from a property value")
	}
	ents, err := os.ReadDir(log)
	if err != nil {
		t.Fatal(err)
	}
	var calls [][]string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(log, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"))
	}
	return calls
}

func TestOpenStackWrite(t *testing.T) {
	needDiskTools(t)
	tg := loadTargets(t, `permission = "group:hpc"`, `
target "openstack" "hpc" {
  image      = image.base
  name       = "hpc node"
  boot       = "none"
  cloud      = "lab; rm -rf /"
  properties = { hw_disk_bus = "scsi", note = "`+strings.ReplaceAll(hostile, `"`, `\"`)+`" }
}`)["hpc"]
	spec := (OpenStack{}).Spec(tg)
	dir := t.TempDir()
	in := diskInput(cloudTree(t))
	in.Digest = digest.FromString("the write")
	arts, err := (OpenStack{}).Write(context.Background(), in, spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Artifact{{"vmlinuz", MediaTypeKernel}, {"initrd.img", MediaTypeInitramfs}, {"disk.qcow2", MediaTypeQCOW2},
		{"register.json", MediaTypeRegister}, {"register.sh", MediaTypeRegisterScript}}
	if !reflect.DeepEqual(arts, want) {
		t.Fatalf("artifacts %v, want %v", arts, want)
	}
	f := registertest.Read(t, dir)
	if f.Version != register.FileVersion || f.Target != "hpc" || f.Kind != "openstack" || f.Image != "base" ||
		f.ImageID != in.Image.ID || f.TargetDigest != in.Digest || f.Cloud != "lab; rm -rf /" || f.Replace {
		t.Errorf("register.json header: %+v", f)
	}
	checkSteps(t, dir, f)
	if len(f.Steps) != 3 {
		t.Fatalf("steps: %+v", f.Steps)
	}
	kernel, ramdisk, disk := f.Steps[0], f.Steps[1], f.Steps[2]
	for _, c := range []struct {
		s                         register.Step
		id, name, format, content string
	}{
		{kernel, "kernel", "hpc node-kernel", "aki", "aki"},
		{ramdisk, "ramdisk", "hpc node-ramdisk", "ari", "ari"},
		{disk, "disk", "hpc node", "qcow2", "bare"},
	} {
		s := c.s
		if s.ID != c.id || s.Name != c.name || s.Format != c.format || s.ContainerFormat != c.content || s.Visibility != "shared" ||
			s.Properties["fgimg_image"] != "base" || s.Properties["fgimg_target"] != "hpc" || s.Properties["fgimg_step"] != c.id ||
			s.Properties["architecture"] != "x86_64" || s.Properties["note"] != hostile || s.Properties["hw_disk_bus"] != "scsi" {
			t.Errorf("step %s: %+v", c.id, s)
		}
	}
	// The kernel and initrd are the image's newest.
	if b, _ := os.ReadFile(filepath.Join(dir, "vmlinuz")); !strings.HasPrefix(string(b), "kernel "+testKernel+"\n") {
		t.Errorf("vmlinuz is not the newest kernel: %.30q", b)
	}
	p := disk.Properties
	if p["os_distro"] != "debian" || p["os_version"] != "12" || p["hw_disk_bus"] != "scsi" || p["hw_scsi_model"] != "virtio-scsi" ||
		!strings.HasPrefix(p["os_command_line"], "root=PARTUUID=") || !strings.Contains(p["os_command_line"], "console=ttyS0,115200n8") {
		t.Errorf("disk properties: %v", p)
	}
	if _, ok := p["hw_firmware_type"]; ok {
		t.Error("hw_firmware_type set for a disk without boot loader")
	}
	if !reflect.DeepEqual(disk.Refs, map[string]string{"kernel_id": "kernel", "ramdisk_id": "ramdisk"}) {
		t.Errorf("disk refs: %v", disk.Refs)
	}

	// register.sh makes the same images, with the kernel's and
	// ramdisk's IDs (the fake prints img-N) in the disk's properties.
	calls := runScript(t, dir, "openstack")
	if len(calls) != 3 {
		t.Fatalf("openstack ran %d times: %q", len(calls), calls)
	}
	ids := map[string]string{"kernel": "img-1", "ramdisk": "img-2"}
	for i, s := range f.Steps {
		args := calls[i]
		wantArgs := []string{"openstack", "--os-cloud", "lab; rm -rf /", "image", "create", "--disk-format", s.Format,
			"--container-format", s.ContainerFormat, "--file", s.Artifact, "--shared"}
		props := map[string]string{}
		for k, v := range s.Properties {
			props[k] = v
		}
		for k, ref := range s.Refs {
			props[k] = ids[ref]
		}
		for _, k := range sortedKeys(props) {
			wantArgs = append(wantArgs, "--property", k+"="+props[k])
		}
		if s.ID != "disk" {
			wantArgs = append(wantArgs, "-f", "value", "-c", "id")
		}
		wantArgs = append(wantArgs, s.Name)
		// Refs come after the properties in the script: compare as sets
		// of --property pairs and the rest in order.
		if !sameCommand(args, wantArgs) {
			t.Errorf("step %s: register.sh ran\n %q\nwant\n %q", s.ID, args, wantArgs)
		}
	}
}

// sameCommand compares two command lines, --property options as a set.
func sameCommand(a, b []string) bool {
	split := func(args []string) (rest, props []string) {
		for i := 0; i < len(args); i++ {
			if args[i] == "--property" && i+1 < len(args) {
				props = append(props, args[i+1])
				i++
				continue
			}
			rest = append(rest, args[i])
		}
		sort.Strings(props)
		return rest, props
	}
	ra, pa := split(a)
	rb, pb := split(b)
	return slices.Equal(ra, rb) && slices.Equal(pa, pb)
}

func TestOpenStackUEFIDiskProperties(t *testing.T) {
	tg := loadTargets(t, "", `target "openstack" "u" {
  image = image.base
  boot  = "uefi"
}`)["u"]
	spec := (OpenStack{}).Spec(tg).(*OpenStackSpec)
	w := &cloudWrite{disk: &cloudArtifact{Artifact: Artifact{Path: "disk.qcow2"}, digest: digest.FromString("d"), size: 1}}
	steps := openStackSteps(&Input{Image: ImageInfo{Arch: "arm64"}}, spec, w)
	if len(steps) != 1 || steps[0].Properties["hw_firmware_type"] != "uefi" || steps[0].Properties["architecture"] != "aarch64" || steps[0].Refs != nil {
		t.Errorf("uefi disk: %+v", steps)
	}
}

func TestOpenNebulaWrite(t *testing.T) {
	needDiskTools(t)
	tg := loadTargets(t, `permission = "public"`, `
target "opennebula" "web" {
  image      = image.base
  name       = "web prod"
  boot       = "bios"
  format     = "raw"
  datastore  = "default"
  persistent = true
  properties = { LOGO = "images/logos/debian.png", NOTE = "`+strings.ReplaceAll(hostile, `"`, `\"`)+`" }
}`)["web"]
	dir := t.TempDir()
	in := diskInput(cloudTree(t))
	arts, err := (OpenNebula{}).Write(context.Background(), in, (OpenNebula{}).Spec(tg), dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Artifact{{"disk.raw", MediaTypeRawDisk}, {"register.json", MediaTypeRegister}, {"register.sh", MediaTypeRegisterScript}}
	if !reflect.DeepEqual(arts, want) {
		t.Fatalf("artifacts %v, want %v", arts, want)
	}
	f := registertest.Read(t, dir)
	checkSteps(t, dir, f)
	if f.Kind != "opennebula" || len(f.Steps) != 1 {
		t.Fatalf("register.json: %+v", f)
	}
	s := f.Steps[0]
	wantProps := map[string]string{
		"fgimg_digest": string(s.Digest), "fgimg_image": "base", "fgimg_target": "web", "fgimg_step": "disk",
		"DRIVER":      "raw",
		"DESCRIPTION": "Debian GNU/Linux 12 (bookworm), built by fgimg from image base",
		"LOGO":        "images/logos/debian.png", "NOTE": hostile,
	}
	if s.Name != "web prod" || s.Format != "raw" || s.Visibility != "644" || !reflect.DeepEqual(s.Properties, wantProps) ||
		!reflect.DeepEqual(s.Options, map[string]string{"datastore": "default", "dev_prefix": "vd", "persistent": "true"}) {
		t.Errorf("step: %+v", s)
	}

	calls := runScript(t, dir, "oneimage")
	if len(calls) != 3 {
		t.Fatalf("oneimage ran %d times: %q", len(calls), calls)
	}
	wantCreate := []string{"oneimage", "create", "-d", "default", "--name", "web prod", "--path", filepath.Join(dir, "disk.raw"),
		"--type", "OS", "--prefix", "vd", "--format", "raw", "--driver", "raw", "--persistent"}
	if !slices.Equal(calls[0], wantCreate) {
		t.Errorf("create:\n got %q\nwant %q", calls[0], wantCreate)
	}
	// oneimage update ID --append FILE, then the file's content.
	if u := calls[1]; len(u) != 6 || u[1] != "update" || u[2] != "41" || u[3] != "--append" {
		t.Fatalf("update: %q", u)
	}
	var attrs []string
	for _, k := range sortedKeys(wantProps) {
		attrs = append(attrs, k+" = "+oneTemplateValue(wantProps[k]))
	}
	if got := strings.TrimSuffix(calls[1][5], "\n"); got != strings.Join(attrs, "\n") {
		t.Errorf("template attributes:\n got %s\nwant %s", got, strings.Join(attrs, "\n"))
	}
	if !slices.Equal(calls[2], []string{"oneimage", "chmod", "41", "644"}) {
		t.Errorf("chmod: %q", calls[2])
	}

	// fgimg register's OpenNebula client takes the step as it is, here
	// against its protocol fake of oned.
	fake := onefake.New(t.TempDir())
	fake.AddUser("alice", "pw")
	srv := httptest.NewServer(fake)
	defer func() { srv.Close(); fake.Wait() }()
	c, err := opennebula.New(srv.URL+"/RPC2", "alice:pw", "the test", &f)
	if err != nil {
		t.Fatal(err)
	}
	c.Backoff, c.Poll = time.Millisecond, 10*time.Millisecond
	im, err := c.Upload(context.Background(), s, s.Properties, filepath.Join(dir, s.Artifact))
	if err != nil {
		t.Fatal(err)
	}
	if im.State != register.StateReady || im.Name != "web prod" || im.Digest != s.Digest || im.Properties["description"] != wantProps["DESCRIPTION"] ||
		im.Properties["note"] != hostile || im.Properties["dev_prefix"] != "vd" || im.Properties["logo"] != "images/logos/debian.png" {
		t.Errorf("registered %+v", im)
	}
}

func TestOneTemplateValue(t *testing.T) {
	if got := oneTemplateValue(`a "b" \c`); got != `"a \"b\" \c"` {
		t.Errorf("got %s", got)
	}
	for k, v := range map[string]string{"type": "OS", "DEV_PREFIX": "sd", "A-B": "x", "NOTE": `ends in \`, "CDATA": "x]]>y", "BELL": "\a"} {
		if checkOneAttribute(k, v) == nil {
			t.Errorf("property %s = %q accepted", k, v)
		}
	}
	if err := checkOneAttribute("LOGO", "images/logos/debian.png\nline two\twith a tab and \"quotes\""); err != nil {
		t.Error(err)
	}
}
