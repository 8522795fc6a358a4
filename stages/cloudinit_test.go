package stages

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cloudReadyRoot is a busybox image with what the cloud stage looks for
// (cloud-init, sshd, ifup) and a kernel, a fake update-initramfs that
// records its arguments, and a machine identity to remove.
func cloudReadyRoot(t *testing.T) string {
	root := busyboxRoot(t)
	for _, f := range []string{"usr/bin/cloud-init", "usr/sbin/sshd", "usr/sbin/ifup"} {
		writeRootFile(t, root, f, "#!/bin/sh\n", 0o755)
	}
	writeRootFile(t, root, "usr/sbin/update-initramfs", "#!/bin/sh\necho \"$@\" >>/tmp/update-initramfs\n", 0o755)
	writeRootFile(t, root, "boot/vmlinuz-6.1.0-18-amd64", "kernel\n", 0o644)
	writeRootFile(t, root, "etc/initramfs-tools/modules", "# modules\nvirtio_blk\n", 0o644)
	writeRootFile(t, root, "etc/ssh/ssh_host_ed25519_key", "secret\n", 0o600)
	writeRootFile(t, root, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA\n", 0o644)
	writeRootFile(t, root, "etc/ssh/sshd_config", "PermitRootLogin no\n", 0o644)
	writeRootFile(t, root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
	writeRootFile(t, root, "var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
	writeRootFile(t, root, "etc/shadow", "root:$6$salt$hash:19000:0:99999:7:::\nadmin:!:19000:0:99999:7:::\n", 0o640)
	return root
}

func TestCloudInitPreparesImage(t *testing.T) {
	root := cloudReadyRoot(t)
	log := mustRunStage(t, &CloudInit{Virtio: []string{"virtio_blk", "virtio_net", "virtio_pci"}}, root)
	if !strings.Contains(log, "the image has cloud-init already") || strings.Contains(log, "apt-get") {
		t.Errorf("an image with cloud-init got packages installed:\n%s", log)
	}
	if got := readRootFile(t, root, "tmp/update-initramfs"); got != "-u -k all\n" {
		t.Errorf("update-initramfs ran with %q", got)
	}
	if got := readRootFile(t, root, "etc/initramfs-tools/modules"); got != "# modules\nvirtio_blk\nvirtio_net\nvirtio_pci\n" {
		t.Errorf("/etc/initramfs-tools/modules:\n%s", got)
	}
	for _, gone := range []string{"etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "var/lib/dbus/machine-id"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("/%s is still there", gone)
		}
	}
	if got := readRootFile(t, root, "etc/ssh/sshd_config"); got != "PermitRootLogin no\n" {
		t.Errorf("sshd_config changed: %q", got)
	}
	if got := readRootFile(t, root, "etc/machine-id"); got != "" {
		t.Errorf("/etc/machine-id = %q, want empty", got)
	}
	if got := readRootFile(t, root, "etc/shadow"); got != "root:*:19000:0:99999:7:::\nadmin:!:19000:0:99999:7:::\n" {
		t.Errorf("/etc/shadow:\n%s", got)
	}
}

func TestCloudInitNeedsAptToInstall(t *testing.T) {
	root := cloudReadyRoot(t)
	os.Remove(filepath.Join(root, "usr/bin/cloud-init"))
	os.Remove(filepath.Join(root, "usr/sbin/ifup"))
	writeRootFile(t, root, "usr/bin/apk", "#!/bin/sh\nexit 1\n", 0o755)
	_, err := runStage(t, &CloudInit{Virtio: []string{"virtio_blk"}}, root)
	want := "cloud-init stage: the image lacks cloud-init and ifupdown for a cloud; fgimg installs them with apt-get only (Debian, Ubuntu), and the image has apk: add them to the image's packages"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v\nwant %s…", err, want)
	}
}

func TestCloudInitNeedsAnInitrdMaker(t *testing.T) {
	root := cloudReadyRoot(t)
	os.Remove(filepath.Join(root, "usr/sbin/update-initramfs"))
	_, err := runStage(t, &CloudInit{Virtio: []string{"virtio_blk"}}, root)
	if err == nil || !strings.Contains(err.Error(), "neither initramfs-tools nor dracut") {
		t.Fatalf("got %v", err)
	}
}

func TestCloudInitRejectsBadModuleNames(t *testing.T) {
	root := cloudReadyRoot(t)
	_, err := runStage(t, &CloudInit{Virtio: []string{"virtio_blk; reboot"}}, root)
	if err == nil || !strings.Contains(err.Error(), "is not a kernel module name") {
		t.Fatalf("got %v", err)
	}
}
