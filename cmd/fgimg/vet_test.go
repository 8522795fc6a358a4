package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/vet"
)

// vetConfig builds, on the busybox root, a clean image and a bad one
// made on purpose with a finding of each kind vetting sees without
// booting, through the template as a user would write it (a small dpkg
// database owns /usr/bin/tool, which a run command then changes).
func vetConfig() string {
	sum := md5.Sum([]byte("tool as packaged\n"))
	return `
image "clean" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
}

image "bad" {
  parent = image.clean
  file "/etc/ssh/sshd_config" {
    content = "PermitRootLogin yes\nPasswordAuthentication yes\n"
  }
  file "/etc/ssh/ssh_host_ed25519_key" {
    content = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    mode    = "0600"
  }
  file "/root/.ssh/id_rsa" {
    content = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
    mode    = "0600"
  }
  file "/srv/share/notes.txt" {
    content = "anyone may write\n"
    mode    = "0666"
  }
  file "/etc/machine-id" {
    content = "0123456789abcdef0123456789abcdef\n"
  }
  file "/usr/bin/tool" {
    content = "tool as packaged\n"
    mode    = "0755"
  }
  file "/var/lib/dpkg/status" {
    content = "Package: tool\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\n"
  }
  file "/var/lib/dpkg/info/tool.list" {
    content = "/.\n/usr\n/usr/bin\n/usr/bin/tool\n"
  }
  file "/var/lib/dpkg/info/tool.md5sums" {
    content = "` + hex.EncodeToString(sum[:]) + `  usr/bin/tool\n"
  }
  run = [
    "sed -i 's/^root:[^:]*:/root::/' /etc/shadow",
    "mkdir -p /usr/local/bin && cp /bin/busybox /usr/local/bin/rootme && chmod 4755 /usr/local/bin/rootme",
    "echo trojaned >> /usr/bin/tool",
  ]
}

target "tar" "bad-tar" {
  image       = image.bad
  compression = "none"
}

target "tar" "clean-tar" {
  image       = image.clean
  compression = "none"
}
`
}

func newVetEnv(t *testing.T) *env {
	e := newEnvWith(t, vetConfig())
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	return e
}

// vetJSON runs fgimg vet --json and decodes its report.
func (e *env) vetJSON(extraEnv []string, args ...string) (int, *vet.Report, string) {
	e.t.Helper()
	code, stdout, stderr := e.runEnv(extraEnv, append([]string{"vet", "--json"}, args...)...)
	var r vet.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		e.t.Fatalf("vet %v: exit %d, not a report: %v\n%s\n%s", args, code, err, stdout, stderr)
	}
	return code, &r, stderr
}

// The image built on purpose gets each finding at its path, through
// the CLI and the real mount of the cached image; the clean one none that
// blocks; a second vet is the cached report.
func TestVetFindings(t *testing.T) {
	e := newVetEnv(t)
	code, r, stderr := e.vetJSON(nil, "bad")
	if code != 1 || r.Passed || r.Blocking == 0 {
		t.Fatalf("vet bad: exit %d, passed %t, %d blocking; want 1, false and some\n%s", code, r.Passed, r.Blocking, stderr)
	}
	for _, w := range []struct{ id, path string }{
		{vet.IDEmptyPassword, "/etc/shadow"},
		{vet.IDSSHRootPassword, "/etc/ssh/sshd_config"},
		{vet.IDSSHPasswordAuth, "/etc/ssh/sshd_config"},
		{vet.IDSSHHostKeys, "/etc/ssh/ssh_host_ed25519_key"},
		{vet.IDWorldWritable, "/srv/share/notes.txt"},
		{vet.IDSetuidUnowned, "/usr/local/bin/rootme"},
		{vet.IDModified, "/usr/bin/tool"},
		{vet.IDPrivateKey, "/root/.ssh/id_rsa"},
		{vet.IDMachineID, "/etc/machine-id"},
	} {
		found := false
		for _, f := range r.Findings {
			found = found || f.ID == w.id && f.Path == w.path
		}
		if !found {
			t.Errorf("vet bad: no %s at %s", w.id, w.path)
		}
	}
	code, clean, stderr := e.vetJSON(nil, "clean")
	if code != 0 || !clean.Passed {
		t.Errorf("vet clean: exit %d, %d blocking: %v\n%s", code, clean.Blocking, clean.BlockingFindings(), stderr)
	}
	_, again, _ := e.vetJSON(nil, "bad")
	if again.Seconds != r.Seconds || again.Digest() != r.Digest() {
		t.Errorf("a second vet is not the cached report: %.3f s against %.3f s", again.Seconds, r.Seconds)
	}

	// -vulns matches the image's packages (its cached software stack)
	// against an OSV file: the installed tool 1.0-1 before its fix, and
	// not once the fix is the installed version.
	for _, c := range []struct {
		fixed string
		want  bool
	}{{"1.0-2", true}, {"1.0-1", false}} {
		db := filepath.Join(e.dir, "osv-"+c.fixed+".json")
		os.WriteFile(db, []byte(`{"id":"FGT-1","summary":"tool: a flaw","affected":[{"package":{"ecosystem":"fgimg-test:1","name":"tool"},
  "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"`+c.fixed+`"}]}]}]}`), 0o644)
		_, r, stderr := e.vetJSON(nil, "-vulns", db, "bad")
		found := false
		for _, f := range r.Findings {
			found = found || f.ID == vet.IDVulnerable && f.Package == "tool 1.0-1"
		}
		if found != c.want || r.VulnDB == "" {
			t.Errorf("-vulns fixed in %s: found %t, vuln db %q\n%s", c.fixed, found, r.VulnDB, stderr)
		}
	}

	// The human report names what blocks and how to approve.
	code, human, _ := e.run("vet", "bad")
	if code != 1 || !strings.Contains(human, "BLOCKS  critical  accounts.empty-password") || !strings.Contains(human, "fgimg approve "+shortDigest(r.Image)) {
		t.Errorf("vet bad, for people: exit %d\n%s", code, human)
	}
}

// register's gate, with the bare-metal policy (the operator's
// configuration gives the tar targets xcat's default policy, and the gate
// is asked for an "xcat" target; TestRegisterBareMetal goes through the
// gate with real xcat and warewulf targets): refused
// with the blocking findings and the approve command, accepted after
// fgimg approve; a rejection refuses whatever vetting says. A clean
// image under the cloud policy is approved by tools.
func TestRegisterGate(t *testing.T) {
	e := newVetEnv(t)
	metal, _ := json.Marshal(vet.Config{Kinds: map[string]vet.Policy{"tar": vet.Default("xcat")}})
	cfgPath := filepath.Join(e.dir, "vet.json")
	os.WriteFile(cfgPath, metal, 0o644)
	strict := []string{"FGIMG_VET_CONFIG=" + cfgPath}

	store, err := cache.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	files, err := catalog.NewFiles(store)
	if err != nil {
		t.Fatal(err)
	}
	cf := configFlags{}
	_, plan := cf.load([]string{e.dir}, &bytes.Buffer{})
	if plan == nil {
		t.Fatal("the configuration does not load")
	}
	subject := func(name, kind string) *vetSubject {
		s, err := vetSubjectOf(plan, name)
		if err != nil {
			t.Fatal(err)
		}
		s.kind = kind
		return s
	}
	gate := func(env []string, s *vetSubject) ([]string, string) {
		var w bytes.Buffer
		allowed, _ := vetGate([]*vetSubject{s}, 1, func(s *vetSubject) (*vet.Report, error) {
			_, r, _ := e.vetJSON(env, s.name)
			return r, nil
		}, files, &w)
		return allowed, w.String()
	}

	bad := subject("bad-tar", "xcat")
	allowed, msg := gate(strict, bad)
	id := shortDigest(bad.top.Digest.String())
	if len(allowed) != 0 || !strings.Contains(msg, "not approved") || !strings.Contains(msg, "critical accounts.empty-password /etc/shadow") ||
		!strings.Contains(msg, "boot.not-run") || !strings.Contains(msg, "fgimg approve "+id+" -by NAME -note TEXT") || !strings.Contains(msg, "xcat, bare metal") {
		t.Fatalf("an unapproved image: allowed %v\n%s", allowed, msg)
	}
	if a, _ := files.Approval(bad.top.Digest); a == nil || a.Status != catalog.StatusUnapproved {
		t.Errorf("the catalog after vetting: %+v", a)
	}

	if code, _, stderr := e.run("approve", "-by", "alice", id); code != exitUsage || !strings.Contains(stderr, "-by NAME -note TEXT") {
		t.Errorf("approve without a note: exit %d, %s", code, stderr)
	}
	if code, out, stderr := e.run("approve", "-by", "alice", "-note", "test image, keys are dummies", id); code != 0 || !strings.Contains(out, "approved "+id+" (bad-tar) by review: alice") {
		t.Fatalf("approve: exit %d\n%s%s", code, out, stderr)
	}
	allowed, msg = gate(strict, bad)
	if len(allowed) != 1 || !strings.Contains(msg, "approved by review (alice") {
		t.Fatalf("after approve: allowed %v\n%s", allowed, msg)
	}
	a, _ := files.Approval(bad.top.Digest)
	if a.By != catalog.ByReview || a.Who != "alice" || len(a.History) == 0 || len(a.Blocking) == 0 {
		t.Errorf("the approval: %+v", a)
	}
	// fgimg show tells the target's approval: of the root it is written from.
	code, out, stderr := e.run("show", "bad-tar")
	for _, want := range []string{"\nApproval: approved\n", "  by        review (alice)\n", "  note      test image, keys are dummies\n",
		"  blocking  " + strings.Join(a.Blocking, ", ") + "\n", "accounts.empty-password", "  image     " + bad.top.Digest.String() + ", vetted as bad-tar\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show bad-tar lacks %q: exit %d\n%s%s", want, code, out, stderr)
		}
	}
	code, out, stderr = e.run("show", "--json", "bad-tar")
	var shown struct {
		Approval *catalog.Approval `json:"approval"`
	}
	if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil || shown.Approval == nil || shown.Approval.Status != catalog.StatusApproved ||
		shown.Approval.By != catalog.ByReview || shown.Approval.Who != "alice" || shown.Approval.Note != "test image, keys are dummies" ||
		!shown.Approval.When.Equal(a.When) || !slices.Equal(shown.Approval.Blocking, a.Blocking) || shown.Approval.Image != bad.top.Digest {
		t.Errorf("show --json bad-tar: exit %d, %v, approval %+v\n%s", code, err, shown.Approval, stderr)
	}
	if code, out, _ := e.run("show", "clean-tar"); code != 0 || !strings.Contains(out, "\nApproval: none (not vetted; fgimg vet clean-tar vets it)\n") {
		t.Errorf("show of an image never vetted: exit %d\n%s", code, out)
	}

	if code, _, _ := e.run("approve", "-reject", "-by", "bob", "-note", "no", "bad-tar"); code != 0 {
		t.Fatal("approve -reject by name failed")
	}
	if allowed, msg = gate(nil, subject("bad-tar", "tar")); len(allowed) != 0 || !strings.Contains(msg, "rejected by bob") {
		t.Errorf("a rejected image: allowed %v\n%s", allowed, msg)
	}

	clean := subject("clean-tar", "tar")
	if allowed, msg = gate(nil, clean); len(allowed) != 1 {
		t.Errorf("a clean image under the cloud policy: allowed %v\n%s", allowed, msg)
	}
	if a, _ := files.Approval(clean.top.Digest); a == nil || a.Status != catalog.StatusApproved || a.By != catalog.ByTools || a.Report == "" {
		t.Errorf("a clean image's approval: %+v", a)
	}
	if code, out, _ := e.run("show", "clean-tar"); code != 0 || !strings.Contains(out, "\nApproval: approved\n  by        tools\n") || strings.Contains(out, "blocking") {
		t.Errorf("show of an image approved by tools: exit %d\n%s", code, out)
	}
}
