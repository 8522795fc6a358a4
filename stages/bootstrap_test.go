package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
)

func TestBootstrapTar(t *testing.T) {
	src := busyboxRoot(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "rootfs.tar")
	testkit.RootfsTar(t, plain, src)
	raw, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	var gz, zst bytes.Buffer
	gw := pgzip.NewWriter(&gz)
	gw.Write(raw)
	gw.Close()
	zw, _ := zstd.NewWriter(&zst)
	zw.Write(raw)
	zw.Close()
	tarballs := map[string][]byte{"rootfs.tar": raw, "rootfs.tar.gz": gz.Bytes(), "rootfs.tar.zst": zst.Bytes()}

	for name, b := range tarballs {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		root := t.TempDir()
		mustRunStage(t, &Bootstrap{Tool: "tar", Arch: debianArch(), Source: digest.FromBytes(b), SourcePath: p}, root)
		if got, want := readRootFile(t, root, "etc/passwd"), readRootFile(t, src, "etc/passwd"); got != want {
			t.Errorf("%s: /etc/passwd = %q, want %q", name, got, want)
		}
		checkMeta(t, root, "etc/shadow", unix.S_IFREG, 0o640, 0, 42)
		checkMeta(t, root, "tmp", unix.S_IFDIR, 0o1777, 0, 0)
		a, b := lstat(t, root, testkit.HardLinkA), lstat(t, root, testkit.HardLinkB)
		if a.Ino != b.Ino {
			t.Errorf("%s: hard links not kept", name)
		}
		// The result is a working root filesystem.
		mustRunStage(t, &Script{Commands: []string{"echo works > /tmp/ok"}}, root)
		if got := readRootFile(t, root, "tmp/ok"); got != "works\n" {
			t.Errorf("%s: a command in the extracted root wrote %q", name, got)
		}
	}

	_, err = runStage(t, &Bootstrap{Tool: "tar", Source: digest.FromString("another tarball"), SourcePath: plain}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "rootfs.tar changed since the plan was made") {
		t.Errorf("changed tarball: %v", err)
	}
}

// fakeTool installs an executable script named name as the only place
// host tools are found, for the rest of the test.
func fakeTool(t *testing.T, name, script string) string {
	t.Helper()
	dir := t.TempDir()
	// Bootstrap tools run as the sandbox's unprivileged root: it reaches
	// the tool only through directories open to all.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	writeRootFile(t, dir, name, "#!/bin/sh\n"+script, 0o755)
	// The sandbox gives bootstrap tools the network with these.
	for _, tool := range []string{"pasta", "nsenter"} {
		if p, err := hosttool.Find(tool); err == nil {
			if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
				t.Fatal(err)
			}
		}
	}
	testkit.HostTools(t, dir)
	return dir
}

func TestBootstrapToolMissing(t *testing.T) {
	fakeTool(t, "unrelated", "")
	for _, tool := range []string{"debootstrap", "mmdebstrap"} {
		_, err := runStage(t, &Bootstrap{Tool: tool, Suite: "bookworm"}, t.TempDir())
		want := hosttool.Missing(tool).Error() // with the package on this host's distribution
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

// fakeDebootstrap prints its arguments and fills the target the way
// debootstrap's first stage does, including what the image must not keep
// and a second stage to run inside the image (busybox for its shell). It
// also tries to read the host file %[1]s.
const fakeDebootstrap = `
echo "fake-args: $*"
eval "root=\${$(($# - 1))}" # SUITE ROOT MIRROR end the arguments
echo "I: Retrieving InRelease"
cat %[1]s 2>/dev/null
mkdir -p "$root/etc" "$root/var/cache/apt/archives/partial" "$root/var/lib/apt/lists/partial" "$root/bin" "$root/debootstrap"
echo "nameserver 10.9.8.7" > "$root/etc/resolv.conf"
echo "buildhost" > "$root/etc/hostname"
touch "$root/var/cache/apt/archives/libc6_2.36_amd64.deb" "$root/var/cache/apt/archives/lock"
touch "$root/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"
cp "$(command -v busybox)" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cat > "$root/debootstrap/debootstrap" <<'SECOND'
#!/bin/sh
echo "second stage: $* as uid $(busybox id -u) on $(busybox hostname), $container"
busybox echo "12.0" > /etc/debian_version
busybox rm -r /debootstrap
echo "I: Base system installed successfully."
SECOND
chmod 755 "$root/debootstrap/debootstrap"
`

// TestBootstrapDebootstrapCommandAndCleanup runs debootstrap's two
// stages in the sandbox: the first as a host tool that sees nothing of
// the host's but its system directories, the second inside the image.
func TestBootstrapDebootstrapCommandAndCleanup(t *testing.T) {
	requireRoot(t)
	testkit.Need(t, "busybox")
	// A file any user of the host could read, outside the host's system
	// directories: the bootstrap tool must not see it.
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	writeRootFile(t, dir, "secret", "host-secret\n", 0o644)
	fakeTool(t, "debootstrap", fmt.Sprintf(fakeDebootstrap, secret))
	root := t.TempDir()
	log := mustRunStage(t, &Bootstrap{Tool: "debootstrap", Suite: "bookworm", Variant: "minbase",
		Components: []string{"main", "contrib"}, Include: []string{"ca-certificates", "curl"}, Arch: "amd64"}, root)

	want := "fake-args: --foreign --variant=minbase --arch=amd64 --components=main,contrib --include=ca-certificates,curl bookworm /target " + lang.DefaultMirror + "\n"
	if !strings.Contains(log, want) {
		t.Errorf("debootstrap was not called with\n%s\nlog:\n%s", want, log)
	}
	if strings.Contains(log, "host-secret") {
		t.Errorf("the bootstrap tool read a host file outside the host's system directories:\n%s", log)
	}
	if want := "second stage: --second-stage as uid 0 on fgimg, lxc\n"; !strings.Contains(log, want) {
		t.Errorf("the second stage did not run inside the image's sandbox (%q):\n%s", want, log)
	}
	if !strings.Contains(log, "I: Base system installed successfully.") {
		t.Errorf("debootstrap's output is not in the log:\n%s", log)
	}
	for _, p := range []string{"etc/resolv.conf", "etc/hostname", "var/cache/apt/archives/libc6_2.36_amd64.deb", "debootstrap"} {
		if exists(root, p) {
			t.Errorf("/%s kept", p)
		}
	}
	if got := dirEntries(t, root, "var/cache/apt/archives"); got != "lock partial" {
		t.Errorf("/var/cache/apt/archives holds %q", got)
	}
	if got := dirEntries(t, root, "var/lib/apt/lists"); got != "" {
		t.Errorf("/var/lib/apt/lists holds %q", got)
	}
	if got := readRootFile(t, root, "etc/debian_version"); got != "12.0\n" {
		t.Errorf("the image itself was changed: /etc/debian_version = %q", got)
	}
}

func TestBootstrapArguments(t *testing.T) {
	root := "/build/root"
	for _, c := range []struct {
		spec Bootstrap
		want string // or the error
	}{
		{Bootstrap{Tool: "debootstrap", Suite: "trixie", Mirror: "http://mirror.example/debian", Components: []string{"main"}, Arch: "arm64"},
			"--arch=arm64 --components=main trixie /build/root http://mirror.example/debian"},
		{Bootstrap{Tool: "debootstrap", Suite: "bookworm", Variant: "buildd"},
			"--variant=buildd bookworm /build/root " + lang.DefaultMirror},
		{Bootstrap{Tool: "debootstrap", Suite: "bookworm", Variant: "standard"},
			`debootstrap has no variant "standard"`},
		{Bootstrap{Tool: "mmdebstrap", Suite: "bookworm", Variant: "apt", Components: []string{"main", "non-free-firmware"}, Include: []string{"systemd"}, Arch: "amd64"},
			`--aptopt=Acquire::Retries "3" --variant=apt --architectures=amd64 --components=main,non-free-firmware --include=systemd bookworm /build/root ` + lang.DefaultMirror},
		{Bootstrap{Tool: "debootstrap"}, "debootstrap needs a suite"},
		{Bootstrap{Tool: "debootstrap", Suite: "bookworm", Include: []string{"--foreign"}}, `"--foreign" is not a valid argument`},
	} {
		args, err := debianArgs(&c.spec, c.spec.Arch, root)
		got := strings.Join(args, " ")
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) || (err == nil && got != c.want) {
			t.Errorf("%+v:\ngot  %s\nwant %s", c.spec, got, c.want)
		}
	}
}

func TestBootstrapFailureQuotesTool(t *testing.T) {
	requireRoot(t)
	fakeTool(t, "debootstrap", `/bin/echo "I: Retrieving Packages"
eval "root=\${$(($# - 1))}"
/bin/mkdir "$root/debootstrap"
/bin/echo "dpkg: error processing package base-files (--configure):" > "$root/debootstrap/debootstrap.log"
/bin/echo "E: Couldn't find these debs: nosuch" >&2
exit 1
`)
	log, err := runStage(t, &Bootstrap{Tool: "debootstrap", Suite: "bookworm"}, t.TempDir())
	if !strings.Contains(log, "debootstrap's log (/debootstrap/debootstrap.log in the root filesystem):\ndpkg: error processing package base-files") {
		t.Errorf("debootstrap's own log is not in the stage log:\n%s", log)
	}
	want := "bootstrap stage: debootstrap failed (exit status 1): E: Couldn't find these debs: nosuch"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	var ce *CommandError
	if !errors.As(err, &ce) || !reflect.DeepEqual(ce.Lines, []string{"E: Couldn't find these debs: nosuch"}) {
		t.Errorf("not a CommandError with the tool's line: %#v", err)
	}
}

func TestBootstrapCancelKillsTool(t *testing.T) {
	requireRoot(t)
	// A unique sleep time finds the tool's processes, its child included.
	secs := strconv.Itoa(5000000 + os.Getpid()%100000)
	fakeTool(t, "debootstrap", "/bin/sleep "+secs+" &\n/bin/sleep "+secs+"\n")
	t.Cleanup(func() { // should the test fail
		for _, pid := range testkit.ProcessesWithArg(secs) {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := runStageCtx(t, ctx, &Bootstrap{Tool: "debootstrap", Suite: "bookworm"}, t.TempDir())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled bootstrap: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping took %s", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := testkit.ProcessesWithArg(secs)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the cancelled tool still run: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
