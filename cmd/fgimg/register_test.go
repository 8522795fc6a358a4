package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/register"
)

func TestRegisterWithoutCloudTargets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), small)
	code, _, errw := fgimg(t, "register", "--cache-dir", t.TempDir(), "-o", t.TempDir(), dir)
	if code != exitFailed || !strings.Contains(errw, "nothing to register: no opennebula or openstack target is selected") {
		t.Errorf("register of a configuration without cloud targets: exit %d\n%s", code, errw)
	}
	if code, _, errw := fgimg(t, "register", "-j", "0", dir); code != exitUsage {
		t.Errorf("register -j 0: exit %d\n%s", code, errw)
	}
}

func TestTemplateCommit(t *testing.T) {
	testkit.Need(t, "git")
	dir := t.TempDir()
	var errw bytes.Buffer
	if got := templateCommit(context.Background(), []string{dir}, &errw); got != nil {
		t.Errorf("outside git: %v", got)
	}
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), small)
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "templates")
	head := git("rev-parse", "HEAD")
	if got := templateCommit(context.Background(), []string{dir}, &errw); got[register.PropTemplateCommit] != head || errw.Len() != 0 {
		t.Errorf("clean work tree: %v, %q; want %s", got, errw.String(), head)
	}
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), small+"\n")
	got := templateCommit(context.Background(), []string{filepath.Join(dir, "main.fg.hcl")}, &errw)
	if got[register.PropTemplateCommit] != head+"-dirty" || !strings.Contains(errw.String(), "not committed") {
		t.Errorf("changed templates: %v, %q; want %s-dirty and a warning", got, errw.String(), head)
	}
}
