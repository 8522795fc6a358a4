package vet

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/cpio"
	"github.com/fgimg/fgimg/internal/swstack"
)

func write(t *testing.T, root, rel, body string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask, with setuid
		t.Fatal(err)
	}
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

// badRoot is a root filesystem with every kind of static finding, and a
// dpkg database owning some of its files (a merged /usr: the database
// says /bin/, the files are under /usr/bin/).
func badRoot(t *testing.T) string {
	root := t.TempDir()
	w := func(rel, body string, mode os.FileMode) { write(t, root, rel, body, mode) }
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	w("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n", 0o644)
	w("etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\ntoor:x:0:0::/root:/bin/sh\nbackup:x:34:34:backup:/var/backups:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/bash\n", 0o644)
	w("etc/shadow", "root::19000:0:99999:7:::\ndaemon:*:19000::::::\ntoor:!:19000::::::\nbackup:$y$j9T$abc$def:19000::::::\nalice:!:19000::::::\n", 0o640)
	w("etc/ssh/sshd_config", "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n", 0o644)
	w("etc/ssh/sshd_config.d/10-bad.conf", "PermitRootLogin yes\nPasswordAuthentication yes\n", 0o644)
	w("etc/ssh/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n", 0o600)
	w("home/alice/.ssh/authorized_keys", "ssh-ed25519 AAAAC3Nza alice@laptop\n", 0o600)
	w("srv/share/notes.txt", "anyone may write\n", 0o666)
	os.MkdirAll(filepath.Join(root, "srv/drop"), 0o755)
	os.Chmod(filepath.Join(root, "srv/drop"), 0o777)
	os.MkdirAll(filepath.Join(root, "tmp"), 0o755)
	os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777)
	w("usr/local/bin/rootme", "#!/bin/sh\n", os.ModeSetuid|0o755)
	w("usr/bin/su", "su, as packaged\n", os.ModeSetuid|0o755)
	w("usr/bin/ls", "ls, changed after install\n", 0o755)
	w("usr/bin/cat", "cat\n", 0o755)
	w("usr/bin/stray", "no package\n", 0o755)
	w("root/.ssh/id_rsa", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n", 0o600)
	w("root/.bash_history", "mysql -p hunter2\n", 0o600)
	w("root/.aws/credentials", "[default]\naws_secret_access_key = x\n", 0o600)
	w("opt/app/.git/config", "[core]\n", 0o644)
	// Code naming the marker is not a key, compiled or not.
	w("usr/local/lib/keys.py", "MARK = (\n    \"-----BEGIN OPENSSH PRIVATE KEY-----\"\n)\n", 0o644)
	w("usr/local/lib/__pycache__/keys.pyc", "\x00\x00-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n", 0o644)
	w("etc/machine-id", "0123456789abcdef0123456789abcdef\n", 0o444)
	w("etc/apt/sources.list.d/local.list", "deb [trusted=yes] http://repo.example/ stable main\n", 0o644)
	w("var/lib/dpkg/status", "Package: coreutils\nStatus: install ok installed\nVersion: 9.1-1\nArchitecture: amd64\n\nPackage: login\nStatus: install ok installed\nVersion: 1:4.13+dfsg1-1\nArchitecture: amd64\nSource: shadow\n\n", 0o644)
	w("var/lib/dpkg/info/coreutils.list", "/.\n/bin\n/bin/ls\n/bin/cat\n", 0o644)
	w("var/lib/dpkg/info/coreutils.md5sums", md5hex("ls\n")+"  bin/ls\n"+md5hex("cat\n")+"  bin/cat\n"+md5hex("gone\n")+"  usr/share/doc/coreutils/README\n", 0o644)
	w("var/lib/dpkg/info/login.list", "/.\n/bin/su\n", 0o644)
	w("var/lib/dpkg/info/login.md5sums", md5hex("su, as packaged\n")+"  bin/su\n", 0o644)
	return root
}

// want is a finding expected: ID and path (or package).
type want struct{ id, where string }

func has(r *Report, w want) bool {
	for _, f := range r.Findings {
		if f.ID == w.id && (f.Path == w.where || f.Package == w.where) {
			return true
		}
	}
	return false
}

func TestCheckFindsEverything(t *testing.T) {
	root := badRoot(t)
	r, err := Check(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wants := []want{
		{IDEmptyPassword, "/etc/shadow"},
		{IDSecondUID0, "/etc/passwd"},
		{IDSystemShell, "/etc/passwd"},
		{IDSSHRootPassword, "/etc/ssh/sshd_config.d/10-bad.conf"},
		{IDSSHPasswordAuth, "/etc/ssh/sshd_config.d/10-bad.conf"},
		{IDSSHHostKeys, "/etc/ssh/ssh_host_ed25519_key"},
		{IDSSHAuthorized, "/home/alice/.ssh/authorized_keys"},
		{IDWorldWritable, "/srv/share/notes.txt"},
		{IDWorldWritableDir, "/srv/drop"},
		{IDSetuidUnowned, "/usr/local/bin/rootme"},
		{IDModified, "/usr/bin/ls"},
		{IDUnownedUsr, "/usr/bin/stray"},
		{IDPrivateKey, "/root/.ssh/id_rsa"},
		{IDShellHistory, "/root/.bash_history"},
		{IDCloudCredentials, "/root/.aws/credentials"},
		{IDGitDir, "/opt/app/.git"},
		{IDMachineID, "/etc/machine-id"},
		{IDUnsignedRepo, "/etc/apt/sources.list.d/local.list"},
	}
	for _, w := range wants {
		if !has(r, w) {
			t.Errorf("no %s at %s", w.id, w.where)
		}
	}
	// What is right is not a finding: the packaged setuid su, cat as
	// packaged, /tmp (sticky), the documentation the image dropped,
	// the host key as a private key (it is ssh.host-keys), root's
	// password (it is empty: accounts.empty-password).
	for _, w := range []want{{IDSetuidUnowned, "/usr/bin/su"}, {IDSetuidModified, "/usr/bin/su"}, {IDModified, "/usr/bin/cat"},
		{IDWorldWritableDir, "/tmp"}, {IDModified, "/usr/share/doc/coreutils/README"}, {IDPrivateKey, "/etc/ssh/ssh_host_ed25519_key"},
		{IDRootPassword, "/etc/shadow"}, {IDUnownedUsr, "/usr/bin/ls"},
		{IDPrivateKey, "/usr/local/lib/keys.py"}, {IDPrivateKey, "/usr/local/lib/__pycache__/keys.pyc"}} {
		if has(r, w) {
			t.Errorf("%s at %s is not a problem", w.id, w.where)
		}
	}
	for _, f := range r.Findings {
		if f.Fix == "" || f.Detail == "" {
			t.Errorf("%s at %s says no detail or fix", f.ID, f.Path)
		}
		if f.ID == IDEmptyPassword && f.Severity != Critical {
			t.Errorf("root's empty password is %s, not critical", f.Severity)
		}
		if f.ID == IDModified && f.Severity != High {
			t.Errorf("a modified program is %s, not high", f.Severity)
		}
	}

	// The packaged setuid su, overwritten, is the worst of the file findings.
	write(t, root, "usr/bin/su", "su, trojaned\n", os.ModeSetuid|0o755)
	r, err = Check(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !has(r, want{IDSetuidModified, "/usr/bin/su"}) || has(r, want{IDModified, "/usr/bin/su"}) {
		t.Errorf("a modified setuid su: %v", r.Findings)
	}
}

func TestPolicy(t *testing.T) {
	r, err := Check(badRoot(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	count := func(p Policy) (n int) {
		r.Apply(p)
		return r.Blocking
	}
	cloud, metal := count(Default("openstack")), count(Default("xcat"))
	if cloud == 0 || metal <= cloud {
		t.Errorf("blocking: %d for a cloud, %d for bare metal; want some, and more for bare metal", cloud, metal)
	}
	if !has(r, want{IDBootNotRun, ""}) {
		t.Errorf("bare metal without a boot: no %s", IDBootNotRun)
	}
	if n := count(Policy{Block: none}); n != 0 {
		t.Errorf("a policy blocking nothing blocks %d", n)
	}
	if n := count(Policy{Block: none, BlockIDs: []string{IDGitDir}}); n != 1 {
		t.Errorf("block_ids [%s]: %d blocking", IDGitDir, n)
	}
	all := count(Policy{Block: High})
	if n := count(Policy{Block: High, Allow: []string{IDWorldWritable + ":/srv/share/notes.txt"}}); n != all-1 {
		t.Errorf("allowing one path: %d blocking, want %d", n, all-1)
	}

	// The template cannot loosen bare metal's floor, nor the operator's.
	noneSev, no := none, false
	loose := &Override{Block: &noneSev, Boot: &no, Allow: []string{IDMachineID}}
	if p := (&Config{}).Effective("xcat", loose); p.Block != High || !p.Boot || len(p.Allow) != 0 {
		t.Errorf("xcat with a loose template: %+v", p)
	}
	if p := (&Config{}).Effective("openstack", loose); p.Block != none || p.Boot {
		t.Errorf("openstack with a loose template and no operator policy: %+v", p)
	}
	op := &Config{Kinds: map[string]Policy{"openstack": {Block: Medium, Allow: []string{IDMachineID}}}}
	if p := op.Effective("openstack", loose); p.Block != Medium || !slices.Equal(p.Allow, []string{IDMachineID}) {
		t.Errorf("openstack under the operator's policy: %+v", p)
	}
	high := High
	if p := op.Effective("openstack", &Override{Block: &high}); p.Block != Medium {
		t.Errorf("a template asking high under an operator's medium: %s", p.Block)
	}
	low := Low
	if p := op.Effective("openstack", &Override{Block: &low}); p.Block != Low {
		t.Errorf("a template tightening to low: %s", p.Block)
	}
}

func TestOSV(t *testing.T) {
	st := &swstack.Stack{Manager: "dpkg", OSID: "debian", OSVersionID: "12", Packages: []swstack.Package{
		{Name: "openssl", Version: "3.0.11-1~deb12u2"},
		{Name: "login", Version: "1:4.13+dfsg1-1", Source: "shadow"},
		{Name: "bash", Version: "5.2.15-2+b7"},
	}}
	dir := t.TempDir()
	db := filepath.Join(dir, "osv.json")
	os.WriteFile(db, []byte(`[
 {"id":"DSA-0001-1","aliases":["CVE-2024-0001"],"summary":"openssl: a flaw","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u10"}]}]}]},
 {"id":"DSA-0002-1","summary":"shadow: fixed already","affected":[{"package":{"ecosystem":"Debian:12","name":"shadow"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:4.13+dfsg1-0.1"}]}]}]},
 {"id":"DSA-0003-1","summary":"shadow by source, exact","affected":[{"package":{"ecosystem":"Debian:12","name":"shadow"},"versions":["1:4.13+dfsg1-1"]}]},
 {"id":"DSA-0004-1","summary":"bash in Debian 11","affected":[{"package":{"ecosystem":"Debian:11","name":"bash"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]},
 {"id":"DSA-0005-1","summary":"bash up to b7","database_specific":{"severity":"LOW"},"affected":[{"package":{"ecosystem":"Debian:12","name":"bash"},
   "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"5.2.15-2"},{"last_affected":"5.2.15-2+b7"}]}]}]}
]`), 0o644)
	d, err := LoadDB(db)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range d.Match(st) {
		got = append(got, strings.Fields(f.Detail)[0]+" "+f.Package+" "+f.Severity.String())
		if strings.HasPrefix(f.Detail, "DSA-0001-1") && !strings.Contains(f.Fix, "3.0.11-1~deb12u10") {
			t.Errorf("the fix does not name the fixed version: %s", f.Fix)
		}
	}
	wantGot := []string{"DSA-0001-1 openssl 3.0.11-1~deb12u2 high", "DSA-0003-1 login 1:4.13+dfsg1-1 high", "DSA-0005-1 bash 5.2.15-2+b7 low"}
	if !slices.Equal(got, wantGot) {
		t.Errorf("matched %q, want %q", got, wantGot)
	}
	// The same database without those versions: nothing.
	st.Packages[0].Version, st.Packages[1].Version, st.Packages[2].Version = "3.0.11-1~deb12u10", "1:4.13+dfsg1-2", "5.2.15-2+b8"
	if f := d.Match(st); len(f) != 0 {
		t.Errorf("fixed versions still match: %v", f)
	}
	if d.Digest == "" || d.Len() != 5 {
		t.Errorf("digest %q, %d records", d.Digest, d.Len())
	}
}

// The probe's console lines become the listening sockets with their
// processes (only LISTEN TCP and unconnected UDP), the failed units and
// the probe's own time; kernel lines around them are ignored.
func TestParseProbe(t *testing.T) {
	console := "[    3.1] systemd[1]: Started ssh.service.\r\n" +
		"Debian GNU/Linux 12 node ttyS0\r\n\r\nnode login: fgv begin 12.50\r\n" +
		"fgv sock tcp 00000000:0016 0A 1111\r\n" +
		"fgv sock tcp 0100007F:0019 0A 2222\r\n" +
		"fgv sock tcp 0F02000A:0016 01 3333\r\n" + // established: not listening
		"fgv sock udp 00000000:0044 07 4444\r\n" +
		"fgv sock tcp6 00000000000000000000000001000000:0016 0A 5555\r\n" +
		"fgv comm 1 systemd\r\nfgv comm 321 sshd\r\nfgv comm 400 exim4\r\nfgv comm 402 dhclient\r\n" +
		"fgv fd /proc/321/fd socket:[1111]\r\nfgv fd /proc/400/fd socket:[2222]\r\nfgv fd /proc/402/fd socket:[4444]\r\nfgv fd /proc/321/fd socket:[5555]\r\n" +
		"fgv failed rpcbind.service\r\n" +
		"fgv end 12.90\r\nFGIMG-VET-2END\r\n"
	b := parseProbe(console)
	var got []string
	for _, s := range b.Listening {
		got = append(got, s.String())
	}
	want := []string{"tcp 0.0.0.0:22 sshd", "tcp 127.0.0.1:25 exim4", "tcp6 [::1]:22 sshd", "udp 0.0.0.0:68 dhclient"}
	if !slices.Equal(got, want) {
		t.Errorf("listening %q, want %q", got, want)
	}
	if !b.Login || !slices.Equal(b.FailedUnits, []string{"rpcbind.service"}) || b.ProbeSeconds < 0.39 || b.ProbeSeconds > 0.41 {
		t.Errorf("login %t, failed %v, probe %.2f s", b.Login, b.FailedUnits, b.ProbeSeconds)
	}
	var ids []string
	for _, f := range b.Findings() {
		ids = append(ids, f.ID+" "+f.Severity.String())
	}
	if !slices.Contains(ids, IDBootFailedUnit+" medium") || !slices.Contains(ids, IDBootListening+" low") || !slices.Contains(ids, IDBootListening+" info") || slices.Contains(ids, IDBootNoLogin+" high") {
		t.Errorf("boot findings: %v", ids)
	}
	if (&Boot{}).Findings()[0].ID != IDBootNoLogin {
		t.Error("a boot without a login prompt is not a finding")
	}
}

// The probe's initramfs is the artifact's bytes unchanged, padded to 4
// bytes, then an archive with the unit (enabled) and the script; the
// artifact itself is not touched.
func TestProbeInitrd(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "initramfs.cpio.gz")
	orig := []byte("not really gzip, 23 b..")
	os.WriteFile(src, orig, 0o644)
	dst := filepath.Join(dir, "probe")
	if err := probeInitrd(src, dst); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	if again, _ := os.ReadFile(src); !bytes.Equal(again, orig) || !bytes.Equal(b[:len(orig)], orig) || b[len(orig)] != 0 {
		t.Fatalf("the original part changed")
	}
	r := cpio.NewReader(bytes.NewReader(b[24:]))
	got := map[string]string{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r)
		got[h.Name] = string(body) + h.Linkname
	}
	if !strings.Contains(got["etc/systemd/system/fgimg-vet-probe.service"], "ExecStart=/bin/sh /fgimg-vet-probe") ||
		got["etc/systemd/system/multi-user.target.wants/fgimg-vet-probe.service"] != "/etc/systemd/system/fgimg-vet-probe.service" ||
		!strings.Contains(got["fgimg-vet-probe"], `echo "FGIMG-VET-$((1+1))END"`) {
		t.Errorf("the probe archive: %q", got)
	}
}
