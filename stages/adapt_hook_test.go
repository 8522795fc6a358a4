package stages

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/testkit"
)

// TestESPHookFollowsKernelUpdates runs the hook a disk image carries, in
// a chroot, through a kernel update as Debian's packages would call it:
// the ESP's kernel and initrd change together, to the newest kernel's,
// and only once its initrd exists.
func TestESPHookFollowsKernelUpdates(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	chroot := testkit.Need(t, "chroot")[0]
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	put := func(rel, body string) { t.Helper(); testkit.WriteFile(t, root, rel, body) }
	get := func(rel string) string {
		b, _ := os.ReadFile(filepath.Join(root, rel))
		return string(b)
	}
	const old, nu = "6.1.0-9-amd64", "6.1.0-18-amd64"
	put("boot/vmlinuz-"+old, "kernel "+old)
	put("boot/initrd.img-"+old, "initrd "+old)
	put("boot/efi/vmlinuz", "kernel "+old)
	put("boot/efi/initrd.img", "initrd "+old)
	put("boot/efi/loader/entries/fgimg.conf", "title base\nversion "+old+"\nlinux /vmlinuz\n")
	put("boot/efi/syslinux/syslinux.cfg", "# base, kernel "+old+"\nDEFAULT fgimg\n")
	if err := writeESPHook(root, testkit.Epoch); err != nil {
		t.Fatal(err)
	}
	for _, p := range espHookPaths {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil || st.Mode().Perm() != 0o755 || !st.ModTime().Equal(testkit.Epoch) {
			t.Fatalf("%s: %v, %v", p, st, err)
		}
	}
	hook := func(path string, args ...string) {
		t.Helper()
		out, err := exec.Command(chroot, append([]string{root, "/bin/sh", path}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", path, args, err, out)
		}
	}
	esp := func() string { return get("boot/efi/vmlinuz") + " + " + get("boot/efi/initrd.img") }

	// The kernel is installed; its initrd is not made yet.
	put("boot/vmlinuz-"+nu, "kernel "+nu)
	hook("/etc/kernel/postinst.d/zz-fgimg-esp", nu, "/boot/vmlinuz-"+nu)
	if got, want := esp(), "kernel "+old+" + initrd "+old; got != want {
		t.Fatalf("before the new initrd, the ESP has %q, want %q", got, want)
	}
	// initramfs-tools makes it and calls its hooks.
	put("boot/initrd.img-"+nu, "initrd "+nu)
	hook("/etc/initramfs/post-update.d/zz-fgimg-esp", nu, "/boot/initrd.img-"+nu)
	if got, want := esp(), "kernel "+nu+" + initrd "+nu; got != want {
		t.Fatalf("after the update, the ESP has %q, want %q", got, want)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "boot/efi"))
	if len(ents) != 4 {
		t.Errorf("left on the ESP: %v", ents)
	}
	if e, s := get("boot/efi/loader/entries/fgimg.conf"), get("boot/efi/syslinux/syslinux.cfg"); !strings.Contains(e, "\nversion "+nu+"\n") || !strings.HasPrefix(s, "# base, kernel "+nu+"\n") {
		t.Errorf("the boot menus still show the old version:\n%s\n%s", e, s)
	}
	// The new kernel is removed: back to the old one.
	os.Remove(filepath.Join(root, "boot/vmlinuz-"+nu))
	os.Remove(filepath.Join(root, "boot/initrd.img-"+nu))
	hook("/etc/kernel/postrm.d/zz-fgimg-esp", nu, "/boot/vmlinuz-"+nu)
	if got, want := esp(), "kernel "+old+" + initrd "+old; got != want {
		t.Fatalf("after removing the new kernel, the ESP has %q, want %q", got, want)
	}
	// An ESP without fgimg's kernel (managed otherwise) is left alone.
	os.Remove(filepath.Join(root, "boot/efi/vmlinuz"))
	put("boot/vmlinuz-"+nu, "kernel "+nu)
	put("boot/initrd.img-"+nu, "initrd "+nu)
	hook("/etc/kernel/postinst.d/zz-fgimg-esp", nu)
	if got := get("boot/efi/initrd.img"); !strings.Contains(got, old) {
		t.Fatalf("the hook changed an ESP it does not manage: initrd.img is %q", got)
	}
}
