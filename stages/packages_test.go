package stages

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPackagesWithoutPackageManager(t *testing.T) {
	root := busyboxRoot(t)
	_, err := runStage(t, &Packages{Names: []string{"hello"}}, root)
	want := "packages stage: the image has no package manager to install hello with (looked for apt-get, dnf, yum, apk"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}

// fakeApt stands in for the image's apt-get: the real one is exercised
// by the Debian end-to-end tests; this one records what fgimg asked of it
// and what it saw, and fails like apt-get for a package named nosuch.
const fakeApt = `#!/bin/sh
{
	echo "apt-get $*"
	echo "  DEBIAN_FRONTEND=$DEBIAN_FRONTEND"
	if [ -x /usr/sbin/policy-rc.d ]; then /usr/sbin/policy-rc.d; echo "  policy-rc.d exits $?"; else echo "  no policy-rc.d"; fi
} >> /tmp/apt.calls
case "$1" in
update)
	mkdir -p /var/lib/apt/lists/partial
	echo list > /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease
	echo "Hit:1 http://deb.debian.org/debian bookworm InRelease" ;;
install)
	for p; do
		if [ "$p" = nosuch ]; then
			echo "Reading package lists..."
			echo "E: Unable to locate package nosuch" >&2
			exit 100
		fi
	done
	echo "Setting up $9 ..." ;;
esac
`

func aptRoot(t *testing.T) string {
	root := busyboxRoot(t)
	writeRootFile(t, root, "usr/bin/apt-get", fakeApt, 0o755)
	return root
}

func TestPackagesApt(t *testing.T) {
	root := aptRoot(t)
	log := mustRunStage(t, &Packages{Names: []string{"hello", "jq"}}, root)
	want := `apt-get update -o Acquire::Retries=3 -o Acquire::Languages=none
  DEBIAN_FRONTEND=noninteractive
  policy-rc.d exits 101
apt-get install -y -o Acquire::Retries=3 -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io hello jq
  DEBIAN_FRONTEND=noninteractive
  policy-rc.d exits 101
apt-get clean
  DEBIAN_FRONTEND=noninteractive
  policy-rc.d exits 101
`
	if got := readRootFile(t, root, "tmp/apt.calls"); got != want {
		t.Errorf("apt-get calls:\n%s\nwant:\n%s", got, want)
	}
	if exists(root, "usr/sbin/policy-rc.d") {
		t.Error("policy-rc.d left behind")
	}
	if names := dirEntries(t, root, "var/lib/apt/lists"); names != "" {
		t.Errorf("package lists kept: %s", names)
	}
	if !strings.Contains(log, "+ /usr/bin/apt-get install -y") || !strings.Contains(log, "Setting up hello") {
		t.Errorf("log:\n%s", log)
	}
}

// TestPackagesAptOnOverlay runs the packages stage as the engine does, on
// an overlay MountOverlay mounted: the stage's Go code and its commands
// take turns on the root (sandbox.Run mounts it anew for each command,
// with shifted ids), so the stage holds no descriptor in it meanwhile.
func TestPackagesAptOnOverlay(t *testing.T) {
	merged, upper := overlay(t, aptRoot(t))
	mustRunStage(t, &Packages{Names: []string{"hello"}}, merged)
	if !strings.Contains(readRootFile(t, upper, "tmp/apt.calls"), "apt-get clean") {
		t.Error("the commands' writes are not in the upper directory")
	}
	if exists(merged, "usr/sbin/policy-rc.d") {
		t.Error("policy-rc.d left behind")
	}
}

func TestPackagesAptFailure(t *testing.T) {
	root := aptRoot(t)
	_, err := runStage(t, &Packages{Names: []string{"hello", "nosuch"}}, root)
	want := "packages stage: apt-get install failed (exit status 100): E: Unable to locate package nosuch"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if exists(root, "usr/sbin/policy-rc.d") {
		t.Error("policy-rc.d left behind after the failure")
	}
}

func TestPackagesAptKeepsExistingPolicy(t *testing.T) {
	root := aptRoot(t)
	const own = "#!/bin/sh\nexit 0\n"
	writeRootFile(t, root, "usr/sbin/policy-rc.d", own, 0o700)
	mustRunStage(t, &Packages{Names: []string{"hello"}}, root)
	if got := readRootFile(t, root, "tmp/apt.calls"); strings.Contains(got, "exits 0") {
		t.Errorf("the image's own policy-rc.d was in force during the install:\n%s", got)
	}
	if got := readRootFile(t, root, "usr/sbin/policy-rc.d"); got != own {
		t.Errorf("policy-rc.d not restored: %q", got)
	}
	checkMeta(t, root, "usr/sbin/policy-rc.d", unix.S_IFREG, 0o700, 0, 0)
	if names := dirEntries(t, root, "usr/sbin"); names != "policy-rc.d" {
		t.Errorf("/usr/sbin holds %s", names)
	}
}

// Fake dnf and apk failing the way the real ones do, to check that the
// error quotes their own lines.
func TestPackagesOtherManagersQuoteErrors(t *testing.T) {
	for _, c := range []struct {
		tool, script, want string
	}{
		{"usr/bin/dnf", "echo \"dnf $*\" > /tmp/calls\necho 'Last metadata expiration check: 0:01:02 ago.'\necho 'No match for argument: nosuch' >&2\necho 'Error: Unable to find a match: nosuch' >&2\nexit 1\n",
			"dnf install failed (exit status 1): No match for argument: nosuch; Error: Unable to find a match: nosuch"},
		{"sbin/apk", "echo \"apk $*\" > /tmp/calls\necho 'fetch https://dl-cdn.alpinelinux.org/alpine/v3.20/main/x86_64/APKINDEX.tar.gz'\necho 'ERROR: unable to select packages:' >&2\necho '  nosuch (no such package):' >&2\necho '    required by: world[nosuch]' >&2\nexit 1\n",
			"apk add failed (exit status 1): ERROR: unable to select packages:; nosuch (no such package):"},
	} {
		root := busyboxRoot(t)
		writeRootFile(t, root, c.tool, "#!/bin/sh\n"+c.script, 0o755)
		_, err := runStage(t, &Packages{Names: []string{"nosuch"}}, root)
		if err == nil || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("%s: got %v\nwant %s", c.tool, err, c.want)
		}
		calls := readRootFile(t, root, "tmp/calls")
		if wantCall := map[string]string{"usr/bin/dnf": "dnf install -y nosuch\n", "sbin/apk": "apk add --no-cache nosuch\n"}[c.tool]; calls != wantCall {
			t.Errorf("%s called as %q, want %q", c.tool, calls, wantCall)
		}
	}
}

func TestPackagesRejectsOptions(t *testing.T) {
	root := aptRoot(t)
	_, err := runStage(t, &Packages{Names: []string{"-oAPT::Get::AllowUnauthenticated=true"}}, root)
	if err == nil || !strings.Contains(err.Error(), "is not a package name") {
		t.Errorf("got %v", err)
	}
	if exists(root, "tmp/apt.calls") {
		t.Error("apt-get ran")
	}
}
