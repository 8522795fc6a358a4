package stages

import (
	"context"
	"fmt"
	"strings"
)

// CloudInit prepares an image to configure itself from a cloud at boot,
// whatever the cloud: cloud-init and an SSH server (installed with the
// image's package manager when the image has none: an image that
// carries cloud-init already gets no second one), a network stack
// cloud-init can render its DHCP fallback to, the virtio drivers in the
// initrd, and no per-machine identity: an empty /etc/machine-id, no SSH
// host keys (cloud-init makes them at first boot) and no password for
// root. Which cloud it is, the datasource, is a file on top (see
// targets): this stage is shared by every cloud target of the image.
type CloudInit struct {
	// Virtio are the kernel modules put into the initrd.
	Virtio []string `json:"virtio"`
}

func (*CloudInit) Kind() string { return "cloud-init" }

// cloudPackages are what a cloud image needs, by the file that shows an
// image has it, as Debian names their packages.
var cloudPackages = []struct{ file, pkg string }{
	{"cloud-init", "cloud-init"},
	{"sshd", "openssh-server"},
}

// networkStacks are the commands of the network configurations
// cloud-init renders to (Debian: ifupdown, netplan, NetworkManager);
// systemd-networkd counts when it is enabled.
var networkStacks = []string{"ifup", "netplan", "NetworkManager"}

const networkdWants = "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"

// cloudPrepare is the part of the stage that runs inside the image once
// the packages are there; its arguments are the virtio modules.
const cloudPrepare = `set -eu
# The virtio drivers in the initrd, so that the root disk is found
# whatever the hypervisor's bus.
if ls /boot/vmlinuz-* >/dev/null 2>&1; then
	if command -v update-initramfs >/dev/null 2>&1; then
		mkdir -p /etc/initramfs-tools && touch /etc/initramfs-tools/modules
		for m in "$@"; do
			grep -qx "$m" /etc/initramfs-tools/modules || echo "$m" >>/etc/initramfs-tools/modules
		done
		update-initramfs -u -k all
	elif command -v dracut >/dev/null 2>&1; then
		mkdir -p /etc/dracut.conf.d
		echo "add_drivers+=\" $* \"" >/etc/dracut.conf.d/90-fgimg-virtio.conf
		dracut -f --regenerate-all
	else
		echo "fgimg: the image has a kernel but neither initramfs-tools nor dracut to put the virtio drivers into its initrd" >&2
		exit 1
	fi
fi
# Per-machine identity, made at first boot: cloud-init makes the SSH
# host keys, systemd the machine ID.
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
: >/etc/machine-id
[ -L /var/lib/dbus/machine-id ] || rm -f /var/lib/dbus/machine-id
# No password for root: keys come from the cloud.
if [ -f /etc/shadow ]; then
	sed -i 's/^root:[^:]*:/root:*:/' /etc/shadow
else
	sed -i 's/^root:[^:]*:/root:*:/' /etc/passwd
fi
echo "fgimg: no SSH host keys, an empty /etc/machine-id, root's password locked"
`

func runCloudInit(ctx context.Context, s *CloudInit, env *Env) error {
	for _, m := range s.Virtio {
		if m == "" || strings.ContainsAny(m, " \t\n\"'\\$`") || strings.HasPrefix(m, "-") {
			return fmt.Errorf("%q is not a kernel module name", m)
		}
	}
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	defer r.close()
	var need []string
	for _, p := range cloudPackages {
		if r.lookPath(p.file) == "" {
			need = append(need, p.pkg)
		} else {
			fmt.Fprintf(env.Log, "fgimg: the image has %s already\n", p.file)
		}
	}
	if !hasNetworkStack(r) {
		need = append(need, "ifupdown")
	}
	if len(need) > 0 {
		pm, path := findPackageManager(r)
		if pm != "apt-get" {
			if pm == "" {
				pm = "no package manager"
			}
			return fmt.Errorf("the image lacks %s for a cloud; fgimg installs them with apt-get only (Debian, Ubuntu), and the image has %s: add them to the image's packages",
				strings.Join(need, " and "), pm)
		}
		if err := install(ctx, r, env, pm, path, need); err != nil {
			return err
		}
	}
	args := append([]string{"/bin/sh", "-c", cloudPrepare, "fgimg-cloud-prepare"}, s.Virtio...)
	return runInImage(ctx, env, offline, "preparing the image for a cloud", nil, nil, args...)
}

// hasNetworkStack says whether the image has a network configuration
// cloud-init renders its DHCP fallback to.
func hasNetworkStack(r *root) bool {
	for _, c := range networkStacks {
		if r.lookPath(c) != "" {
			return true
		}
	}
	_, err := r.stat(networkdWants)
	return err == nil
}
