package stages

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// fileEntry is an inline-content file entry as the planner makes it.
func fileEntry(p, content string, mode uint32, owner, group string) FileEntry {
	return FileEntry{Path: p, Type: TypeFile, Mode: mode, Owner: owner, Group: group,
		Digest: digest.FromString(content), Content: []byte(content)}
}

// withUmask runs the test under a restrictive umask, which must not
// change any mode a stage sets.
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func TestFilesWritesEntries(t *testing.T) {
	root := busyboxRoot(t)
	withUmask(t, 0o077)

	big := make([]byte, 3<<20+17)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "app.bin")
	if err := os.WriteFile(src, big, 0o600); err != nil {
		t.Fatal(err)
	}
	spec := &Files{Entries: []FileEntry{
		fileEntry("/etc/motd", "hello\n", 0o640, "daemon", "adm"),
		{Path: "/opt/deep/er/app", Type: TypeFile, Mode: 0o4755, Owner: "1234", Group: "5678",
			Digest: digest.FromBytes(big), Source: src},
		{Path: "/srv/shared", Type: TypeDir, Mode: 0o1777, Owner: "nobody", Group: "nogroup"},
		{Path: "/srv/shared/link", Type: TypeSymlink, Mode: 0o777, Owner: "daemon", Group: "1", Target: "../../etc/motd"},
		fileEntry("/srv/shared/private", "", 0o600, "root", "root"),
	}}
	log := mustRunStage(t, spec, root)

	if got := readRootFile(t, root, "etc/motd"); got != "hello\n" {
		t.Errorf("/etc/motd = %q", got)
	}
	checkMeta(t, root, "etc/motd", unix.S_IFREG, 0o640, 1, 4) // daemon:adm by name

	if got := readRootFile(t, root, "opt/deep/er/app"); got != string(big) {
		t.Errorf("/opt/deep/er/app: %d bytes, want the %d of its source", len(got), len(big))
	}
	// Owner and group by number, set-uid kept although chown clears it.
	checkMeta(t, root, "opt/deep/er/app", unix.S_IFREG, 0o4755, 1234, 5678)
	for _, d := range []string{"opt", "opt/deep", "opt/deep/er"} {
		checkMeta(t, root, d, unix.S_IFDIR, 0o755, 0, 0) // missing parents
	}

	checkMeta(t, root, "srv/shared", unix.S_IFDIR, 0o1777, 65534, 65534)
	checkMeta(t, root, "srv/shared/link", unix.S_IFLNK, 0, 1, 1)
	if target, _ := os.Readlink(filepath.Join(root, "srv/shared/link")); target != "../../etc/motd" {
		t.Errorf("symlink target %q", target)
	}
	checkMeta(t, root, "srv/shared/private", unix.S_IFREG, 0o600, 0, 0)
	if got := readRootFile(t, root, "srv/shared/private"); got != "" {
		t.Errorf("empty file has %q", got)
	}
	if names := dirEntries(t, root, "srv/shared"); names != "link private" {
		t.Errorf("/srv/shared holds %q: temporary files left?", names)
	}
	if !strings.Contains(log, "/opt/deep/er/app") {
		t.Errorf("the log does not mention the files written:\n%s", log)
	}
}

func TestFilesReplacesExisting(t *testing.T) {
	root := busyboxRoot(t)
	// A hard-linked file is replaced, not written through its other name.
	if err := os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hostname.bak")); err != nil {
		t.Fatal(err)
	}
	// A symlink at the path is replaced, not followed.
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "etc/issue")); err != nil {
		t.Fatal(err)
	}
	passwd := readRootFile(t, root, "etc/passwd")
	// A merged-/usr style symlink to a directory is kept for a directory.
	if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}

	mustRunStage(t, &Files{Entries: []FileEntry{
		fileEntry("/etc/hostname", "image\n", 0o644, "root", "root"),
		fileEntry("/etc/issue", "welcome\n", 0o644, "root", "root"),
		{Path: "/lib", Type: TypeDir, Mode: 0o755, Owner: "root", Group: "root"},
		fileEntry("/lib/extra.conf", "x\n", 0o644, "root", "root"),
		{Path: "/usr/share/testkit", Type: TypeDir, Mode: 0o700, Owner: "daemon", Group: "daemon"},
	}}, root)

	if got := readRootFile(t, root, "etc/hostname"); got != "image\n" {
		t.Errorf("/etc/hostname = %q", got)
	}
	if got := readRootFile(t, root, "etc/hostname.bak"); got != "testkit\n" {
		t.Errorf("the other hard link changed to %q", got)
	}
	checkMeta(t, root, "etc/issue", unix.S_IFREG, 0o644, 0, 0)
	if got := readRootFile(t, root, "etc/passwd"); got != passwd {
		t.Errorf("/etc/passwd was written through the /etc/issue symlink: %q", got)
	}
	checkMeta(t, root, "lib", unix.S_IFLNK, 0, 0, 0)
	if got := readRootFile(t, root, "usr/lib/extra.conf"); got != "x\n" {
		t.Errorf("/usr/lib/extra.conf = %q", got)
	}
	// An existing directory keeps its content and takes the new metadata.
	checkMeta(t, root, "usr/share/testkit", unix.S_IFDIR, 0o700, 1, 1)
	if !exists(root, testkit.HardLinkA) {
		t.Errorf("%s is gone", testkit.HardLinkA)
	}

	_, err := runStage(t, &Files{Entries: []FileEntry{fileEntry("/etc", "x", 0o644, "root", "root")}}, root)
	if err == nil || !strings.Contains(err.Error(), "/etc: a directory is in the way") {
		t.Errorf("a file over a directory: %v", err)
	}
}

// A symlink climbing above the root stops there, as in a chroot (and in
// the booted image): what it names is written inside the root, never on
// the host.
func TestFilesDotDotStopsAtRoot(t *testing.T) {
	root := busyboxRoot(t)
	outside := t.TempDir()
	// Enough ".." to reach the host's / from root, then the outside dir.
	up := strings.Repeat("../", strings.Count(root, "/")+2)
	if err := os.Symlink(up+strings.TrimPrefix(outside, "/"), filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../..", filepath.Join(root, "etc/up")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/escape/pwned", "/etc/up/pwned", "/etc/up/tmp/pwned"} {
		for _, e := range []FileEntry{
			fileEntry(p, "x", 0o644, "root", "root"),
			{Path: p, Type: TypeDir, Mode: 0o755, Owner: "root", Group: "root"},
			{Path: p, Type: TypeSymlink, Target: "/etc/passwd", Owner: "root", Group: "root"},
		} {
			_, err := runStage(t, &Files{Entries: []FileEntry{e}}, root)
			if p == "/escape/pwned" {
				// Inside the root, the outside directory's path does not
				// exist, and a symlink's target is never created.
				if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), p) {
					t.Errorf("%s %s: got %v, want an error naming it and wrapping ENOENT", e.Type, p, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s: %v", e.Type, p, err)
			}
			in := strings.Replace(p, "/etc/up", "", 1)
			if !exists(root, strings.TrimPrefix(in, "/")) {
				t.Errorf("%s %s: not written at %s in the root", e.Type, p, in)
			}
			os.RemoveAll(filepath.Join(root, in))
		}
	}
	if names := dirEntries(t, outside, ""); names != "" {
		t.Errorf("written outside the root: %s", names)
	}
}

func TestFilesAbsoluteSymlinkResolvesInsideRoot(t *testing.T) {
	root := busyboxRoot(t)
	outside := t.TempDir()
	// /var/run -> /run style: absolute targets mean the image's own paths,
	// even when they also exist on the host.
	if err := os.Symlink(outside, filepath.Join(root, "hostpath")); err != nil {
		t.Fatal(err)
	}
	// A symlink's target is never created on the way (as mkdir -p), so
	// the image has the directory it names.
	if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRunStage(t, &Files{Entries: []FileEntry{fileEntry("/hostpath/f", "inside\n", 0o644, "root", "root")}}, root)
	if names := dirEntries(t, outside, ""); names != "" {
		t.Errorf("written to the host's %s: %s", outside, names)
	}
	if got := readRootFile(t, root, filepath.Join(outside, "f")); got != "inside\n" {
		t.Errorf("file at the symlink's target inside the root: %q", got)
	}
}

func TestFilesUnknownOwner(t *testing.T) {
	root := busyboxRoot(t)
	for _, c := range []struct {
		owner, group, want string
	}{
		{"alice", "root", `/etc/motd: owner "alice" is not a user of the image`},
		{"root", "devs", `/etc/motd: group "devs" is not a group of the image`},
	} {
		_, err := runStage(t, &Files{Entries: []FileEntry{fileEntry("/etc/motd", "x", 0o644, c.owner, c.group)}}, root)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("owner %s:%s: got %v, want %q", c.owner, c.group, err, c.want)
		}
	}
	if exists(root, "etc/motd") {
		t.Error("the file was written despite its unknown owner")
	}
}

func TestFilesSourceChangedSincePlan(t *testing.T) {
	root := busyboxRoot(t)
	src := filepath.Join(t.TempDir(), "conf")
	if err := os.WriteFile(src, []byte("edited after planning\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runStage(t, &Files{Entries: []FileEntry{{Path: "/etc/app.conf", Type: TypeFile, Mode: 0o644,
		Owner: "root", Group: "root", Digest: digest.FromString("as planned\n"), Source: src}}}, root)
	if err == nil || !strings.Contains(err.Error(), "changed since the plan was made") {
		t.Fatalf("changed source: %v", err)
	}
	if exists(root, "etc/app.conf") || strings.Contains(dirEntries(t, root, "etc"), ".fgimg-") {
		t.Errorf("files left in /etc: %s", dirEntries(t, root, "etc"))
	}
}

func TestFilesOnOverlay(t *testing.T) {
	lower := busyboxRoot(t)
	merged, upper := overlay(t, lower)
	mustRunStage(t, &Files{Entries: []FileEntry{
		fileEntry("/etc/hostname", "layered\n", 0o644, "root", "root"),
		fileEntry("/etc/new/conf", "new\n", 0o600, "daemon", "daemon"),
	}}, merged)
	if got := readRootFile(t, upper, "etc/hostname"); got != "layered\n" {
		t.Errorf("upper /etc/hostname = %q", got)
	}
	if got := readRootFile(t, lower, "etc/hostname"); got != "testkit\n" {
		t.Errorf("lower /etc/hostname changed to %q", got)
	}
	checkMeta(t, upper, "etc/new/conf", unix.S_IFREG, 0o600, 1, 1)
	if exists(upper, "bin") {
		t.Error("the upper directory captured more than the stage changed")
	}
}

func TestFilesOwnersFromShippedPasswd(t *testing.T) {
	root := busyboxRoot(t)
	passwd := readRootFile(t, root, "etc/passwd") + "app:x:1500:1500:app:/srv/app:/bin/false\n"
	group := readRootFile(t, root, "etc/group") + "app:x:1500:\n"
	mustRunStage(t, &Files{Entries: []FileEntry{
		fileEntry("/etc/group", group, 0o644, "root", "root"),
		fileEntry("/etc/passwd", passwd, 0o644, "root", "root"),
		fileEntry("/srv/app/config", "x\n", 0o600, "app", "app"),
	}}, root)
	checkMeta(t, root, "srv/app/config", unix.S_IFREG, 0o600, 1500, 1500)
}
