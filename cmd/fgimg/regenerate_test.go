package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/opencontainers/go-digest"
)

// sde is the SOURCE_DATE_EPOCH the regeneration tests build with: the
// entry records it and regenerate builds with it again.
var sde = []string{"SOURCE_DATE_EPOCH=1700000000"}

// purgeAll purges every catalog entry.
func (e *env) purgeAll() {
	e.t.Helper()
	time.Sleep(1100 * time.Millisecond)
	if code, out, errs := e.fgimg("purge", "-unused-for", "1s", "-keep-last", "0"); code != 0 {
		e.t.Fatalf("purge: %d\n%s%s", code, out, errs)
	}
	if got := e.images("name where status!=purged"); len(got) != 0 {
		e.t.Fatalf("entries not purged: %v", got)
	}
}

// regenerate runs fgimg regenerate --json and decodes its result.
func (e *env) regenerate(args ...string) (int, regenResult, string) {
	e.t.Helper()
	code, out, errs := e.fgimg(append([]string{"regenerate", "--json"}, args...)...)
	var r regenResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		e.t.Fatalf("regenerate %v: exit %d, not JSON: %v\n%s%s", args, code, err, out, errs)
	}
	return code, r, errs
}

func readArtifacts(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[de.Name()] = string(b)
	}
	return m
}

func TestRegeneratePurged(t *testing.T) {
	e := newEnv(t)
	if code, _, errs := e.build(sde); code != 0 {
		t.Fatalf("build: %d\n%s", code, errs)
	}
	before := readArtifacts(t, filepath.Join(e.out, "child-rootfs"))
	id := e.images("id where name=child-rootfs")[0]["id"].(string)
	e.purgeAll()
	store, err := cache.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if store.Has(digest.Digest(id)) {
		t.Fatalf("the purged target's write stage is still cached")
	}
	out2 := filepath.Join(e.dir, "out2")
	code, r, errs := e.regenerate("-o", out2, "child-rootfs")
	if code != 0 || !r.Verified || r.Status != "regenerated, verified" || len(r.Artifacts) == 0 {
		t.Fatalf("regenerate child-rootfs: exit %d %+v\n%s", code, r, errs)
	}
	if !store.Has(digest.Digest(id)) {
		t.Errorf("the regenerated target's write stage is not cached")
	}
	if !strings.Contains(errs, "warning") || r.From != "files" {
		t.Errorf("templates not in git: no warning (from %q)\n%s", r.From, errs)
	}
	after := readArtifacts(t, filepath.Join(out2, "child-rootfs"))
	for name, b := range before {
		if after[name] != b {
			t.Errorf("regenerated %s differs from the first build's", name)
		}
	}
	if got := e.images("status where name=child-rootfs"); len(got) != 1 || got[0]["status"] != "regenerated, verified" {
		t.Errorf("catalog status after regenerate: %v", got)
	}
	// An image is verified by its layers.
	if code, r, errs := e.regenerate("-o", out2, "sibling"); code != 0 || !r.Verified || len(r.Artifacts) == 0 {
		t.Errorf("regenerate sibling: exit %d %+v\n%s", code, r, errs)
	}
	e.verifyCache()
}

// commitTemplates makes e's directory a git repository with its
// template and tarball committed.
func (e *env) commitTemplates() {
	e.t.Helper()
	for _, args := range [][]string{{"init", "-q"}, {"add", "main.fg.hcl", "rootfs.tar"}, {"commit", "-qm", "templates"}} {
		cmd := exec.Command("git", append([]string{"-c", "user.email=t@example.org", "-c", "user.name=t"}, args...)...)
		cmd.Dir = e.dir
		if msg, err := cmd.CombinedOutput(); err != nil {
			e.t.Fatalf("git %v: %v\n%s", args, err, msg)
		}
	}
}

func TestRegenerateFromGitCommit(t *testing.T) {
	e := newEnv(t)
	e.commitTemplates()
	if code, _, errs := e.build(sde); code != 0 {
		t.Fatalf("build: %d\n%s", code, errs)
	}
	before := readArtifacts(t, filepath.Join(e.out, "child-rootfs"))
	e.purgeAll()
	// An edit since the build changes child's stages: from the files
	// as they are, child-rootfs is another target.
	e.write(strings.Replace(buildConfig, `run = ["rm /etc/motd"]`, `run = ["rm /etc/motd", "echo edited > /etc/edited"]`, 1))
	out2 := filepath.Join(e.dir, "out2")
	code, r, errs := e.regenerate("-o", out2, "child-rootfs")
	if code != 0 || !r.Verified || !strings.HasPrefix(r.From, "git ") {
		t.Fatalf("regenerate from the recorded commit: exit %d %+v\n%s", code, r, errs)
	}
	after := readArtifacts(t, filepath.Join(out2, "child-rootfs"))
	for name, b := range before {
		if after[name] != b {
			t.Errorf("regenerated %s differs from the first build's", name)
		}
	}
	list, err := exec.Command("git", "-C", e.dir, "worktree", "list").Output()
	if err != nil || strings.Count(string(list), "\n") != 1 {
		t.Errorf("the temporary worktree is left: %v\n%s", err, list)
	}
}

func TestRegenerateNotReproducible(t *testing.T) {
	e := newEnv(t)
	e.write(`
image "base" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
}
image "clock" {
  parent = image.base
  run    = ["date +%s%N > /etc/clock; echo $RANDOM $$ >> /etc/clock"]
}
target "tar" "clock-rootfs" {
  image       = image.clock
  compression = "none"
}
`)
	if code, _, errs := e.build(sde); code != 0 {
		t.Fatalf("build: %d\n%s", code, errs)
	}
	e.purgeAll()
	code, out, errs := e.fgimg("regenerate", "-o", filepath.Join(e.dir, "out2"), "clock-rootfs")
	if code != 1 || !strings.Contains(out, "Not reproducible") || !strings.Contains(out, "rootfs") || !strings.Contains(out, "new: ") {
		t.Fatalf("regenerate of a stage writing the time: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("%s", out)
	// Both copies are kept and named; the first stage that made other
	// bytes and every differing file of the root filesystem are listed.
	for _, want := range []string{
		"The first: stage 1 (run) ",
		"  new: " + filepath.Join(e.dir, ".fgimg-regenerate-clock-rootfs-"),
		"  recorded: " + filepath.Join(e.out, "clock-rootfs") + "\n",
		"  ~ etc/clock: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("regenerate of a result not reproduced lacks %q", want)
		}
	}
	if strings.Contains(out, "  ~ bin/busybox") {
		t.Errorf("a file that did not change is listed")
	}
	if got := e.images("status where name=clock-rootfs"); len(got) != 1 || got[0]["status"] != "purged" {
		t.Errorf("status after a failed verification: %v, want purged", got)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "out2", "clock-rootfs")); err == nil {
		t.Errorf("artifacts not verified were exported")
	}
}

func TestRegenerateEditedTemplate(t *testing.T) {
	e := newEnv(t)
	if code, _, errs := e.build(sde); code != 0 {
		t.Fatalf("build: %d\n%s", code, errs)
	}
	e.write(strings.Replace(buildConfig, `run = ["rm /etc/motd"]`, `run = ["rm /etc/motd", "echo edited > /etc/edited"]`, 1))
	code, r, errs := e.regenerate("child")
	if code != 1 || r.Verified || !strings.Contains(r.Difference, "stage ") || !strings.Contains(r.Difference, "run") {
		t.Fatalf("regenerate after an edit outside git: exit %d %+v\n%s", code, r, errs)
	}
	t.Logf("%s", r.Difference)
}

// TestRegenerateIsConfinedLikeABuild: a template regenerated from its git
// commit reads what a build of that commit may read, no more. Built with
// --allow-read for a file outside the checkout, it regenerates only when
// the operator allows that directory again.
func TestRegenerateIsConfinedLikeABuild(t *testing.T) {
	e := newEnv(t)
	shared := t.TempDir()
	writeFile(t, filepath.Join(shared, "shared.txt"), "shared\n")
	e.write(`
image "shared" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  file "/etc/shared" {
    source = "` + filepath.Join(shared, "shared.txt") + `"
  }
}
target "tar" "shared-rootfs" {
  image       = image.shared
  compression = "none"
}
`)
	e.commitTemplates()
	if code, _, errs := e.build(sde); code != 1 || !strings.Contains(errs, "Source outside the configuration") {
		t.Fatalf("a build reading outside the checkout: exit %d, want 1 naming the source\n%s", code, errs)
	}
	if code, _, errs := e.build(sde, "--allow-read", shared); code != 0 {
		t.Fatalf("build with --allow-read: %d\n%s", code, errs)
	}
	e.purgeAll()
	out2 := filepath.Join(e.dir, "out2")
	code, out, errs := e.fgimg("regenerate", "-o", out2, "shared-rootfs")
	if code != 1 || !strings.Contains(errs, "Source outside the configuration") || !strings.Contains(errs, shared) {
		t.Fatalf("regenerate without --allow-read: exit %d, want 1 naming the source outside the checkout\n%s%s", code, out, errs)
	}
	if code, r, errs := e.regenerate("--allow-read", shared, "-o", out2, "shared-rootfs"); code != 0 || !r.Verified || !strings.HasPrefix(r.From, "git ") {
		t.Fatalf("regenerate with --allow-read: exit %d %+v\n%s", code, r, errs)
	}
}

// The build's -var-file and -var arguments are recorded and given
// again: regenerate needs none of them.
func TestRegenerateRecordedVariables(t *testing.T) {
	e := newEnv(t)
	e.write(buildVar)
	os.WriteFile(filepath.Join(e.dir, "vars.hcl"), []byte("n = \"from-file\"\n"), 0o644)
	for _, args := range [][]string{{"-var-file", "vars.hcl"}, {"-var", "n=7"}} {
		if code, _, errs := e.build(sde, args...); code != 0 {
			t.Fatalf("build %v: %d\n%s", args, code, errs)
		}
	}
	e.purgeAll()
	for _, c := range []struct{ id, n string }{
		{e.images(`id where name=child, created<1y order by created limit 1`)[0]["id"].(string), "from-file"},
		{e.images(`id where name=child order by created desc limit 1`)[0]["id"].(string), "7"},
	} {
		code, r, errs := e.regenerate(c.id)
		if code != 0 || !r.Verified {
			t.Errorf("regenerate of the build with n=%s: exit %d %+v\n%s", c.n, code, r, errs)
		}
	}
}
