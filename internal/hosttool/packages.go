package hosttool

// Package says which package provides a host tool or file, per
// distribution family. An empty name: not known for that family.
type Package struct {
	Deb string // Debian and Ubuntu (apt-get)
	RPM string // Fedora, RHEL and their rebuilds (dnf)
}

// Packages maps each host tool (by program name) and host file (by
// absolute path) that fgimg or its tests use to the package providing
// it. Every Debian name here is in the Makefile's APT_PACKAGES, which
// `make deps` installs.
var Packages = map[string]Package{
	// Bootstrap stages.
	"debootstrap": {"debootstrap", "debootstrap"},
	"mmdebstrap":  {"mmdebstrap", "mmdebstrap"},
	"useradd":     {"passwd", "shadow-utils"},
	"usermod":     {"passwd", "shadow-utils"},
	"groupadd":    {"passwd", "shadow-utils"},
	// Disk targets.
	"mkfs.ext4": {"e2fsprogs", "e2fsprogs"},
	"tune2fs":   {"e2fsprogs", "e2fsprogs"},
	"e2fsck":    {"e2fsprogs", "e2fsprogs"},
	"debugfs":   {"e2fsprogs", "e2fsprogs"},
	"fsck.fat":  {"dosfstools", "dosfstools"},
	"syslinux":  {"syslinux", "syslinux"},
	"mcopy":     {"mtools", "mtools"},
	"mdir":      {"mtools", "mtools"},
	"mtype":     {"mtools", "mtools"},
	"eatmydata": {"eatmydata", "libeatmydata"},
	GPTMBR:      {Deb: "syslinux-common"},
	SystemdBoot: {Deb: "systemd-boot-efi"},
	// Booting what was built.
	"qemu-system-x86_64":           {"qemu-system-x86", "qemu-system-x86-core"},
	"qemu-img":                     {"qemu-utils", "qemu-img"},
	"qemu-io":                      {"qemu-utils", "qemu-img"},
	"/usr/share/OVMF/OVMF_CODE.fd": {Deb: "ovmf"},
	"/usr/share/OVMF/OVMF_VARS.fd": {Deb: "ovmf"},
	// The sandbox's unprivileged builds.
	"pasta":     {"passt", "passt"},
	"nsenter":   {"util-linux", "util-linux"},
	"newuidmap": {"uidmap", "shadow-utils"},
	"newgidmap": {"uidmap", "shadow-utils"},
	// Tests: fixtures and checks with the field's tools.
	"busybox":         {"busybox-static", "busybox"},
	"skopeo":          {"skopeo", "skopeo"},
	"docker-registry": {Deb: "docker-registry"},
	"cpio":            {"cpio", "cpio"},
	"zstd":            {"zstd", "zstd"},
	"pigz":            {"pigz", "pigz"},
	"gzip":            {"gzip", "gzip"},
	"tar":             {"tar", "tar"},
	"chroot":          {"coreutils", "coreutils"},
	"findmnt":         {"util-linux", "util-linux"},
	"git":             {"git", "git"},
	"make":            {"make", "make"},
	"rpm":             {"rpm", "rpm"},
	"rpmbuild":        {"rpm", "rpm-build"},
	"systemctl":       {"systemd", "systemd"},
	// The bare-metal register.sh scripts, run in their tests.
	"flock":     {"util-linux", "util-linux"},
	"sha256sum": {"coreutils", "coreutils"},
	"install":   {"coreutils", "coreutils"},
	// Tests of registration: a real Keystone and Glance, and the
	// openstack client the benchmarks compare with.
	"keystone-manage": {Deb: "python3-keystone"},
	"glance-api":      {Deb: "glance-api"},
	"glance-manage":   {Deb: "glance-common"},
	"uwsgi-core":      {Deb: "uwsgi-core"},
	"python3":         {"python3-minimal", "python3"},
	"openstack":       {Deb: "python3-openstackclient"},
	"openssl":         {"openssl", "openssl"}, // tests: unbundling as euca2ools does
}

// Host files, by the Debian package that installs them.
const (
	// GPTMBR is syslinux's boot code for a GPT disk's MBR.
	GPTMBR = "/usr/lib/syslinux/mbr/gptmbr.bin"
	// SystemdBoot is systemd-boot's x86-64 UEFI binary; SystemdBootFmt
	// has a %s for the architecture suffix (x64, aa64).
	SystemdBoot    = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	SystemdBootFmt = "/usr/lib/systemd/boot/efi/systemd-boot%s.efi"
)
