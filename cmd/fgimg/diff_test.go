package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/engine"
	"github.com/opencontainers/go-digest"
)

// diffConfig: two busybox images differing in a file's content (and a
// dpkg status file, so that their software stacks differ) and in a
// command that uses a variable; two more, never built, differing in
// their package lists.
const diffConfig = `
variable "greeting" {
  default = "hello"
}
image "a" {
  bootstrap "tar" { source = "rootfs.tar" }
  file "/etc/motd" { content = "A\n" }
  file "/var/lib/dpkg/status" {
    content = "Package: hello\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n\nPackage: nano\nStatus: install ok installed\nVersion: 7.2-1\nArchitecture: amd64\n"
  }
  run = ["echo ${var.greeting} > /etc/greeting"]
}
image "b" {
  bootstrap "tar" { source = "rootfs.tar" }
  file "/etc/motd" { content = "B\n" }
  file "/var/lib/dpkg/status" {
    content = "Package: hello\nStatus: install ok installed\nVersion: 2.0-1\nArchitecture: amd64\n\nPackage: openmpi-bin\nStatus: install ok installed\nVersion: 4.1.4-3\nArchitecture: amd64\nSource: openmpi\n"
  }
  run = ["echo bye > /etc/greeting"]
}
image "p1" {
  bootstrap "tar" { source = "rootfs.tar" }
  packages = ["nano", "curl"]
}
image "p2" {
  bootstrap "tar" { source = "rootfs.tar" }
  packages = ["openmpi-bin", "nano"]
}
target "tar" "a" { image = image.a }
target "tar" "b" { image = image.b }
`

func TestDiff(t *testing.T) {
	e := newEnv(t)
	e.write(diffConfig)
	if code, _, stderr := e.build(nil, "-only", "a,b"); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}

	code, out, stderr := e.run("diff", "a", "b")
	t.Logf("fgimg diff a b:\n%s", out)
	if code != 0 {
		t.Fatalf("diff: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"\n  0  bootstrap  same ",
		"files.entries[/etc/motd].digest: sha256:" + digest.FromString("A\n").Encoded()[:12] + " → sha256:" + digest.FromString("B\n").Encoded()[:12],
		"files.entries[/var/lib/dpkg/status].digest: ",
		"run.commands[0]: echo hello > /etc/greeting → echo bye > /etc/greeting",
		"and its input (stage 1) differs",
		"  + openmpi-bin 4.1.4-3 (amd64)\n",
		"  - nano 7.2-1 (amd64)\n",
		"  ~ hello (amd64) 1.0-1 → 2.0-1\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("diff a b lacks %q:\n%s", want, out)
		}
	}

	// With the variable set to what b says, the run stages' specs are
	// the same: only their input differs.
	var r diffResult
	code, out, stderr = e.run("diff", "--json", "-var", "greeting=bye", "a", "b")
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("diff --json: exit %d\n%s%s", code, out, stderr)
	}
	if s := r.Stages[2]; s.Same || len(s.Changes) != 0 || !s.InputDiffers || s.Why != "its input (stage 2) differs" {
		t.Errorf("run stage with the same command: %+v", s)
	}

	// Package lists of images never built: the stage comparison, and no
	// software stacks.
	code, out, stderr = e.run("diff", "--json", "p1", "p2")
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("diff --json p1 p2: exit %d\n%s%s", code, out, stderr)
	}
	if s := r.Stages[1]; s.KindA != "packages" || len(s.Changes) != 1 || s.Changes[0].Path != "packages.names" ||
		strings.Join(s.Changes[0].Added, ",") != "openmpi-bin" || strings.Join(s.Changes[0].Removed, ",") != "curl" {
		t.Errorf("packages stage: %+v", s)
	}
	if r.Stack != nil || r.A.Built || len(r.StackNotes) != 2 || !strings.Contains(r.StackNotes[0], "p1 is not built") {
		t.Errorf("unbuilt images' stacks: %+v %v", r.Stack, r.StackNotes)
	}

	// A built image whose stack was never recorded is read from a mount.
	a := filepath.Join(e.cache, "records", "sha256", engine.StackKey(imageID(t, e, "a")).Encoded()+".json")
	if err := os.Remove(a); err != nil {
		t.Fatalf("the build recorded no stack for a: %v", err)
	}
	code, out, stderr = e.run("diff", "--json", "a", "b")
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("diff --json a b: exit %d\n%s%s", code, out, stderr)
	}
	if r.Stack == nil || len(r.Stack.Added) != 1 || len(r.Stack.Removed) != 1 || len(r.Stack.Changed) != 1 {
		t.Errorf("stack diff after reading a from a mount: %+v", r.Stack)
	}
	if _, err := os.Stat(a); err != nil {
		t.Errorf("the stack read from the mount was not recorded: %v", err)
	}

	if code, _, stderr := e.run("diff", "a", "nope"); code != exitFailed || !strings.Contains(stderr, `there is no image "nope"`) {
		t.Errorf("unknown image: exit %d, %s", code, stderr)
	}
	if code, _, stderr := e.run("diff", "a"); code != exitUsage || !strings.Contains(stderr, "diff needs two images") {
		t.Errorf("one image: exit %d, %s", code, stderr)
	}
}

// imageID is an image's ID as fgimg inspect --json says.
func imageID(t *testing.T, e *env, image string) digest.Digest {
	t.Helper()
	code, out, stderr := e.run("inspect", "--json", image)
	var v struct {
		ID digest.Digest `json:"id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("inspect: exit %d\n%s", code, stderr)
	}
	return v.ID
}

// Two recorded builds of one image, by ID, name the command and the
// variable that differ; -last explains why the image as the templates
// now define it is not cached: against its last build.
func TestDiffRecordedBuilds(t *testing.T) {
	e := newEnv(t)
	e.write(buildVar)
	e.mustBuildT("-var", "n=1")
	e.mustBuildT("-var", "n=2")
	ids := e.images("id where name=child, type=image order by created")
	if len(ids) != 2 {
		t.Fatalf("%d child builds recorded, want 2", len(ids))
	}
	first, second := ids[0]["id"].(string), ids[1]["id"].(string)
	code, out, stderr := e.run("diff", first[7:19], second)
	if code != 0 {
		t.Fatalf("diff of two builds: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"recorded build of ",
		"  var.n: \"1\" → \"2\"\n",
		"\n  0  bootstrap  same ",
		"  1  run        differs  ",
		"run.commands[0]: echo 1 > /etc/n → echo 2 > /etc/n",
		"  ~ ", // no package differs, but the stacks were compared:
	} {
		if want == "  ~ " {
			if !strings.Contains(out, "software stack (B against A)\n  the same") {
				t.Errorf("the recorded stacks were not compared:\n%s", out)
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("diff of two recorded builds lacks %q:\n%s", want, out)
		}
	}

	var r diffResult
	code, out, stderr = e.run("diff", "--json", "-last", "child", "-var", "n=3")
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("diff -last: exit %d\n%s%s", code, out, stderr)
	}
	if r.A.ID != digest.Digest(second) || r.A.Recorded == nil || r.B.Recorded != nil {
		t.Errorf("diff -last compared %s (recorded %v) with %s, want the last build %s with the templates", r.A.ID, r.A.Recorded, r.B.ID, second)
	}
	if len(r.Stages) != 2 || !r.Stages[0].Same || r.Stages[1].Why != "run.commands[0]: echo 2 > /etc/n → echo 3 > /etc/n" {
		t.Errorf("diff -last stages: %+v", r.Stages)
	}
	if len(r.Variables) != 1 || r.Variables[0].Path != "var.n" || r.Variables[0].To != `"3"` || len(r.Templates) != 0 {
		t.Errorf("diff -last inputs: variables %+v, templates %+v", r.Variables, r.Templates)
	}
	if code, _, stderr := e.run("diff", "-last", "nope"); code != exitFailed || !strings.Contains(stderr, `no build of image "nope"`) {
		t.Errorf("diff -last of an image never built: exit %d, %s", code, stderr)
	}
}
