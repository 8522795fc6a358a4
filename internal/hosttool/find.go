package hosttool

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// StandardDirs are searched for a tool after PATH, which for a non-root
// user often lacks the sbin directories. Tools run with them on PATH.
var StandardDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Find returns the path of the host tool name, looked up on PATH and then
// in StandardDirs; a name with a slash is used as it is. When the tool is
// missing, the error is a *MissingError naming the package to install.
func Find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		for _, d := range StandardDirs {
			p := filepath.Join(d, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", Missing(name)
}

// NeedFile checks that the host file path exists; when it does not, the
// error is a *MissingError naming the package to install.
func NeedFile(path string) error {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Missing(path)
	}
	return err
}

// MissingError says that a host tool or file is missing, and which
// package of the host's distribution provides it.
type MissingError struct {
	Name    string // the tool or the file's path
	Package string // its package on this host's distribution; "" if not known
	Install string // the command that installs Package
	Debian  string // its Debian package, a hint on other distributions
}

// Missing returns the error for a missing tool or host file name, for the
// distribution this host runs.
func Missing(name string) *MissingError {
	return missingOn(name, HostFamily())
}

func missingOn(name string, fam Family) *MissingError {
	e := &MissingError{Name: name}
	p, ok := Packages[name]
	if !ok {
		return e
	}
	e.Debian = p.Deb
	switch fam {
	case Debian:
		e.Package, e.Install = p.Deb, "apt-get install "+p.Deb
	case Fedora:
		if p.RPM != "" {
			e.Package, e.Install = p.RPM, "dnf install "+p.RPM
		}
	}
	if e.Package == "" {
		e.Install = ""
	}
	return e
}

func (e *MissingError) Error() string {
	what := e.Name + " not found"
	switch {
	case e.Package != "":
		return fmt.Sprintf("%s: install %s (%s)", what, e.Package, e.Install)
	case e.Debian != "":
		return fmt.Sprintf("%s: install the package that provides it (on Debian and Ubuntu: %s)", what, e.Debian)
	case strings.HasPrefix(e.Name, "/"):
		return what
	}
	return fmt.Sprintf("%s (searched PATH and %s)", what, strings.Join(StandardDirs, ", "))
}

// Is makes errors.Is(err, fs.ErrNotExist) true for a missing tool or file.
func (e *MissingError) Is(target error) bool { return target == fs.ErrNotExist }

// Family is a family of Linux distributions sharing package names.
type Family string

const (
	Debian Family = "debian" // Debian, Ubuntu and their derivatives: apt
	Fedora Family = "fedora" // Fedora, RHEL, CentOS, Rocky, Alma: dnf
	Other  Family = ""
)

// OSRelease is the file HostFamily reads; tests point it elsewhere.
var OSRelease = "/etc/os-release"

// HostFamily reads OSRelease (ID and ID_LIKE) to tell the family of the
// host's distribution; Other when it cannot tell.
func HostFamily() Family {
	f, err := os.Open(OSRelease)
	if err != nil {
		return Other
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || (k != "ID" && k != "ID_LIKE") {
			continue
		}
		ids = append(ids, strings.Fields(strings.Trim(v, `"'`))...)
	}
	for _, id := range ids {
		switch id {
		case "debian", "ubuntu":
			return Debian
		case "fedora", "rhel", "centos", "rocky", "almalinux":
			return Fedora
		}
	}
	return Other
}
