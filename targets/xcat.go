package targets

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/baremetal"
	"github.com/fgimg/fgimg/stages"
)

// XCAT is the xcat kind: a stateless xCAT osimage. The image is adapted
// for a node whose root is the initramfs in RAM (stateless: an fstab with
// no local disk unless asked, DHCP on the interface the node booted from,
// xCAT's postscripts at boot), and written as xCAT's genimage and packimage
// lay it out under the install directory:
//
//	netboot/<osvers>/<osarch>/<name>/kernel
//	netboot/<osvers>/<osarch>/<name>/rootimg.cpio.gz
//
// (the rootimgdir, whose last component is the osimage's name), with
// osimage.stanza, the osimage definition for `mkdef -z`, and the
// registration steps, register.json and register.sh. rootimg.cpio.gz is
// the whole root filesystem as a newc cpio archive, as packimage makes it,
// and also the node's initrd: register installs it as initrd-stateless.gz
// too (a hard link), so the kernel unpacks the whole image into its tmpfs
// root and xCAT's imgurl download is not needed.
type XCAT struct{}

// XCATSpec is an xcat target's hashed spec.
type XCATSpec struct {
	// Name is the osimage's name; Target and Image the target's and the
	// fgimg image's names.
	Name       string `json:"name"`
	Target     string `json:"target"`
	Image      string `json:"image"`
	InstallDir string `json:"install_dir"`
	ProvMethod string `json:"provmethod"`
	Profile    string `json:"profile"`
	// OSVers is the template's; empty: from the image's os-release
	// (ID and VERSION_ID, such as debian12) when written.
	OSVers     string   `json:"osvers,omitempty"`
	OSArch     string   `json:"osarch"`
	KernelArgs []string `json:"kernel_args,omitempty"`
	Fstab      []string `json:"fstab,omitempty"`
	// MoabNodes are the NODECFG entries of moab.cfg whose OSLIST gets
	// the osimage; none: Moab is not told.
	MoabNodes []string `json:"moab_nodes,omitempty"`
	Replace   bool     `json:"replace,omitempty"`
}

// Kind implements Spec.
func (*XCATSpec) Kind() string { return "xcat" }

// Summary implements Spec.
func (s *XCATSpec) Summary() string {
	sum := fmt.Sprintf("osimage %q, %s, %s", s.Name, s.ProvMethod, s.InstallDir)
	if len(s.MoabNodes) > 0 {
		sum += ", Moab " + strings.Join(s.MoabNodes, ",")
	}
	return sum
}

// Name implements Kind.
func (XCAT) Name() string { return "xcat" }

// bareMetalName is what xCAT object names and Warewulf image names share
// that also survives shell words, Moab's comma lists and a file name.
var bareMetalName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`) })

func validateBareMetalName(v cty.Value) error {
	if !bareMetalName().MatchString(v.AsString()) {
		return fmt.Errorf("%q is not a usable name: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128", v.AsString())
	}
	return nil
}

// Schema implements Kind.
func (XCAT) Schema() *lang.TargetSchema {
	return &lang.TargetSchema{Attributes: []lang.TargetAttribute{
		{Name: "name", Type: cty.String, Validate: validateBareMetalName,
			Doc: "the osimage's name, the last component of its rootimgdir; default: the target's name"},
		{Name: "install_dir", Type: cty.String, Default: cty.StringVal("/install"), Validate: validateInstallDir,
			Doc: "xCAT's install directory on the management node (site.installdir)"},
		{Name: "provmethod", Type: cty.String, Default: cty.StringVal("netboot"), Validate: validateProvMethod,
			Doc: "netboot: stateless, the whole root in RAM"},
		{Name: "profile", Type: cty.String, Default: cty.StringVal("compute"), Validate: validateBareMetalName,
			Doc: "the osimage's profile"},
		{Name: "osvers", Type: cty.String, Validate: validateBareMetalName,
			Doc: "the osimage's osvers; default: the image's os-release ID and VERSION_ID, such as debian12"},
		kernelArgsAttr,
		{Name: "fstab", Type: cty.List(cty.String), Validate: validateFstab,
			Doc: "/etc/fstab lines for local disks (scratch, swap); default none: the root is in RAM"},
		{Name: "moab_nodes", Type: cty.List(cty.String), Validate: validateMoabNodes,
			Doc: "Moab NODECFG entries (DEFAULT, or node names) whose OSLIST gets the osimage; default none"},
		{Name: "replace", Type: cty.Bool, Default: cty.False,
			Doc: "retire the older osimages fgimg registered for this target once the new one is defined"},
	}}
}

func validateInstallDir(v cty.Value) error {
	d := v.AsString()
	if !path.IsAbs(d) || path.Clean(d) != d || d == "/" || strings.ContainsAny(d, " \t\n'\"\\$`") {
		return fmt.Errorf("install_dir %q must be a clean absolute path other than /, without blanks or quotes", d)
	}
	return nil
}

func validateProvMethod(v cty.Value) error {
	switch v.AsString() {
	case "netboot":
		return nil
	case "statelite":
		return fmt.Errorf("statelite needs the root tree exported over NFS with xCAT's litefile table, which fgimg does not lay out; use provmethod = \"netboot\" (the whole root in RAM)")
	}
	return fmt.Errorf("provmethod %q: fgimg writes \"netboot\" (stateless) osimages", v.AsString())
}

func validateFstab(v cty.Value) error {
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		line := e.AsString()
		if f := strings.Fields(line); len(f) < 4 || len(f) > 6 || strings.ContainsAny(line, "\n\r") {
			return fmt.Errorf("fstab line %q: want 4 to 6 fields (device, mount point, type, options, dump, pass) on one line", line)
		}
	}
	return nil
}

var moabNode = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func validateMoabNodes(v cty.Value) error {
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if !moabNode.MatchString(e.AsString()) {
			return fmt.Errorf("%q is not a Moab node name (or DEFAULT)", e.AsString())
		}
	}
	return nil
}

// Spec implements Kind.
func (XCAT) Spec(t *lang.Target) Spec {
	s := &XCATSpec{Name: t.Str("name"), Target: t.Name, Image: t.Image.Name, InstallDir: t.Str("install_dir"),
		ProvMethod: t.Str("provmethod"), Profile: t.Str("profile"), OSVers: t.Str("osvers"),
		OSArch: machineArch(t.Image.Meta.Arch), KernelArgs: t.Strs("kernel_args"), Fstab: t.Strs("fstab"),
		MoabNodes: t.Strs("moab_nodes"), Replace: t.Bool("replace")}
	if s.Name == "" {
		s.Name = t.Name
	}
	return s
}

// Boot implements Kind: the kernel with rootimg.cpio.gz as its initrd.
func (XCAT) Boot(sp Spec) (*Boot, error) {
	spec, err := specAs[*XCATSpec](sp, "xcat")
	if err != nil {
		return nil, err
	}
	return &Boot{Kernel: MediaTypeKernel, Initrd: MediaTypeInitramfs, Firmware: FirmwareAny, KernelArgs: spec.KernelArgs}, nil
}

// Files of the stateless adaptation.
const (
	xcatBootIFScript    = "/usr/lib/fgimg/xcat-bootif"
	xcatPostScript      = "/usr/lib/fgimg/xcat-postscripts"
	xcatOSImageFile     = "/etc/fgimg/osimage"
	xcatBootIFUnit      = "fgimg-xcat-bootif.service"
	xcatPostscriptsUnit = "fgimg-xcat-postscripts.service"
)

// xcatBootIF writes a systemd-networkd configuration asking DHCP on the
// interface the node booted from: BOOTIF= (01-aa-bb-cc-dd-ee-ff, as
// PXELINUX's IPAPPEND 2 and xCAT's nodeset pass it), else ifname=NAME:MAC;
// without either, the image's own network configuration applies.
const xcatBootIF = `#!/bin/sh
# Written by fgimg for xCAT stateless nodes: DHCP on the boot interface
# that the kernel command line names (BOOTIF= or ifname=NAME:MAC).
set -eu
# FGIMG_CMDLINE and FGIMG_NETWORK_DIR stand in for /proc/cmdline and
# /run/systemd/network when the script is tried outside a booting node.
netdir=${FGIMG_NETWORK_DIR:-/run/systemd/network}
mac=
for arg in $(cat "${FGIMG_CMDLINE:-/proc/cmdline}"); do
	case "$arg" in
	BOOTIF=??-*) mac=$(echo "${arg#BOOTIF=??-}" | tr - : | tr A-F a-f) ;;
	ifname=*:*) [ -n "$mac" ] || mac=$(echo "${arg#ifname=*:}" | tr A-F a-f) ;;
	esac
done
[ -n "$mac" ] || exit 0
mkdir -p "$netdir"
printf '%s\n' "# Written at boot by fgimg-xcat-bootif: the interface the node booted from." \
	"[Match]" "MACAddress=$mac" "" "[Network]" "DHCP=yes" "" "[Link]" "RequiredForOnline=yes" \
	>"$netdir/05-fgimg-bootif.network"
echo "fgimg: DHCP on the boot interface $mac"
`

const xcatBootIFUnitText = `[Unit]
Description=DHCP on the boot interface named on the kernel command line (fgimg, xCAT)
DefaultDependencies=no
Before=systemd-networkd.service network-pre.target
Wants=network-pre.target
After=local-fs.target

[Service]
Type=oneshot
ExecStart=` + xcatBootIFScript + `

[Install]
WantedBy=sysinit.target
`

// xcatPostscriptsText is the hook for xCAT's postscripts: the image's own
// (/etc/fgimg/xcat-postscripts.d), then xCAT's xcatdsklspost in stateless
// mode (no argument, as xCAT's xcatpostinit1 runs it), fetched from the
// management node that XCAT= names when the image does not carry it.
const xcatPostscriptsText = `#!/bin/sh
# Written by fgimg for xCAT stateless nodes: runs the image's own
# postscripts, then xCAT's (xcatdsklspost, stateless mode).
set -u
for s in /etc/fgimg/xcat-postscripts.d/*; do
	[ -x "$s" ] && "$s"
done
xcat=
for arg in $(cat /proc/cmdline); do
	case "$arg" in XCAT=*) xcat=${arg#XCAT=} ;; esac
done
mn=${xcat%%%%:*}
script=/opt/xcat/xcatdsklspost
if [ ! -x "$script" ] && [ -n "$mn" ]; then
	mkdir -p /opt/xcat
	url="http://$mn%s/postscripts/xcatdsklspost"
	if command -v curl >/dev/null; then
		curl -fsS -o "$script" "$url"
	elif command -v wget >/dev/null; then
		wget -q -O "$script" "$url"
	else
		echo "fgimg: neither curl nor wget to fetch $url" >&2
		exit 1
	fi && chmod 0755 "$script"
fi
[ -x "$script" ] || exit 0
exec "$script"
`

const xcatPostscriptsUnitText = `[Unit]
Description=xCAT postscripts (fgimg hook)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=` + xcatPostScript + `
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`

// Adapt implements Adapter: the stateless node's files, then its units
// enabled.
func (XCAT) Adapt(sp Spec, _ digest.Digest) []stages.Spec {
	spec := sp.(*XCATSpec)
	fstab := "# Written by fgimg for a stateless xCAT node: the root file system is the\n" +
		"# initramfs, in RAM (tmpfs); nothing of a local disk is mounted unless listed here.\n"
	for _, l := range spec.Fstab {
		fstab += l + "\n"
	}
	files := &stages.Files{Entries: []stages.FileEntry{
		dirEntry("/etc/fgimg"),
		fileEntry(xcatOSImageFile, 0o644, xcatOSImageText(spec)),
		dirEntry("/etc/fgimg/xcat-postscripts.d"),
		fileEntry("/etc/fstab", 0o644, fstab),
		fileEntry("/etc/systemd/system/"+xcatBootIFUnit, 0o644, xcatBootIFUnitText),
		fileEntry("/etc/systemd/system/"+xcatPostscriptsUnit, 0o644, xcatPostscriptsUnitText),
		dirEntry("/usr/lib/fgimg"),
		fileEntry(xcatBootIFScript, 0o755, xcatBootIF),
		fileEntry(xcatPostScript, 0o755, fmt.Sprintf(xcatPostscriptsText, spec.InstallDir)),
	}}
	return []stages.Spec{files, &stages.Services{Units: []stages.Unit{
		{Name: xcatBootIFUnit, Enabled: true},
		{Name: xcatPostscriptsUnit, Enabled: true},
	}}}
}

// xcatOSImageText is /etc/fgimg/osimage: what the node was made as. It
// puts the whole spec into the image, so that any change of the osimage's
// definition changes rootimg.cpio.gz's digest, by which register knows it.
func xcatOSImageText(s *XCATSpec) string {
	var b strings.Builder
	b.WriteString("# Written by fgimg: the xCAT osimage this node boots.\n")
	for _, kv := range [][2]string{
		{"NAME", s.Name}, {"TARGET", s.Target}, {"IMAGE", s.Image}, {"INSTALL_DIR", s.InstallDir},
		{"PROVMETHOD", s.ProvMethod}, {"PROFILE", s.Profile}, {"OSVERS", s.OSVers}, {"OSARCH", s.OSArch},
		{"KERNEL_ARGS", strings.Join(s.KernelArgs, " ")}, {"FSTAB", strings.Join(s.Fstab, "\n")},
		{"MOAB_NODES", strings.Join(s.MoabNodes, ",")},
	} {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], shquote.Quote(kv[1]))
	}
	return b.String()
}

func dirEntry(path string) stages.FileEntry {
	return stages.FileEntry{Path: path, Type: stages.TypeDir, Mode: 0o755, Owner: "root", Group: "root"}
}

// Write implements Kind.
func (XCAT) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	arts, err := writeXCAT(ctx, in, sp, dir)
	if err != nil {
		return nil, fmt.Errorf("xcat target: %w", err)
	}
	return arts, nil
}

// XCATStanza is the file holding the osimage definition, and
// MediaTypeXCATStanza its media type.
const (
	XCATStanza          = "osimage.stanza"
	MediaTypeXCATStanza = "text/vnd.fgimg.xcat-stanza"
)

func writeXCAT(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*XCATSpec](sp, "xcat")
	if err != nil {
		return nil, err
	}
	if err := checkKernelArgs(spec.KernelArgs); err != nil {
		return nil, err
	}
	if in.Root == "" {
		return nil, fmt.Errorf("no root filesystem to read (Input.Root is empty)")
	}
	osvers := spec.OSVers
	if osvers == "" {
		rel, err := readOSRelease(in.Root)
		if err != nil {
			return nil, err
		}
		osvers = strings.ToLower(rel["ID"] + rel["VERSION_ID"])
		if !bareMetalName().MatchString(osvers) {
			return nil, fmt.Errorf("image %q has no usable ID and VERSION_ID in its os-release for the osimage's osvers (%q): set osvers", in.Image.Name, osvers)
		}
	}
	kernel, err := imageKernel(in)
	if err != nil {
		return nil, err
	}
	extra, err := netbootInit(in)
	if err != nil {
		return nil, err
	}
	c, err := initramfsCompression("gzip")
	if err != nil {
		return nil, err
	}
	rel := path.Join("netboot", osvers, spec.OSArch, spec.Name)
	rootimgdir := path.Join(spec.InstallDir, rel)
	if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(rel)), 0o755); err != nil {
		return nil, err
	}
	kernelArt := Artifact{Path: rel + "/kernel", MediaType: MediaTypeKernel}
	rootArt := Artifact{Path: rel + "/rootimg.cpio.gz", MediaType: c.mediaType}
	if err := writeFile(filepath.Join(dir, filepath.FromSlash(kernelArt.Path)), func(f *os.File) error { return copyFrom(f, kernel) }); err != nil {
		return nil, fmt.Errorf("copying the kernel: %w", err)
	}
	if err := writeRootCpio(ctx, in, c, extra, filepath.Join(dir, filepath.FromSlash(rootArt.Path))); err != nil {
		return nil, fmt.Errorf("writing %s: %w", rootArt.Path, err)
	}
	k, err := measure(dir, kernelArt)
	if err != nil {
		return nil, err
	}
	root, err := measure(dir, rootArt)
	if err != nil {
		return nil, err
	}
	mark := baremetal.Mark{Digest: root.digest, Target: spec.Target, Image: spec.Image, Step: "osimage", Name: spec.Name}
	stanza := XCATOSImageStanza(spec, osvers, rootimgdir, mark)
	if err := os.WriteFile(filepath.Join(dir, XCATStanza), []byte(stanza), 0o644); err != nil {
		return nil, err
	}
	step := register.Step{
		ID: "osimage", Artifact: root.Path, Digest: root.digest, Size: root.size, Name: spec.Name, Format: "cpio.gz",
		Properties: mark.Properties(),
		Options: map[string]string{
			"install_dir": spec.InstallDir, "rootimgdir": rootimgdir,
			"kernel": k.Path, "kernel_digest": string(k.digest), "stanza": XCATStanza,
			"moab_nodes": strings.Join(spec.MoabNodes, ","),
		},
	}
	f := register.File{Version: register.FileVersion, Target: spec.Target, Kind: "xcat", Image: spec.Image,
		ImageID: in.Image.ID, TargetDigest: in.Digest, Replace: spec.Replace, Steps: []register.Step{step}}
	arts := []Artifact{kernelArt, rootArt, {Path: XCATStanza, MediaType: MediaTypeXCATStanza}}
	return writeRegisterFiles(dir, f, xcatScript(spec, step, k), arts)
}

// XCATOSImageStanza is the osimage definition in xCAT's stanza format
// (what `lsdef -z` prints and `mkdef -z` reads): the name line, then
// objtype and the attributes in name order, each indented on its line.
// The description carries fgimg's mark: the packed image's digest, the
// target, the image and the name.
func XCATOSImageStanza(spec *XCATSpec, osvers, rootimgdir string, mark baremetal.Mark) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by fgimg: the osimage of target %q (image %q), for mkdef -z.\n", spec.Target, spec.Image)
	fmt.Fprintf(&b, "%s:\n    objtype=osimage\n", spec.Name)
	attrs := map[string]string{
		"description": "fgimg " + strings.Join(mark.Fields(), " "),
		"imagetype":   "linux",
		"osarch":      spec.OSArch,
		"osname":      "Linux",
		"osvers":      osvers,
		"profile":     spec.Profile,
		"provmethod":  spec.ProvMethod,
		"rootimgdir":  rootimgdir,
	}
	if len(spec.KernelArgs) > 0 {
		attrs["addkcmdline"] = strings.Join(spec.KernelArgs, " ")
	}
	for _, k := range sortedKeys(attrs) {
		fmt.Fprintf(&b, "    %s=%s\n", k, attrs[k])
	}
	return b.String()
}

// xcatScript is register.sh: the files copied into place, the osimage
// defined (or changed), and Moab told, under the bare-metal lock.
func xcatScript(spec *XCATSpec, s register.Step, k *cloudArtifact) string {
	var b strings.Builder
	q := shquote.Quote
	b.WriteString(bareMetalScriptHead("this xcat target on the xCAT management node with\n# xCAT's (and Moab's) own commands",
		"keeps the older osimage", [][2]string{{s.Artifact, s.Digest.Encoded()}, {k.Path, k.digest.Encoded()}}))
	fmt.Fprintf(&b, "PATH=$PATH:/opt/xcat/bin:/opt/xcat/sbin\nrootimgdir=%s\n", q(s.Options["rootimgdir"]))
	b.WriteString("mkdir -p \"$rootimgdir\"\n")
	fmt.Fprintf(&b, "install -m 0644 %s \"$rootimgdir/kernel\"\n", q(k.Path))
	fmt.Fprintf(&b, "install -m 0644 %s \"$rootimgdir/rootimg.cpio.gz\"\n", q(s.Artifact))
	b.WriteString("# The packed image is the initrd too: the kernel unpacks the whole root into RAM.\n")
	b.WriteString("ln -f \"$rootimgdir/rootimg.cpio.gz\" \"$rootimgdir/initrd-stateless.gz\"\n")
	fmt.Fprintf(&b, "if lsdef -t osimage -o %s >/dev/null 2>&1; then\n", q(spec.Name))
	fmt.Fprintf(&b, "\tsed -n 's/^    //p' %s | grep -v '^objtype=' | tr '\\n' '\\0' | xargs -0 chdef -t osimage -o %s\n", q(XCATStanza), q(spec.Name))
	fmt.Fprintf(&b, "else\n\tmkdef -z <%s\nfi\n", q(XCATStanza))
	if len(spec.MoabNodes) > 0 {
		b.WriteString("\n# Moab: the osimage in the provisioning OS list (OSLIST) of each NODECFG, then\n# the scheduler recycled to read it.\n")
		b.WriteString("moabcfg=${MOABHOMEDIR:-/opt/moab}/etc/moab.cfg\n[ -f \"$moabcfg\" ] || moabcfg=${MOABHOMEDIR:-/opt/moab}/moab.cfg\n")
		ere := strings.ReplaceAll(spec.Name, ".", `\.`)
		for _, n := range spec.MoabNodes {
			sel := fmt.Sprintf(`^[[:space:]]*NODECFG\[%s\][[:space:]]`, strings.ReplaceAll(n, ".", `\.`))
			fmt.Fprintf(&b, "if grep -Eq %s \"$moabcfg\"; then\n", q(sel+`.*OSLIST=`))
			fmt.Fprintf(&b, "\tgrep -Eq %s \"$moabcfg\" ||\n", q(sel+`.*OSLIST=([^[:space:]]*,)?`+ere+`(,|[[:space:]]|$)`))
			fmt.Fprintf(&b, "\t\tsed -i -E %s \"$moabcfg\"\n", q(`/`+sel+`.*OSLIST=/s/OSLIST=([^[:space:]]*)/OSLIST=\1,`+spec.Name+`/`))
			fmt.Fprintf(&b, "else\n\techo %s >>\"$moabcfg\"\nfi\n", q(fmt.Sprintf("NODECFG[%s] OSLIST=%s", n, spec.Name)))
		}
		b.WriteString("PATH=$PATH:/opt/moab/bin:/opt/moab/sbin mschedctl -R\n")
	}
	return b.String()
}

// bareMetalScriptHead starts a bare-metal register.sh: it runs from its own
// folder, checks the artifacts' digests (path, hex) and takes the bare-metal
// lock, as fgimg register does.
func bareMetalScriptHead(what, keeps string, files [][2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# Written by fgimg: registers %s, the same steps as register.json.\n", what)
	fmt.Fprintf(&b, "# fgimg register performs them idempotently and %s; this script replaces it.\n", keeps)
	b.WriteString("set -eu\ncd \"$(dirname \"$0\")\"\n")
	for _, f := range files {
		fmt.Fprintf(&b, "echo %s | sha256sum -c --quiet -\n", shquote.Quote(f[1]+"  "+f[0]))
	}
	b.WriteString("# One bare-metal registration at a time, as with fgimg register.\n")
	fmt.Fprintf(&b, "exec 9>\"${%s:-%s}\"\nflock 9\n", baremetal.LockEnv, baremetal.DefaultLock)
	return b.String()
}

// imageKernel is the host path of the image's kernel (findNetbootKernel),
// or an error naming the package to add.
func imageKernel(in *Input) (string, error) {
	kernel, err := findNetbootKernel(in.Root)
	if err != nil {
		return "", err
	}
	if kernel == "" {
		return "", fmt.Errorf("image %q has no kernel in /boot: add %s (Debian) to its packages", in.Image.Name, netbootKernelPackage(in.Image.Arch))
	}
	return kernel, nil
}
