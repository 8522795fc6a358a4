package hosttool_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/qemu"
	"github.com/fgimg/fgimg/internal/testkit"
)

func TestMissingToolNamesThePackageOfTheHostsDistribution(t *testing.T) {
	for _, c := range []struct {
		osRelease, tool, want string
	}{
		{"ID=debian\nVERSION_ID=\"12\"\n", "mkfs.ext4", "mkfs.ext4 not found: install e2fsprogs (apt-get install e2fsprogs)"},
		{"NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n", "qemu-system-x86_64", "qemu-system-x86_64 not found: install qemu-system-x86 (apt-get install qemu-system-x86)"},
		{"ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", "pasta", "pasta not found: install passt (apt-get install passt)"},
		{"ID=fedora\n", "qemu-system-x86_64", "qemu-system-x86_64 not found: install qemu-system-x86-core (dnf install qemu-system-x86-core)"},
		{"ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", "newuidmap", "newuidmap not found: install shadow-utils (dnf install shadow-utils)"},
		{"ID=fedora\n", hosttool.GPTMBR, hosttool.GPTMBR + " not found: install the package that provides it (on Debian and Ubuntu: syslinux-common)"},
		{"ID=arch\n", "debootstrap", "debootstrap not found: install the package that provides it (on Debian and Ubuntu: debootstrap)"},
		{"", "syslinux", "syslinux not found: install the package that provides it (on Debian and Ubuntu: syslinux)"},
		{"ID=debian\n", "no-such-tool", "no-such-tool not found (searched PATH and /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin)"},
	} {
		testkit.HostOS(t, c.osRelease)
		if got := hosttool.Missing(c.tool).Error(); got != c.want {
			t.Errorf("os-release %q, %s:\n got %s\nwant %s", c.osRelease, c.tool, got, c.want)
		}
	}
}

func TestFindLooksInSbinAndNamesTheMissingPackage(t *testing.T) {
	testkit.Need(t, "e2fsck")
	testkit.HostOS(t, "ID=debian\n")
	t.Setenv("PATH", t.TempDir()) // a user's PATH without the sbin directories
	p, err := hosttool.Find("e2fsck")
	if err != nil || !filepath.IsAbs(p) {
		t.Fatalf("Find(e2fsck) = %q, %v; want its path in an sbin directory", p, err)
	}
	_, err = hosttool.Find("tune2fs-no-such")
	var m *hosttool.MissingError
	if !errors.As(err, &m) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Find of a missing tool: %v (%T); want a *MissingError that is fs.ErrNotExist", err, err)
	}
	if err := hosttool.NeedFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NeedFile of a missing file: %v", err)
	}
	if _, err := hosttool.Command(context.Background(), "tune2fs-no-such"); !errors.As(err, &m) {
		t.Errorf("Command of a missing tool: %v; want a *MissingError", err)
	}
}

// aptPackages reads the Makefile's APT_PACKAGES, the list make deps installs.
func aptPackages(t *testing.T) map[string]bool {
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^APT_PACKAGES\s*=((?:.*\\\n)*.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Makefile has no APT_PACKAGES")
	}
	pkgs := map[string]bool{}
	for _, f := range strings.Fields(strings.ReplaceAll(string(m[1]), "\\\n", " ")) {
		pkgs[f] = true
	}
	return pkgs
}

func TestEveryPackageIsInMakeDeps(t *testing.T) {
	deps := aptPackages(t)
	if !deps["e2fsprogs"] || !deps["passt"] || !deps["uidmap"] {
		t.Fatalf("APT_PACKAGES misread: %v", deps)
	}
	for name, p := range hosttool.Packages {
		if p.Deb == "" {
			t.Errorf("%s has no Debian package", name)
		} else if !deps[p.Deb] {
			t.Errorf("%s's package %s is not in the Makefile's APT_PACKAGES: make deps would not install it", name, p.Deb)
		}
	}
	for _, f := range []string{qemu.DefaultOVMFCode, qemu.DefaultOVMFVars} {
		if _, ok := hosttool.Packages[f]; !ok {
			t.Errorf("QEMU's %s is not in the package table", f)
		}
	}
}

// On a Debian host the table must say what dpkg says: each tool or file
// belongs to the package the table names.
func TestPackagesProvideTheirTools(t *testing.T) {
	testkit.Need(t, "dpkg-query")
	patterns := map[string]string{} // table entry → dpkg-query -S pattern
	var args []string
	for name := range hosttool.Packages {
		patterns[name] = name
		if !strings.HasPrefix(name, "/") {
			patterns[name] = "*bin/" + name
		}
		args = append(args, patterns[name])
	}
	// One call (each searches every package's file list); it fails when
	// a pattern matches nothing, and lists the rest.
	out, _ := exec.Command("dpkg-query", append([]string{"-S"}, args...)...).Output()
	owners := map[string][]string{} // table entry → packages owning a match
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkgs, path, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		for name := range patterns {
			if path == name || strings.HasSuffix(path, "bin/"+name) {
				for _, o := range strings.Split(pkgs, ", ") {
					owners[name] = append(owners[name], strings.Split(o, ":")[0]) // without :arch
				}
			}
		}
	}
	for name, p := range hosttool.Packages {
		switch {
		case len(owners[name]) == 0:
			if testkit.ToolsRequired() {
				t.Errorf("%s: no installed package provides it (make deps installs %s)", name, p.Deb)
			}
		case !slices.Contains(owners[name], p.Deb):
			t.Errorf("%s: the table says package %s, dpkg says %v", name, p.Deb, owners[name])
		}
	}
}

func TestRunKillsTheToolsGroupWhenCancelled(t *testing.T) {
	sleep, err := hosttool.Find("sleep")
	if err != nil {
		t.Fatal(err)
	}
	// A sleep by a name of this test's own, to find its processes by.
	sleeper := filepath.Join(t.TempDir(), "sleeper")
	if err := os.Symlink(sleep, sleeper); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The shell leaves a background child: it must go with the tool.
	cmd, err := hosttool.Command(ctx, "sh", "-c", `"$0" 300 & exec "$0" 301`, sleeper)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- hosttool.Run(cmd) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(testkit.ProcessesWithArg(sleeper)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run of a cancelled tool returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// SIGKILL is delivered at once but a process takes a moment to go.
	deadline = time.Now().Add(5 * time.Second)
	for len(testkit.ProcessesWithArg(sleeper)) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pids := testkit.ProcessesWithArg(sleeper); len(pids) > 0 {
		t.Errorf("processes of the cancelled tool survive: %v", pids)
	}
}

func TestEnvAddsTheSbinDirectories(t *testing.T) {
	t.Setenv("PATH", "/home/u/bin")
	t.Setenv("MKE2FS_CONFIG", "/etc/evil.conf")
	env := strings.Join(hosttool.Env("A=1"), "\n")
	if !strings.Contains(env, "PATH=/home/u/bin:/usr/local/sbin:") || !strings.Contains(env, "MKE2FS_CONFIG=") || !strings.HasSuffix(env, "A=1") {
		t.Errorf("Env:\n%s", env)
	}
	clean := hosttool.CleanEnv("B=2")
	if strings.Contains(strings.Join(clean, "\n"), "MKE2FS_CONFIG") || clean[len(clean)-1] != "B=2" {
		t.Errorf("CleanEnv keeps the caller's tool settings: %v", clean)
	}
}

func TestTailKeepsTheToolsLastWords(t *testing.T) {
	var log strings.Builder
	tail := &hosttool.Tail{W: &log, Size: 40}
	for _, s := range []string{"a first line that will be cut off\n", "Progress 10%\rProgress 100%\n", "\n  \n", "E: Unable to locate package nosuch\n"} {
		if n, err := tail.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if !strings.HasPrefix(log.String(), "a first line") {
		t.Errorf("the output was not passed on: %q", log.String())
	}
	// Only the last 40 bytes are kept; their partial first line is dropped.
	if got := tail.Lines(); !slices.Equal(got, []string{"E: Unable to locate package nosuch"}) {
		t.Errorf("Lines() = %q", got)
	}
	big := &hosttool.Tail{}
	big.Write([]byte("one\nProgress 10%\rProgress 100%\n\n  two  \nthree"))
	if got := big.Last(3); got != "Progress 100%; two; three" {
		t.Errorf("Last(3) = %q", got)
	}
	if got := (&hosttool.Tail{}).Last(3); got != "no message" {
		t.Errorf("Last of nothing = %q", got)
	}
}
