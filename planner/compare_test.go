package planner

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/lang"
)

const compareConfig = `
variable "greeting" {
  default = "hello"
}
image "a" {
  bootstrap "debootstrap" { suite = "bookworm" }
  packages = ["nano", "curl"]
  file "/etc/motd" { content = "A\n" }
  file "/etc/issue" { content = "same\n" }
  run = ["echo ${var.greeting} > /etc/greeting", "true"]
}
image "b" {
  bootstrap "debootstrap" { suite = "bookworm" }
  packages = ["openmpi-bin", "nano"]
  file "/etc/motd" { content = "B\n" }
  file "/etc/issue" { content = "same\n" }
  run = ["echo hi > /etc/greeting", "true"]
}
`

func comparePlan(t *testing.T, vars ...lang.VarArg) *Plan {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(compareConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return mustPlan(t, load(t, []string{dir}, vars...), Options{})
}

// Two images differing in a package list, a file's content and a
// command: each changed stage names its first differing input.
func TestCompareChainsOfTwoImages(t *testing.T) {
	p := comparePlan(t)
	diffs := CompareChains(p.Image("a").Stages, p.Image("b").Stages)
	if len(diffs) != 4 {
		t.Fatalf("%d stages compared: %+v", len(diffs), diffs)
	}
	if !diffs[0].Same || diffs[0].Reason() != "the same stage" {
		t.Errorf("bootstrap: %+v", diffs[0])
	}
	want := [][]SpecChange{
		nil,
		{{Path: "packages.names", Added: []string{"openmpi-bin"}, Removed: []string{"curl"}}},
		{{Path: "files.entries[/etc/motd].digest", From: string(digest.FromString("A\n")), To: string(digest.FromString("B\n"))}},
		{{Path: "run.commands[0]", From: "echo hello > /etc/greeting", To: "echo hi > /etc/greeting"}},
	}
	for i, d := range diffs[1:] {
		if d.Same || !reflect.DeepEqual(d.Changes, want[i+1]) {
			t.Errorf("stage %d: %+v, want changes %+v", i+1, d.Changes, want[i+1])
		}
		if d.InputDiffers != (i+1 > 1) {
			t.Errorf("stage %d: input differs %v", i+1, d.InputDiffers)
		}
	}
	if r := diffs[1].Reason(); r != "packages.names: added openmpi-bin; removed curl" {
		t.Errorf("reason: %s", r)
	}
}

// One image planned with another variable value, as a later build of it
// would be: the run stage is why it is not cached.
func TestCompareChainsAcrossBuilds(t *testing.T) {
	before := comparePlan(t).Image("a").Stages
	after := comparePlan(t, lang.VarArg{Name: "greeting", Value: "bye"}).Image("a").Stages
	diffs := CompareChains(before, after)
	for i, d := range diffs[:3] {
		if !d.Same {
			t.Errorf("stage %d differs: %+v", i, d)
		}
	}
	if r := diffs[3].Reason(); r != "run.commands[0]: echo hello > /etc/greeting → echo bye > /etc/greeting" || diffs[3].InputDiffers {
		t.Errorf("run stage: %s %+v", r, diffs[3])
	}
}

func TestCompareChainsOfDifferentLengthsAndKinds(t *testing.T) {
	p := comparePlan(t)
	a, b := p.Image("a").Stages, p.Image("b").Stages
	diffs := CompareChains(a[:2], append([]*Stage{b[0], b[2]}, b[3]))
	if r := diffs[1].Reason(); r != "a packages stage against a files stage" {
		t.Errorf("kinds: %s", r)
	}
	if r := diffs[2].Reason(); r != "only in B" || diffs[2].KindB != "run" {
		t.Errorf("extra stage: %s %+v", r, diffs[2])
	}
	// Lists of objects gain and lose elements by key.
	ch, err := CompareSpecJSON("users", []byte(`{"users":[{"name":"alice","shell":"/bin/sh"}]}`), []byte(`{"users":[{"name":"alice","shell":"/bin/bash"},{"name":"bob"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []SpecChange{
		{Path: "users.users[alice].shell", From: "/bin/sh", To: "/bin/bash"},
		{Path: "users.users[bob]", To: `{"name":"bob"}`},
	}
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("users: %+v", ch)
	}
}
