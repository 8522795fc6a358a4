package targets

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/fgimg/fgimg/stages"
)

// adaptFiles is the files the adaptation of kind writes, by path, and
// the cloud-init stage's initrd modules.
func adaptFiles(t *testing.T, k Adapter, sp Spec) (map[string]string, []string) {
	t.Helper()
	files := map[string]string{}
	var modules []string
	for _, s := range k.Adapt(sp, digest.FromString("image")) {
		switch s := s.(type) {
		case *stages.Files:
			for _, e := range s.Entries {
				files[e.Path] = string(e.Content)
			}
		case *stages.CloudInit:
			modules = s.Virtio
		}
	}
	return files, modules
}

func TestEC2Write(t *testing.T) {
	needDiskTools(t)
	tg := loadTargets(t, "", `
target "ec2" "web" {
  image  = image.base
  name   = "web (prod)"
  region = "eu-west-3"
  bucket = "fgimg-stage"
  boot   = "hybrid"
  tags   = { team = "hpc", note = "`+strings.ReplaceAll(hostile, `"`, `\"`)+`" }
}`)["web"]
	spec := (EC2{}).Spec(tg).(*EC2Spec)
	if !spec.ENA || spec.Format != "raw" || spec.Prefix != "fgimg" || !slices.Contains(spec.KernelArgs, "console=ttyS0,115200n8") ||
		!slices.Contains(spec.KernelArgs, "nvme_core.io_timeout=4294967295") || spec.Properties["team"] != "hpc" {
		t.Errorf("spec: %+v", spec)
	}
	files, modules := adaptFiles(t, EC2{}, spec)
	if !strings.Contains(files["/etc/cloud/cloud.cfg.d/90_fgimg_datasource.cfg"], "datasource_list: [ Ec2, None ]") {
		t.Errorf("datasource: %q", files)
	}
	for _, m := range []string{"nvme", "ena", "xen_blkfront", "virtio_blk"} {
		if !slices.Contains(modules, m) {
			t.Errorf("initrd modules %v lack %s", modules, m)
		}
	}
	dir := t.TempDir()
	arts, err := (EC2{}).Write(context.Background(), diskInput(cloudTree(t)), spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Artifact{{"disk.raw", MediaTypeRawDisk}, {"register.json", MediaTypeRegister}, {"register.sh", MediaTypeRegisterScript}}; !reflect.DeepEqual(arts, want) {
		t.Fatalf("artifacts %v", arts)
	}
	f := registertest.Read(t, dir)
	checkSteps(t, dir, f)
	s := f.Steps[0]
	hex := s.Digest.Encoded()
	wantOpts := map[string]string{"bucket": "fgimg-stage", "key": "fgimg/web/" + hex + ".raw", "architecture": "x86_64",
		"boot_mode": "uefi-preferred", "ena": "true", "root_device": "/dev/xvda"}
	if f.Kind != "ec2" || f.Cloud != "eu-west-3" || len(f.Steps) != 1 || s.Name != "web (prod)-"+hex[:12] || s.Format != "raw" ||
		!reflect.DeepEqual(s.Options, wantOpts) || s.Properties["note"] != hostile || s.Properties["fgimg_target"] != "web" {
		t.Errorf("register.json: %+v", f)
	}

	// register.sh: the same steps with the aws CLI, every value quoted.
	calls := runScript(t, dir, "aws")
	var verbs []string
	for _, c := range calls {
		verbs = append(verbs, strings.Join(c[3:5], " "))
		if !slices.Equal(c[:3], []string{"aws", "--region", "eu-west-3"}) {
			t.Errorf("aws without the region: %q", c)
		}
	}
	if want := []string{"s3 cp", "ec2 import-snapshot", "ec2 wait", "ec2 describe-import-snapshot-tasks", "ec2 register-image", "ec2 create-tags"}; !slices.Equal(verbs, want) {
		t.Fatalf("register.sh ran %q", verbs)
	}
	if c := calls[0]; !slices.Equal(c[5:], []string{"disk.raw", "s3://fgimg-stage/fgimg/web/" + hex + ".raw", "--metadata", "fgimg-digest=" + string(s.Digest)}) {
		t.Errorf("s3 cp: %q", c)
	}
	reg := calls[4]
	arg := func(c []string, flag string) string {
		i := slices.Index(c, flag)
		if i < 0 || i+1 >= len(c) {
			t.Fatalf("%s missing from %q", flag, c)
		}
		return c[i+1]
	}
	var specs []struct {
		ResourceType string
		Tags         []struct{ Key, Value string }
	}
	if err := json.Unmarshal([]byte(arg(reg, "--tag-specifications")), &specs); err != nil || len(specs) != 1 {
		t.Fatalf("tag specifications: %v %q", err, reg)
	}
	tags := map[string]string{}
	for _, tg := range specs[0].Tags {
		tags[tg.Key] = tg.Value
	}
	if tags["note"] != hostile || tags["fgimg_digest"] != string(s.Digest) || arg(reg, "--name") != s.Name ||
		arg(reg, "--boot-mode") != "uefi-preferred" || !slices.Contains(reg, "--ena-support") {
		t.Errorf("register-image: %q", reg)
	}
	var bdm []map[string]any
	if err := json.Unmarshal([]byte(arg(reg, "--block-device-mappings")), &bdm); err != nil || bdm[0]["DeviceName"] != "/dev/xvda" {
		t.Errorf("block device mappings: %v %q", err, arg(reg, "--block-device-mappings"))
	}
}

func TestEucalyptusAndNimbusWrite(t *testing.T) {
	needDiskTools(t)
	tgs := loadTargets(t, "", `
target "eucalyptus" "euca" {
  image            = image.base
  endpoint         = "https://compute.euca.example:8773/"
  storage_endpoint = "https://osg.euca.example:8773/"
  bucket           = "images"
}
target "nimbus" "grid" {
  image    = image.base
  endpoint = "cumulus://cumulus.example:8888"
  metadata = { site = "uc" }
}`)
	in := diskInput(cloudTree(t))

	euca := (Eucalyptus{}).Spec(tgs["euca"])
	files, _ := adaptFiles(t, Eucalyptus{}, euca)
	if !strings.Contains(files["/etc/cloud/cloud.cfg.d/91_fgimg_ec2.cfg"], "strict_id: false") ||
		!strings.Contains(files["/etc/cloud/cloud.cfg.d/90_fgimg_datasource.cfg"], "[ Ec2, None ]") {
		t.Errorf("eucalyptus adaptation: %q", files)
	}
	dir := t.TempDir()
	if _, err := (Eucalyptus{}).Write(context.Background(), in, euca, dir); err != nil {
		t.Fatal(err)
	}
	f := registertest.Read(t, dir)
	s := f.Steps[0]
	if f.Kind != "eucalyptus" || f.Cloud != "https://compute.euca.example:8773/" || s.Options["storage_endpoint"] != "https://osg.euca.example:8773/" ||
		s.Options["bucket"] != "images" || s.Options["boot_mode"] != "" || s.Options["ena"] != "false" {
		t.Errorf("eucalyptus register.json: %+v", f)
	}
	for _, c := range runScript(t, dir, "aws") {
		want := "https://compute.euca.example:8773/"
		if slices.Contains(c, "s3") {
			want = "https://osg.euca.example:8773/"
		}
		if i := slices.Index(c, "--endpoint-url"); i < 0 || c[i+1] != want {
			t.Errorf("aws call without endpoint %s: %q", want, c)
		}
		if slices.Contains(c, "--boot-mode") {
			t.Errorf("eucalyptus has no boot modes: %q", c)
		}
	}

	grid := (Nimbus{}).Spec(tgs["grid"])
	files, _ = adaptFiles(t, Nimbus{}, grid)
	if !strings.Contains(files["/etc/cloud/cloud.cfg.d/90_fgimg_datasource.cfg"], "[ NoCloud, Ec2, None ]") {
		t.Errorf("nimbus datasources: %q", files)
	}
	dir = t.TempDir()
	if _, err := (Nimbus{}).Write(context.Background(), in, grid, dir); err != nil {
		t.Fatal(err)
	}
	f = registertest.Read(t, dir)
	s = f.Steps[0]
	if f.Kind != "nimbus" || f.Cloud != "cumulus://cumulus.example:8888" || s.Name != "grid-"+s.Digest.Encoded()[:12] ||
		!reflect.DeepEqual(s.Options, map[string]string{"bucket": "Repo", "base_key": "VMS"}) || s.Properties["site"] != "uc" {
		t.Errorf("nimbus register.json: %+v", f)
	}
	t.Setenv("NIMBUS_CANONICAL_ID", "0f3c-user")
	calls := runScript(t, dir, "aws")
	if len(calls) != 1 || !slices.Equal(calls[0][:7], []string{"aws", "--endpoint-url", "https://cumulus.example:8888", "s3", "cp", "disk.raw", "s3://Repo/VMS/0f3c-user/" + s.Name}) ||
		!strings.Contains(calls[0][8], "fgimg-digest="+string(s.Digest)) {
		t.Errorf("nimbus register.sh: %q", calls)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, register.ScriptName)); !strings.Contains(string(b), "cloud-client.sh --run --name "+s.Name) {
		t.Errorf("register.sh does not say how to start the image:\n%s", b)
	}
}

func TestS3CloudSchemaDiagnostics(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`target "ec2" "x" { image = image.base }`, "Missing bucket"},
		{`target "ec2" "x" {
  image  = image.base
  bucket = "b-1"
  boot   = "none"
}`, "boot"},
		{`target "ec2" "x" {
  image    = image.base
  bucket   = "b-1"
  endpoint = "http://127.0.0.1:1"
}`, "never holds credentials or endpoints"},
		{`target "ec2" "x" {
  image  = image.base
  bucket = "b-1"
  region = "Paris"
}`, "not an AWS region"},
		{`target "ec2" "x" {
  image  = image.base
  bucket = "b-1"
  format = "vmdk"
}`, "raw"},
		{`target "nimbus" "x" {
  image    = image.base
  endpoint = "ftp://repo"
}`, "not an endpoint URL"},
	} {
		dir := t.TempDir()
		body := "image \"base\" {\n  bootstrap \"debootstrap\" { suite = \"bookworm\" }\n  arch = \"amd64\"\n}\n" + c.src + "\n"
		if err := os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, diags := lang.Load(lang.LoadOptions{Paths: []string{dir}, Environ: []string{}, TargetKinds: Schemas()})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) {
			t.Errorf("%s\ndiagnostics: %v; want one saying %q", c.src, diags, c.want)
		}
	}
}
