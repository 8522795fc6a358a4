package targets

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/fgimg/fgimg/stages"
)

// TestEucalyptusInstanceStore writes a boot = "none" eucalyptus target:
// the kernel, the initrd and a partitionless ext4 root file system of
// the adapted image, the steps that bundle them as EKI, ERI and an EMI
// referring to both, and register.sh with euca2ools' commands; the root
// image bundles and unbundles back to the same bytes.
func TestEucalyptusInstanceStore(t *testing.T) {
	needDiskTools(t)
	tg := loadTargets(t, "", `
target "eucalyptus" "euca" {
  image    = image.base
  endpoint = "https://compute.euca.example:8773/"
  bucket   = "images"
  boot     = "none"
  size     = "128MiB"
  tags     = { team = "hpc" }
}`)["euca"]
	spec := (Eucalyptus{}).Spec(tg).(*EucalyptusSpec)
	// No ESP around the root file system: its fstab must not wait for one.
	for _, st := range (Eucalyptus{}).Adapt(spec, digest.FromString("image")) {
		if d, ok := st.(*stages.DiskAdapt); ok && (d.ESPUUID != "" || d.RootUUID == "") {
			t.Errorf("instance-store disk adaptation: %+v", d)
		}
	}
	in := diskInput(cloudTree(t))
	dir := t.TempDir()
	arts, err := (Eucalyptus{}).Write(context.Background(), in, spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, a := range arts {
		paths = append(paths, a.Path)
	}
	if !slices.Equal(paths, []string{"vmlinuz", "initrd.img", "root.img", register.FileName, register.ScriptName}) {
		t.Errorf("artifacts: %v", paths)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "vmlinuz")); !strings.HasPrefix(string(b), "kernel "+testKernel+"\n") {
		t.Errorf("vmlinuz is not the newest kernel: %.30q", b)
	}
	// root.img is an ext4 file system, no partition table, holding the
	// image's files.
	root := filepath.Join(dir, "root.img")
	runTool(t, "e2fsck", "-fn", root)
	if out := runTool(t, "debugfs", "-R", "cat /etc/os-release", root); !strings.Contains(out, "ID=debian") && !strings.Contains(runTool(t, "debugfs", "-R", "cat /usr/lib/os-release", root), "ID=debian") {
		t.Errorf("root.img lacks the image's files: %q", out)
	}
	if out := runTool(t, "debugfs", "-R", "ls -l /boot", root); !strings.Contains(out, "vmlinuz-"+testKernel) {
		t.Errorf("root.img /boot: %s", out)
	}

	f := registertest.Read(t, dir)
	checkSteps(t, dir, f)
	if f.Kind != "eucalyptus" || len(f.Steps) != 3 {
		t.Fatalf("register.json: %+v", f)
	}
	for i, want := range []struct{ id, typ, artifact, format string }{
		{"kernel", "kernel", "vmlinuz", "eki"}, {"ramdisk", "ramdisk", "initrd.img", "eri"}, {"disk", "machine", "root.img", "emi"},
	} {
		s := f.Steps[i]
		hex := s.Digest.Encoded()
		if s.ID != want.id || s.Artifact != want.artifact || s.Format != want.format || s.Options["image_type"] != want.typ ||
			s.Options["key"] != "fgimg/euca/"+hex+"/"+want.artifact+".manifest.xml" || s.Options["bucket"] != "images" ||
			s.Options["architecture"] != "x86_64" || !strings.HasSuffix(s.Name, "-"+hex[:12]) || s.Properties["team"] != "hpc" {
			t.Errorf("step %d: %+v", i, s)
		}
	}
	if r := f.Steps[2].Refs; r["kernel_id"] != "kernel" || r["ramdisk_id"] != "ramdisk" {
		t.Errorf("the EMI's refs: %v", r)
	}

	// The root image as the cloud gets it back from its bundle.
	cloudKey, user, _ := eucabundle.UseTestCredentials(t)
	t.Setenv("S3_URL", "https://osg.euca.example:8773/")
	keys, err := eucabundle.LoadKeys()
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string][]byte{}
	raw, err := eucabundle.Write(bytes.NewReader(img), int64(len(img)), eucabundle.Image{Name: "root.img", Arch: "x86_64", Type: eucabundle.TypeMachine}, keys,
		func(n string, d []byte) error { parts[n] = append([]byte(nil), d...); return nil })
	if err != nil {
		t.Fatal(err)
	}
	m, err := eucabundle.Read(raw, user)
	if err != nil {
		t.Fatal(err)
	}
	var back bytes.Buffer
	if err := m.Unbundle(cloudKey, func(n string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(parts[n])), nil }, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), img) {
		t.Fatal("root.img did not survive its bundle")
	}

	// register.sh: euca2ools, the EKI and ERI IDs passed on to the EMI.
	calls := runScript(t, dir, "euca-bundle-image", "euca-upload-bundle", "euca-register", "euca-create-tags")
	var names []string
	for _, c := range calls {
		names = append(names, c[0])
	}
	want := slices.Repeat([]string{"euca-bundle-image", "euca-upload-bundle", "euca-register", "euca-create-tags"}, 3)
	if !slices.Equal(names, want) {
		t.Fatalf("register.sh calls: %q", names)
	}
	if c := calls[0]; !slices.Equal(c[1:], []string{"-i", "vmlinuz", "-r", "x86_64", "-d", c[6], "--kernel", "true"}) {
		t.Errorf("kernel bundle: %q", c)
	}
	emiBundle, emiReg := calls[8], calls[10]
	if i := slices.Index(emiBundle, "--kernel"); i < 0 || emiBundle[i+1] != "emi-3" || emiBundle[slices.Index(emiBundle, "--ramdisk")+1] != "emi-7" {
		t.Errorf("the EMI's bundle does not name the EKI and ERI registered before: %q", emiBundle)
	}
	if emiReg[1] != "-U" || emiReg[2] != "https://compute.euca.example:8773/" || emiReg[3] != "images/"+f.Steps[2].Options["key"] ||
		emiReg[slices.Index(emiReg, "--kernel")+1] != "emi-3" {
		t.Errorf("euca-register of the EMI: %q", emiReg)
	}
	if up := calls[1]; !slices.Contains(up, "images/fgimg/euca/"+f.Steps[0].Digest.Encoded()) {
		t.Errorf("euca-upload-bundle of the kernel: %q", up)
	}
}
