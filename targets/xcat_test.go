package targets

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/fgimg/fgimg/stages"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -run %s -update rewrites it):\n%s", name, t.Name(), got)
	}
}

func xcatRoot(t *testing.T) string {
	return registertest.Root(t, map[string]string{
		"boot/vmlinuz-6.1.0-13-amd64": "kernel",
		"sbin/init":                   "#!/bin/sh\n",
		"etc/os-release":              "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
	})
}

func xcatSpec() *XCATSpec {
	return &XCATSpec{Name: "hpc", Target: "hpc-xcat", Image: "hpc", InstallDir: "/install", ProvMethod: "netboot",
		Profile: "compute", OSArch: "x86_64", KernelArgs: []string{"console=ttyS0,115200n8", "quiet"}, MoabNodes: []string{"DEFAULT", "node01"}}
}

// TestXCATLayout: the artifacts are laid out as xCAT's rootimgdir under
// the install directory (netboot/<osvers>/<osarch>/<name>), the osimage
// stanza and register.sh are the golden ones, and register.json carries
// what fgimg register needs.
func TestXCATLayout(t *testing.T) {
	in := netbootInput(xcatRoot(t))
	in.Image.Arch = "amd64"
	dir := t.TempDir()
	arts, err := (XCAT{}).Write(context.Background(), in, xcatSpec(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var layout strings.Builder
	for _, a := range arts {
		layout.WriteString(a.Path + "\t" + a.MediaType + "\n")
	}
	golden(t, "xcat/layout", layout.String())
	f := registertest.Read(t, dir)
	s := f.Steps[0]
	if f.Kind != "xcat" || s.ID != "osimage" || s.Name != "hpc" || s.Artifact != "netboot/debian12/x86_64/hpc/rootimg.cpio.gz" ||
		s.Options["rootimgdir"] != "/install/netboot/debian12/x86_64/hpc" || s.Options["moab_nodes"] != "DEFAULT,node01" {
		t.Errorf("register.json: %+v", f)
	}
	// The digests change with the cpio writer; the golden files name them.
	k, _ := os.ReadFile(filepath.Join(dir, s.Options["kernel"]))
	if string(k) != "kernel" {
		t.Errorf("kernel %q", k)
	}
	placeholders := strings.NewReplacer(string(s.Digest), "sha256:ROOTIMG", s.Digest.Encoded(), "ROOTIMG",
		s.Options["kernel_digest"], "sha256:KERNEL", strings.TrimPrefix(s.Options["kernel_digest"], "sha256:"), "KERNEL")
	for _, name := range []string{XCATStanza, "register.sh"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "xcat/"+name, placeholders.Replace(string(b)))
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", filepath.Join(dir, "register.sh")).CombinedOutput(); err != nil {
			t.Errorf("register.sh: %v\n%s", err, out)
		}
	}
}

// The osimage's definition is in the image, so changing it (kernel
// arguments, Moab nodes) changes rootimg.cpio.gz and so the digest register
// compares.
func TestXCATSpecChangesTheImage(t *testing.T) {
	a, b := xcatSpec(), xcatSpec()
	b.MoabNodes = []string{"DEFAULT"}
	fa := (XCAT{}).Adapt(a, "sha256:00")[0].(*stages.Files)
	fb := (XCAT{}).Adapt(b, "sha256:00")[0].(*stages.Files)
	if fa.Entries[1].Path != xcatOSImageFile || fa.Entries[1].Digest == fb.Entries[1].Digest {
		t.Errorf("the Moab nodes do not change %s", xcatOSImageFile)
	}
}

// The stateless adaptation: an fstab with no local disk unless asked, and
// DHCP on the interface BOOTIF names.
func TestXCATStatelessAdaptation(t *testing.T) {
	entry := func(spec *XCATSpec, path string) string {
		for _, e := range (XCAT{}).Adapt(spec, "sha256:00")[0].(*stages.Files).Entries {
			if e.Path == path {
				return string(e.Content)
			}
		}
		t.Fatalf("no %s", path)
		return ""
	}
	for _, line := range strings.Split(entry(xcatSpec(), "/etc/fstab"), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			t.Errorf("fstab mounts %q", line)
		}
	}
	spec := xcatSpec()
	spec.Fstab = []string{"LABEL=scratch /scratch ext4 defaults,nofail 0 2"}
	if !strings.Contains(entry(spec, "/etc/fstab"), "\nLABEL=scratch /scratch ext4 defaults,nofail 0 2\n") {
		t.Error("the fstab asked for is not there")
	}

	sh := testkit.Need(t, "sh")[0]
	script := filepath.Join(t.TempDir(), "bootif")
	os.WriteFile(script, []byte(entry(spec, xcatBootIFScript)), 0o755)
	for _, c := range []struct{ cmdline, mac string }{
		{"BOOT_IMAGE=vmlinuz BOOTIF=01-52-54-00-AB-cd-01 XCAT=10.0.0.1:3001 quiet", "52:54:00:ab:cd:01"},
		{"ifname=boot:52:54:00:00:00:02 ip=boot:dhcp", "52:54:00:00:00:02"},
		{"quiet", ""},
	} {
		tmp := t.TempDir()
		os.WriteFile(filepath.Join(tmp, "cmdline"), []byte(c.cmdline+"\n"), 0o644)
		cmd := exec.Command(sh, script)
		cmd.Env = append(os.Environ(), "FGIMG_CMDLINE="+filepath.Join(tmp, "cmdline"), "FGIMG_NETWORK_DIR="+filepath.Join(tmp, "network"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", c.cmdline, err, out)
		}
		b, err := os.ReadFile(filepath.Join(tmp, "network", "05-fgimg-bootif.network"))
		if c.mac == "" {
			if err == nil {
				t.Errorf("%q: a network file without a boot interface:\n%s", c.cmdline, b)
			}
			continue
		}
		if !strings.Contains(string(b), "[Match]\nMACAddress="+c.mac+"\n") || !strings.Contains(string(b), "DHCP=yes") {
			t.Errorf("%q: %v\n%s", c.cmdline, err, b)
		}
	}
}

func TestXCATSchema(t *testing.T) {
	attr := func(name string) func(cty.Value) error {
		for _, a := range (XCAT{}).Schema().Attributes {
			if a.Name == name {
				return a.Validate
			}
		}
		t.Fatalf("no attribute %s", name)
		return nil
	}
	for _, c := range []struct {
		attr, value, err string
	}{
		{"provmethod", "statelite", "NFS"},
		{"provmethod", "install", "fgimg writes"},
		{"install_dir", "install", "absolute"},
		{"name", "hpc image", "not a usable name"},
	} {
		if err := attr(c.attr)(cty.StringVal(c.value)); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s = %q: %v, want an error saying %q", c.attr, c.value, err, c.err)
		}
	}
	if err := attr("fstab")(cty.ListVal([]cty.Value{cty.StringVal("/dev/sda1 /scratch")})); err == nil {
		t.Error("a two-field fstab line is accepted")
	}
}

const xcatInitScript = `#!/bin/sh
fail() { echo "FGIMG-NETBOOT-FAILED: $*"; /bin/busybox poweroff -f; }
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t tmpfs tmpfs /run
[ "$(/bin/busybox stat -f -c %T /)" = tmpfs ] || fail "the root is $(/bin/busybox stat -f -c %T /), not tmpfs"
grep -v '^#' /etc/fstab | grep -q . && fail "fstab mounts: $(cat /etc/fstab)"
/usr/lib/fgimg/xcat-bootif || fail "xcat-bootif"
grep -q '^MACAddress=52:54:00:12:34:56$' /run/systemd/network/05-fgimg-bootif.network || fail "no DHCP on the boot interface"
echo "FGIMG-NETBOOT-OK"
/bin/busybox poweroff -f
`

// TestXCATBootsInQEMU boots the xcat artifact as xCAT's nodeset would: the
// kernel with rootimg.cpio.gz as its initrd, BOOTIF on the command line.
// The root is the whole image on tmpfs, the fstab mounts nothing, and the
// adaptation's script asks DHCP on the boot interface.
func TestXCATBootsInQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under emulation; skipped in -short mode")
	}
	qemu := testkit.Need(t, "qemu-system-x86_64")[0]
	root := bootableBusybox(t, xcatInitScript)
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=debian\nVERSION_ID=12\n"), 0o644)
	spec := xcatSpec()
	// The adaptation's files, as its stage would write them.
	for _, e := range (XCAT{}).Adapt(spec, "sha256:00")[0].(*stages.Files).Entries {
		p := filepath.Join(root, e.Path)
		if e.Type == stages.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, e.Content, os.FileMode(e.Mode)); err != nil {
			t.Fatal(err)
		}
	}
	in := netbootInput(root)
	dir := t.TempDir()
	arts, err := (XCAT{}).Write(context.Background(), in, spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	args := "console=ttyS0 rdinit=/init panic=-1 BOOTIF=01-52-54-00-12-34-56 XCAT=10.0.0.1:3001"
	out, ok := netbootQEMU(t, qemu, filepath.Join(dir, arts[0].Path), filepath.Join(dir, arts[1].Path), args)
	if !ok {
		if len(out) > 6000 {
			out = "...\n" + out[len(out)-6000:]
		}
		t.Fatalf("no FGIMG-NETBOOT-OK on the serial console:\n%s", out)
	}
}

// Warewulf 4.6 boots the image's own kernel: an image without one is
// refused at build time, naming the package to add.
func TestWarewulfNeedsAKernel(t *testing.T) {
	root := registertest.Root(t, map[string]string{"sbin/init": "#!/bin/sh\n"})
	in := netbootInput(root)
	_, err := (Warewulf{}).Write(context.Background(), in, &WarewulfSpec{Name: "compute", Target: "ww", Image: "hpc", Compression: "gzip"}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "no kernel in /boot") || !strings.Contains(err.Error(), "linux-image-amd64") {
		t.Errorf("an image without a kernel: %v", err)
	}
}
