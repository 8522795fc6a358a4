package stages

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/testkit"
)

// shadowRoot is a busybox root filesystem with the host's own shadow
// tools (useradd, usermod, groupadd) and the libraries they need copied
// in, so that users stages run real useradd without a network.
func shadowRoot(t *testing.T) string {
	t.Helper()
	root := busyboxRoot(t)
	tools := testkit.Need(t, "useradd", "usermod", "groupadd")
	files := map[string]bool{}
	for _, tool := range tools {
		files[tool] = true
		out, err := exec.Command("ldd", tool).Output()
		if err != nil {
			t.Skipf("ldd %s: %v", tool, err)
		}
		for _, m := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
			files[m[1]] = true
		}
	}
	for _, f := range []string{"/etc/login.defs", "/etc/default/useradd"} {
		if _, err := os.Stat(f); err == nil {
			files[f] = true
		}
	}
	for f := range files {
		copyHostFile(t, f, filepath.Join(root, f))
	}
	if err := os.Mkdir(filepath.Join(root, "home"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func copyHostFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestUsersWithUseradd(t *testing.T) {
	root := shadowRoot(t)
	uid := int64(1100)
	log := mustRunStage(t, &Users{Users: []User{
		{Name: "alice", UID: &uid, Groups: []string{"devs", "wheel"}, Shell: "/bin/sh", Home: "/home/alice",
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3Nza alice@laptop\n", "  ", "ssh-rsa AAAAB3Nza alice@desk"}},
		{Name: "bob"},
	}}, root)

	passwd := readRootFile(t, root, "etc/passwd")
	if !regexp.MustCompile(`(?m)^alice:x:1100:\d+::/home/alice:/bin/sh$`).MatchString(passwd) {
		t.Errorf("alice in /etc/passwd:\n%s", passwd)
	}
	if !regexp.MustCompile(`(?m)^bob:x:\d+:\d+:`).MatchString(passwd) {
		t.Errorf("bob in /etc/passwd:\n%s", passwd)
	}
	group := readRootFile(t, root, "etc/group")
	for _, g := range []string{"devs", "wheel"} {
		if !hasMember(group, g, "alice") {
			t.Errorf("alice is not in %s:\n%s", g, group)
		}
	}
	if !strings.Contains(log, "+ /usr/sbin/groupadd devs") {
		t.Errorf("the missing group was not created with groupadd; log:\n%s", log)
	}
	if strings.Contains(log, "groupadd wheel") {
		t.Errorf("the existing group wheel was created again; log:\n%s", log)
	}

	gid := groupID(t, group, "alice")
	checkMeta(t, root, "home/alice/.ssh", unix.S_IFDIR, 0o700, 1100, gid)
	checkMeta(t, root, "home/alice/.ssh/authorized_keys", unix.S_IFREG, 0o600, 1100, gid)
	if got := readRootFile(t, root, "home/alice/.ssh/authorized_keys"); got != "ssh-ed25519 AAAAC3Nza alice@laptop\nssh-rsa AAAAB3Nza alice@desk\n" {
		t.Errorf("authorized_keys = %q", got)
	}
	if exists(root, "home/bob/.ssh") {
		t.Error("bob got an .ssh directory without keys")
	}

	// An existing user is modified, not created again.
	log = mustRunStage(t, &Users{Users: []User{
		{Name: "alice", Groups: []string{"devs", "staff"}, Shell: "/bin/false"},
	}}, root)
	if !strings.Contains(log, "+ /usr/sbin/usermod -a -G staff -s /bin/false alice") {
		t.Errorf("usermod not run as expected; log:\n%s", log)
	}
	passwd = readRootFile(t, root, "etc/passwd")
	if !regexp.MustCompile(`(?m)^alice:x:1100:\d+::/home/alice:/bin/false$`).MatchString(passwd) {
		t.Errorf("alice after usermod:\n%s", passwd)
	}
	group = readRootFile(t, root, "etc/group")
	for _, g := range []string{"devs", "wheel", "staff"} {
		if !hasMember(group, g, "alice") {
			t.Errorf("alice is not in %s after usermod:\n%s", g, group)
		}
	}

	// Nothing to change: no command at all.
	log = mustRunStage(t, &Users{Users: []User{{Name: "alice", Groups: []string{"staff"}}}}, root)
	if strings.Contains(log, "+ ") {
		t.Errorf("commands ran for an unchanged user:\n%s", log)
	}
}

func TestUsersUseraddFailureQuotesIt(t *testing.T) {
	root := shadowRoot(t)
	uid := int64(1) // daemon's
	_, err := runStage(t, &Users{Users: []User{{Name: "carol", UID: &uid}}}, root)
	want := "users stage: user carol: useradd failed (exit status 4): useradd: UID 1 is not unique"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestUsersWithoutTools(t *testing.T) {
	root := busyboxRoot(t)
	_, err := runStage(t, &Users{Users: []User{{Name: "alice"}}}, root)
	want := "users stage: the image has no tool to create users: neither useradd (shadow) nor busybox adduser and addgroup"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}

// Debian's busybox lacks adduser and addgroup, so the busybox commands
// are checked against busybox's documented usage (adduser [-h DIR] [-s
// SHELL] [-G GRP] [-D] [-u UID] USER; addgroup USER GROUP).
func TestUsersBusyboxCommands(t *testing.T) {
	bb := &userTools{busybox: true, adduser: "/usr/sbin/adduser", addgroup: "/usr/sbin/addgroup"}
	uid := int64(1100)
	db := &idDB{
		users:  map[string]passwdEntry{"dave": {name: "dave", uid: 1200, gid: 1200, home: "/home/dave", shell: "/bin/sh"}},
		groups: map[string]groupEntry{"dave": {name: "dave", gid: 1200}, "wheel": {name: "wheel", gid: 10, members: []string{"root"}}, "erin": {name: "erin", gid: 1300}},
	}
	got := createUserArgs(bb, User{Name: "alice", UID: &uid, Groups: []string{"wheel", "devs"}, Shell: "/bin/ash", Home: "/srv/alice"}, db)
	want := [][]string{
		{"/usr/sbin/adduser", "-D", "-u", "1100", "-s", "/bin/ash", "-h", "/srv/alice", "alice"},
		{"/usr/sbin/addgroup", "alice", "wheel"},
		{"/usr/sbin/addgroup", "alice", "devs"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("new user: %q\nwant %q", got, want)
	}
	// A group named like the user already exists: it becomes the primary.
	got = createUserArgs(bb, User{Name: "erin"}, db)
	if want := [][]string{{"/usr/sbin/adduser", "-D", "-G", "erin", "erin"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("user with an existing group: %q\nwant %q", got, want)
	}
	// An existing user gains the groups it lacks; busybox cannot change
	// the rest.
	got, err := modifyUserArgs(nil, bb, User{Name: "dave", Groups: []string{"dave", "wheel"}}, db.users["dave"], db)
	if want := [][]string{{"/usr/sbin/addgroup", "dave", "wheel"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("existing user: %q, %v\nwant %q", got, err, want)
	}
	if _, err := modifyUserArgs(nil, bb, User{Name: "dave", Shell: "/bin/ash"}, db.users["dave"], db); err == nil || !strings.Contains(err.Error(), "no usermod") {
		t.Errorf("changing an existing user's shell with busybox: %v", err)
	}
}
