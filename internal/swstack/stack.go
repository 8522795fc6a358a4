// Package swstack reads an image's software stack from its root
// filesystem (the dpkg, rpm or apk database, the kernels, the enabled
// services) and writes it as an SBOM.
package swstack

// Stack is the software stack of one image, read from the image itself
// after its last stage. Lists are sorted, so the same image gives the
// same JSON.
type Stack struct {
	// Manager is the package database read: "dpkg", "rpm", "apk", or
	// empty when the image has none.
	Manager  string    `json:"manager,omitempty"`
	Packages []Package `json:"packages"`
	// Kernels are the kernel versions installed (/lib/modules/<v>, /boot/vmlinuz-<v>).
	Kernels []string `json:"kernels,omitempty"`
	// Services are the systemd units enabled to start at boot.
	Services []string `json:"services,omitempty"`
	// OS is /etc/os-release's ID and VERSION_ID, such as "debian" "12".
	OSID        string `json:"os_id,omitempty"`
	OSVersionID string `json:"os_version_id,omitempty"`
}

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	// Source is the source package, when it differs from Name.
	Source string `json:"source,omitempty"`
}
