// Package arch is fgimg's one table of CPU architectures: the Debian
// names templates use for an image's arch, and the OCI platform
// (architecture and variant) each one is when an image is pulled or
// written as OCI. lang keeps its own list of accepted names, since it
// imports nothing of fgimg's; a test in lang holds the two equal.
package arch

// Arch is one architecture.
type Arch struct {
	Debian  string // the name in templates and Debian's archive: armhf
	OCI     string // the OCI (GOARCH) architecture: arm
	Variant string // the OCI variant, "" when there is none: v7
	Machine string // the kernel's name (uname -m), which clouds use: armv7l
}

// table is in the order lang lists the names.
var table = []Arch{
	{"amd64", "amd64", "", "x86_64"},
	{"arm64", "arm64", "v8", "aarch64"},
	{"armhf", "arm", "v7", "armv7l"},
	{"i386", "386", "", "i686"},
	{"ppc64el", "ppc64le", "", "ppc64le"},
	{"riscv64", "riscv64", "", "riscv64"},
	{"s390x", "s390x", "", "s390x"},
}

// Names lists the Debian names, the values an image's arch may take.
func Names() []string {
	names := make([]string, len(table))
	for i, a := range table {
		names[i] = a.Debian
	}
	return names
}

// ByDebian looks up a Debian name.
func ByDebian(name string) (Arch, bool) {
	for _, a := range table {
		if a.Debian == name {
			return a, true
		}
	}
	return Arch{}, false
}
