package swstack_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/internal/testkit"
)

func symlink(t *testing.T, root, rel, target string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
		t.Fatal(err)
	}
}

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// debianRoot is a merged-/usr Debian-like root: dpkg status (a subset of
// a real Debian 12 one), os-release behind the usual relative symlink,
// a kernel, and systemd units enabled, masked and dangling.
func debianRoot(t *testing.T) string {
	root := t.TempDir()
	testkit.WriteFile(t, root, "var/lib/dpkg/status", fixture(t, "dpkg-status"))
	testkit.WriteFile(t, root, "usr/lib/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n")
	symlink(t, root, "etc/os-release", "../usr/lib/os-release")
	symlink(t, root, "lib", "usr/lib")
	mkdir(t, root, "usr/lib/modules/6.1.0-28-amd64/kernel")
	testkit.WriteFile(t, root, "boot/vmlinuz-6.1.0-28-amd64", "kernel")
	testkit.WriteFile(t, root, "boot/vmlinuz-6.1.0-30-amd64", "a kernel whose modules were removed")
	for _, u := range []string{"ssh.service", "getty@.service", "cron.service", "empty.service", "fstrim.timer", "static.service"} {
		body := "[Unit]\nDescription=" + u + "\n\n[Install]\nWantedBy=multi-user.target\n"
		switch u {
		case "empty.service":
			body = ""
		case "getty@.service":
			body = "[Unit]\nDescription=getty\n\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n"
		case "fstrim.timer":
			body = "[Unit]\nDescription=fstrim\n\n[Install]\nWantedBy=timers.target\n"
		case "static.service":
			body = "[Unit]\nDescription=static\n"
		}
		testkit.WriteFile(t, root, "usr/lib/systemd/system/"+u, body)
	}
	w := "etc/systemd/system/multi-user.target.wants/"
	symlink(t, root, w+"ssh.service", "/lib/systemd/system/ssh.service")     // absolute: the image's /lib, not the host's
	symlink(t, root, w+"cron.service", "/lib/systemd/system/cron.service")   // masked below
	symlink(t, root, w+"gone.service", "/lib/systemd/system/gone.service")   // its unit was removed
	symlink(t, root, w+"empty.service", "/lib/systemd/system/empty.service") // an empty unit file is masked
	symlink(t, root, w+"README", "/lib/systemd/system/ssh.service")          // not a unit name
	symlink(t, root, "etc/systemd/system/getty.target.wants/getty@tty1.service", "/lib/systemd/system/getty@.service")
	symlink(t, root, "etc/systemd/system/timers.target.wants/fstrim.timer", "/lib/systemd/system/fstrim.timer")
	symlink(t, root, "etc/systemd/system/cron.service", "/dev/null")
	symlink(t, root, "usr/lib/systemd/system/multi-user.target.wants/static.service", "../static.service")
	return root
}

func TestReadDebian(t *testing.T) {
	st, err := swstack.Read(debianRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	want := &swstack.Stack{
		Manager: "dpkg",
		Packages: []swstack.Package{
			{Name: "base-files", Version: "12.4+deb12u11", Arch: "amd64"},
			{Name: "bash", Version: "5.2.15-2+b8", Arch: "amd64"},
			{Name: "coreutils", Version: "9.1-1", Arch: "amd64"},
			{Name: "libc6", Version: "2.36-9+deb12u14", Arch: "amd64", Source: "glibc"},
			{Name: "libssl3", Version: "3.0.19-1~deb12u2", Arch: "amd64", Source: "openssl"},
			{Name: "tzdata", Version: "2025b-0+deb12u2", Arch: "all"},
		},
		Kernels:     []string{"6.1.0-28-amd64", "6.1.0-30-amd64"},
		Services:    []string{"fstrim.timer", "getty@tty1.service", "ssh.service"},
		OSID:        "debian",
		OSVersionID: "12",
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Read:\n got %+v\nwant %+v", st, want)
	}
}

// systemctl itself must agree on which units the fixture enables
// (it lists the template of an enabled instance).
func TestServicesAgreeWithSystemctl(t *testing.T) {
	systemctl := testkit.Need(t, "systemctl")[0]
	root := debianRoot(t)
	out, err := exec.Command(systemctl, "--root="+root, "list-unit-files", "--state=enabled", "--no-legend", "--no-pager").CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl: %v\n%s", err, out)
	}
	var theirs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			theirs = append(theirs, f[0])
		}
	}
	st, err := swstack.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, s := range st.Services {
		if at := strings.IndexByte(s, '@'); at > 0 {
			s = s[:at+1] + s[strings.LastIndexByte(s, '.'):]
		}
		ours = append(ours, s)
	}
	sort.Strings(theirs)
	sort.Strings(ours)
	if !reflect.DeepEqual(ours, theirs) {
		t.Errorf("enabled units: ours %v, systemctl's %v", ours, theirs)
	}
}

// The host is a real Debian root: Read must list what dpkg-query lists.
func TestReadHostAgreesWithDpkgQuery(t *testing.T) {
	dpkgQuery := testkit.Need(t, "dpkg-query")[0]
	out, err := exec.Command(dpkgQuery, "-W", "-f", "${db:Status-Status} ${Package} ${Version} ${Architecture} ${source:Package}\n").Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []swstack.Package
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if f[0] != "installed" {
			continue
		}
		p := swstack.Package{Name: f[1], Version: f[2], Arch: f[3]}
		if f[4] != p.Name {
			p.Source = f[4]
		}
		want = append(want, p)
	}
	st, err := swstack.Read("/")
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(want, func(i, j int) bool {
		if want[i].Name != want[j].Name {
			return want[i].Name < want[j].Name
		}
		return want[i].Arch < want[j].Arch
	})
	if st.Manager != "dpkg" || !reflect.DeepEqual(st.Packages, want) {
		t.Errorf("Read(/) read %d packages with %q, dpkg-query lists %d", len(st.Packages), st.Manager, len(want))
		if d := swstack.Diff(&swstack.Stack{Packages: want}, st); !d.Empty() {
			t.Errorf("differences: %+v", d)
		}
	}
	if st.OSID != "debian" {
		t.Errorf("host os %q, want debian", st.OSID)
	}
}

func TestReadApk(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, root, "lib/apk/db/installed", fixture(t, "apk-installed"))
	testkit.WriteFile(t, root, "etc/os-release", "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n")
	st, err := swstack.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	want := &swstack.Stack{
		Manager: "apk",
		Packages: []swstack.Package{
			{Name: "alpine-baselayout-data", Version: "3.4.3-r2", Arch: "x86_64", Source: "alpine-baselayout"},
			{Name: "busybox", Version: "1.36.1-r15", Arch: "x86_64"},
			{Name: "busybox-binsh", Version: "1.36.1-r15", Arch: "x86_64", Source: "busybox"},
			{Name: "musl", Version: "1.2.4_git20230717-r4", Arch: "x86_64"},
		},
		OSID: "alpine", OSVersionID: "3.19.1",
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Read:\n got %+v\nwant %+v", st, want)
	}
}

// An image without any package database has an empty stack, not an error.
func TestReadEmptyRoot(t *testing.T) {
	st, err := swstack.Read(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if st.Manager != "" || len(st.Packages) != 0 || st.Packages == nil || st.Kernels != nil || st.Services != nil {
		t.Errorf("empty root: %+v", st)
	}
}

func TestReadMalformedDatabase(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, root, "var/lib/dpkg/status", "Package: a\nVersion: 1\nStatus: install ok installed\n\nno colon here\n")
	if _, err := swstack.Read(root); err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Errorf("malformed status: %v, want an error at line 5", err)
	}
	testkit.WriteFile(t, root, "var/lib/dpkg/status", "Package: a\nStatus: install ok installed\n")
	if _, err := swstack.Read(root); err == nil || !strings.Contains(err.Error(), "without Package or Version") {
		t.Errorf("package without a version: %v", err)
	}
}

// A hostile image plants symlinks that lead out of it: Read resolves
// them inside the image (as the booted image would) and never reads the
// host's files.
func TestReadSymlinksStayInside(t *testing.T) {
	host := t.TempDir()
	testkit.WriteFile(t, host, "status", fixture(t, "dpkg-status"))
	testkit.WriteFile(t, host, "os-release", "ID=host\n")
	mkdir(t, host, "modules/9.9.9-host")
	mkdir(t, host, "wants")
	testkit.WriteFile(t, host, "system/evil.service", "[Unit]\n")
	symlink(t, host, "wants/evil.service", filepath.Join(host, "system/evil.service"))

	root := t.TempDir()
	up := strings.Repeat("../", 20)
	symlink(t, root, "var/lib/dpkg/status", up+strings.TrimPrefix(host, "/")+"/status")
	symlink(t, root, "etc/os-release", filepath.Join(host, "os-release"))
	symlink(t, root, "lib/modules", filepath.Join(host, "modules"))
	symlink(t, root, "etc/systemd/system/multi-user.target.wants", filepath.Join(host, "wants"))
	symlink(t, root, "etc/systemd/system/default.target.wants/evil.service", filepath.Join(host, "system/evil.service"))
	st, err := swstack.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Packages) != 0 || st.OSID != "" || st.Kernels != nil || st.Services != nil {
		t.Errorf("Read followed symlinks out of the image: %+v", st)
	}
}

// Files that would hang or exhaust a reader are refused with an error.
func TestReadRefusesSpecialAndHugeFiles(t *testing.T) {
	root := t.TempDir()
	mkdir(t, root, "etc")
	if err := unix.Mkfifo(filepath.Join(root, "etc/os-release"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := swstack.Read(root); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a FIFO os-release: %v", err)
	}

	root = t.TempDir()
	mkdir(t, root, "var/lib/dpkg")
	f, err := os.Create(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	if _, err := swstack.Read(root); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a 1 GiB status file: %v", err)
	}
}

// BenchmarkReadDebian reads a root with the first 300 packages of the
// host's own dpkg status (a real Debian system's), plus the fixture's
// kernels and services.
func BenchmarkReadDebian(b *testing.B) {
	status, err := os.ReadFile("/var/lib/dpkg/status")
	if err != nil {
		b.Skip("no dpkg status on this host")
	}
	paras := bytes.Split(status, []byte("\n\n"))
	if len(paras) > 300 {
		paras = paras[:300]
	}
	root := debianRootB(b, bytes.Join(paras, []byte("\n\n")))
	b.ResetTimer()
	for b.Loop() {
		st, err := swstack.Read(root)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Packages) < 250 {
			b.Fatalf("read %d packages", len(st.Packages))
		}
	}
}

func debianRootB(b *testing.B, status []byte) string {
	root := b.TempDir()
	w := func(rel, body string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	w("var/lib/dpkg/status", string(status))
	w("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n")
	w("lib/modules/6.1.0-28-amd64/modules.dep", "")
	w("boot/vmlinuz-6.1.0-28-amd64", "")
	for _, u := range []string{"ssh", "cron", "systemd-timesyncd", "e2scrub_reap", "getty@"} {
		w("lib/systemd/system/"+u+".service", "[Unit]\n")
		name := u + ".service"
		if u == "getty@" {
			name = "getty@tty1.service"
		}
		os.MkdirAll(filepath.Join(root, "etc/systemd/system/multi-user.target.wants"), 0o755)
		os.Symlink("/lib/systemd/system/"+u+".service", filepath.Join(root, "etc/systemd/system/multi-user.target.wants", name))
	}
	return root
}

// BenchmarkReadHost reads the host's own root: a whole Debian system.
func BenchmarkReadHost(b *testing.B) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		b.Skip("no dpkg status on this host")
	}
	for b.Loop() {
		if _, err := swstack.Read("/"); err != nil {
			b.Fatal(err)
		}
	}
}
