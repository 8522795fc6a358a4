package stages

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
)

// End-to-end tests against a real Debian root filesystem: bootstrapped
// once per test binary with debootstrap (bookworm minbase, about a
// minute), then changed in overlays so that every test starts from it.

const (
	debianSuite   = "bookworm"
	debianRelease = lang.DefaultMirror + "/dists/" + debianSuite + "/Release"
)

// debianArch is the Debian name of the host's architecture.
func debianArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

var debian struct {
	once sync.Once
	dir  string // holds root/ and bootstrap.log
	log  string
	skip string // why the tests cannot run here
	err  error
}

// requireDebian skips end-to-end tests where they cannot run.
func requireDebian(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test with debootstrap and the Debian mirror (-short)")
	}
	requireRoot(t)
	testkit.Need(t, "debootstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, debianRelease, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Skipf("the Debian mirror is unreachable: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("the Debian mirror answers %s for %s", resp.Status, debianRelease)
	}
}

// debianBase returns the shared bootstrapped root filesystem (read-only
// for tests: use it as an overlay's lower directory).
func debianBase(t *testing.T) string {
	t.Helper()
	requireDebian(t)
	debian.once.Do(func() {
		debian.dir, debian.err = os.MkdirTemp("", "fgimg-stages-debian-")
		if debian.err != nil {
			return
		}
		root := filepath.Join(debian.dir, "root")
		if debian.err = os.Mkdir(root, 0o755); debian.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		debian.log, debian.err = runStageCtx(t, ctx, &Bootstrap{
			Tool: "debootstrap", Suite: debianSuite, Mirror: lang.DefaultMirror, Variant: "minbase",
			Components: []string{"main"}, Arch: debianArch(),
		}, root)
		_ = os.WriteFile(filepath.Join(debian.dir, "bootstrap.log"), []byte(debian.log), 0o644)
		t.Logf("debootstrap %s minbase took %s", debianSuite, time.Since(start).Round(time.Second))
	})
	if debian.err != nil {
		t.Fatalf("bootstrapping %s: %v\nlog tail:\n%s", debianSuite, debian.err, tail(debian.log, 30))
	}
	return filepath.Join(debian.dir, "root")
}

func removeDebianBase() {
	if debian.dir != "" {
		os.RemoveAll(debian.dir)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stack is an image being built stage by stage over the Debian base:
// each stage runs on an overlay of the previous stages' upper directories.
type stack struct {
	t      *testing.T
	lowers []string // topmost first
}

func newStack(t *testing.T) *stack {
	return &stack{t: t, lowers: []string{debianBase(t)}}
}

// stage runs spec on a fresh overlay; on success its upper directory
// becomes part of the stack. check (if set) looks at the merged root
// while it is mounted.
func (s *stack) stage(spec Spec, check func(root string)) (string, error) {
	s.t.Helper()
	merged, upper := overlay(s.t, s.lowers...)
	log, err := runStage(s.t, spec, merged)
	if err == nil {
		s.lowers = append([]string{upper}, s.lowers...)
		if check != nil {
			check(merged)
		}
	}
	return log, err
}

func (s *stack) mustStage(spec Spec, check func(root string)) string {
	s.t.Helper()
	log, err := s.stage(spec, check)
	if err != nil {
		s.t.Fatalf("%s stage: %v\nlog tail:\n%s", spec.Kind(), err, tail(log, 40))
	}
	s.t.Logf("%s stage, log tail:\n%s", spec.Kind(), tail(log, 8))
	return log
}

func TestDebootstrap(t *testing.T) {
	root := debianBase(t)
	if !strings.Contains(debian.log, "I: Base system installed successfully.") {
		t.Errorf("debootstrap's output is not in the log:\n%s", tail(debian.log, 20))
	}
	if !strings.Contains(debian.log, "+ ") || !strings.Contains(debian.log, "--variant=minbase") {
		t.Errorf("the log does not show the command run:\n%s", tail(debian.log, 20))
	}
	if got := readRootFile(t, root, "etc/debian_version"); !strings.HasPrefix(got, "12") {
		t.Errorf("/etc/debian_version = %q", got)
	}
	for _, p := range []string{"etc/resolv.conf", "etc/hostname"} {
		if exists(root, p) {
			t.Errorf("/%s leaked from the build host: %q", p, readRootFile(t, root, p))
		}
	}
	if names := dirEntries(t, root, "var/lib/apt/lists"); names != "" {
		t.Errorf("package lists kept: %s", names)
	}
	if names := dirEntries(t, root, "var/cache/apt/archives"); strings.Contains(names, ".deb") {
		t.Errorf("downloaded packages kept: %s", names)
	}
	out, err := exec.Command("findmnt", "-rn", "-o", "TARGET").Output()
	if err == nil && strings.Contains(string(out), root) {
		t.Errorf("mounts left below the root:\n%s", out)
	}
	// The second stage, inside the image's sandbox, configured every
	// package and removed debootstrap's own files.
	status := readRootFile(t, root, "var/lib/dpkg/status")
	if n := strings.Count(status, "\nStatus: install ok installed\n"); n < 50 || n != strings.Count(status, "\nStatus: ") {
		t.Errorf("%d packages installed of %d in the status file", n, strings.Count(status, "\nStatus: "))
	}
	if exists(root, "debootstrap") {
		t.Error("/debootstrap kept")
	}
	// Nothing that records the build's time is kept (scrubBuildTraces).
	for _, p := range buildTraces {
		if exists(root, p[1:]) {
			t.Errorf("%s kept: %q", p, tail(readRootFile(t, root, p[1:]), 3))
		}
	}
	// Ids are the image's own on disk, not the sandbox's shifted ones.
	for p, want := range map[string][2]uint32{"etc/passwd": {0, 0}, "etc/shadow": {0, 42}, "usr/bin/su": {0, 0}} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil || st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("/%s is owned by %d:%d on disk (%v), want %d:%d", p, st.Uid, st.Gid, err, want[0], want[1])
		}
	}
}

func TestDebianImage(t *testing.T) {
	s := newStack(t)

	// packages, with systemd for the services stage below
	s.mustStage(&Packages{Names: []string{"hello", "systemd"}}, func(root string) {
		for _, p := range []string{"usr/bin/hello", "usr/bin/systemctl"} {
			if !exists(root, p) {
				t.Errorf("/%s not installed", p)
			}
		}
		if exists(root, "usr/sbin/policy-rc.d") {
			t.Error("/usr/sbin/policy-rc.d left behind")
		}
		if names := dirEntries(t, root, "var/lib/apt/lists"); names != "" {
			t.Errorf("package lists kept: %s", names)
		}
		if names := dirEntries(t, root, "var/cache/apt/archives"); strings.Contains(names, ".deb") {
			t.Errorf("downloaded packages kept: %s", names)
		}
	})

	// files, owned by a user of the image
	unit := "[Unit]\nDescription=fgimg test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
	s.mustStage(&Files{Entries: []FileEntry{
		fileEntry("/etc/systemd/system/fgimg-test.service", unit, 0o644, "root", "root"),
		fileEntry("/var/www/index.html", "<p>hi</p>\n", 0o640, "www-data", "www-data"),
	}}, func(root string) {
		checkMeta(t, root, "var/www/index.html", unix.S_IFREG, 0o640, 33, 33)
	})

	// users with shadow's useradd, then usermod on an existing user
	uid := int64(1100)
	s.mustStage(&Users{Users: []User{{
		Name: "alice", UID: &uid, Groups: []string{"devs", "sudo"}, Shell: "/bin/bash", Home: "/home/alice",
		SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3Nza alice@laptop\n"},
	}}}, func(root string) {
		passwd := readRootFile(t, root, "etc/passwd")
		if !strings.Contains(passwd, "\nalice:x:1100:") || !strings.Contains(passwd, ":/home/alice:/bin/bash\n") {
			t.Errorf("/etc/passwd:\n%s", passwd)
		}
		group := readRootFile(t, root, "etc/group")
		for _, g := range []string{"devs", "sudo"} {
			if !hasMember(group, g, "alice") {
				t.Errorf("alice not in group %s:\n%s", g, group)
			}
		}
		gid := groupID(t, group, "alice")
		checkMeta(t, root, "home/alice", unix.S_IFDIR, 0o755, 1100, gid)
		checkMeta(t, root, "home/alice/.ssh", unix.S_IFDIR, 0o700, 1100, gid)
		checkMeta(t, root, "home/alice/.ssh/authorized_keys", unix.S_IFREG, 0o600, 1100, gid)
		if got := readRootFile(t, root, "home/alice/.ssh/authorized_keys"); got != "ssh-ed25519 AAAAC3Nza alice@laptop\n" {
			t.Errorf("authorized_keys = %q", got)
		}
	})
	s.mustStage(&Users{Users: []User{{Name: "alice", Groups: []string{"staff"}, Shell: "/bin/sh"}}}, func(root string) {
		passwd := readRootFile(t, root, "etc/passwd")
		if !strings.Contains(passwd, "\nalice:x:1100:") || !strings.Contains(passwd, ":/home/alice:/bin/sh\n") {
			t.Errorf("alice not modified:\n%s", passwd)
		}
		if group := readRootFile(t, root, "etc/group"); !hasMember(group, "staff", "alice") || !hasMember(group, "devs", "alice") {
			t.Errorf("alice's groups:\n%s", group)
		}
	})

	// services
	s.mustStage(&Services{Units: []Unit{
		{Name: "fgimg-test", Enabled: true},
		{Name: "systemd-networkd", Enabled: true},
	}}, func(root string) {
		for _, p := range []string{
			"etc/systemd/system/multi-user.target.wants/fgimg-test.service",
			"etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
		} {
			if st := lstat(t, root, p); st.Mode&unix.S_IFMT != unix.S_IFLNK {
				t.Errorf("/%s is not a symlink", p)
			}
		}
	})
	s.mustStage(&Services{Units: []Unit{{Name: "fgimg-test", Enabled: false}}}, func(root string) {
		if exists(root, "etc/systemd/system/multi-user.target.wants/fgimg-test.service") {
			t.Error("fgimg-test still enabled")
		}
		if !exists(root, "etc/systemd/system/multi-user.target.wants/systemd-networkd.service") {
			t.Error("disabling one unit disabled another")
		}
	})
	_, err := s.stage(&Services{Units: []Unit{{Name: "fgimg-nosuch", Enabled: true}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "enabling unit fgimg-nosuch") || !strings.Contains(err.Error(), "fgimg-nosuch.service does not exist") {
		t.Errorf("enabling a missing unit: %v", err)
	}

	// run
	s.mustStage(&Script{Commands: []string{"hello > /opt/hello.txt", "id -u alice > /opt/alice.uid"}}, func(root string) {
		if got := readRootFile(t, root, "opt/hello.txt"); got != "Hello, world!\n" {
			t.Errorf("hello printed %q", got)
		}
		if got := readRootFile(t, root, "opt/alice.uid"); got != "1100\n" {
			t.Errorf("id -u alice printed %q", got)
		}
	})
}

func TestDebianMissingPackage(t *testing.T) {
	root, _ := overlay(t, debianBase(t))
	log, err := runStage(t, &Packages{Names: []string{"fgimg-nosuch-package"}}, root)
	want := "apt-get install failed (exit status 100): E: Unable to locate package fgimg-nosuch-package"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q\nlog tail:\n%s", err, want, tail(log, 10))
	}
	if exists(root, "usr/sbin/policy-rc.d") {
		t.Error("/usr/sbin/policy-rc.d left behind after the failure")
	}
}

// hasMember reports whether the /etc/group text lists user in group.
func hasMember(groupFile, group, user string) bool {
	for _, l := range strings.Split(groupFile, "\n") {
		f := strings.Split(l, ":")
		if len(f) == 4 && f[0] == group {
			for _, m := range strings.Split(f[3], ",") {
				if m == user {
					return true
				}
			}
		}
	}
	return false
}

func groupID(t *testing.T, groupFile, group string) int {
	t.Helper()
	for _, l := range strings.Split(groupFile, "\n") {
		f := strings.Split(l, ":")
		if len(f) == 4 && f[0] == group {
			if n, ok := numericID(f[2]); ok {
				return n
			}
		}
	}
	t.Fatalf("no group %s", group)
	return 0
}

func TestMmdebstrap(t *testing.T) {
	requireDebian(t)
	testkit.Need(t, "mmdebstrap")
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	log, err := runStageCtx(t, ctx, &Bootstrap{
		Tool: "mmdebstrap", Suite: debianSuite, Variant: "apt", Components: []string{"main"},
		Include: []string{"hello"}, Arch: debianArch(),
	}, root)
	if err != nil {
		t.Fatalf("mmdebstrap: %v\nlog tail:\n%s", err, tail(log, 30))
	}
	if !exists(root, "usr/bin/apt-get") || !exists(root, "usr/bin/hello") {
		t.Error("the apt variant with hello included lacks apt-get or hello")
	}
	for _, p := range []string{"etc/resolv.conf", "etc/hostname"} {
		if exists(root, p) {
			t.Errorf("/%s leaked from the build host: %q", p, readRootFile(t, root, p))
		}
	}
	if names := dirEntries(t, root, "var/lib/apt/lists"); names != "" {
		t.Errorf("package lists kept: %s", names)
	}
	if names := dirEntries(t, root, "var/cache/apt/archives"); strings.Contains(names, ".deb") {
		t.Errorf("downloaded packages kept: %s", names)
	}
	// Maintainer scripts ran in a chroot without device nodes: a write
	// to /dev/null there must not leave a file behind.
	entries, _ := os.ReadDir(filepath.Join(root, "dev"))
	for _, e := range entries {
		if e.Type().IsRegular() {
			t.Errorf("/dev/%s is a regular file", e.Name())
		}
	}
	if t.Failed() {
		t.Logf("mmdebstrap's log:\n%s", tail(log, 40))
	}
}
