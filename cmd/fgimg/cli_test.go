package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fgimg runs the command in-process and returns its exit code and output.
func fgimg(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	code = run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const small = `image "base" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
  packages = ["openssh-server"]
  description = "base"
}

image "hpc" {
  parent   = image.base
  packages = ["openmpi-bin"]
  tags     = ["hpc"]
}

target "qcow2" "disk" {
  image = image.hpc
}
`

func TestExamplesValidateAndPlan(t *testing.T) {
	dirs, _ := filepath.Glob("../../examples/*")
	n := 0
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if code, _, errw := fgimg(t, "validate", dir); code != 0 {
				t.Fatalf("validate: exit %d\n%s", code, errw)
			}
			code, out, errw := fgimg(t, "plan", dir)
			if code != 0 || !strings.Contains(out, "Plan: ") {
				t.Fatalf("plan: exit %d\n%s%s", code, out, errw)
			}
		})
	}
	if n == 0 {
		t.Fatal("no examples")
	}
}

func TestPlanJSONIsTheStableInterface(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.fg.hcl"), small)
	code, out, errw := fgimg(t, "plan", "--json", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errw)
	}
	var p struct {
		Images []struct {
			Name   string   `json:"name"`
			Parent *string  `json:"parent"`
			ID     string   `json:"id"`
			Stages []string `json:"stages"`
		} `json:"images"`
		Targets []struct {
			Name, Kind, Image string
			Stages            []string
		} `json:"targets"`
		Stages []struct {
			Digest, Kind, Status string
			Inputs               []string
		} `json:"stages"`
		Summary struct{ Build, Cached int } `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(p.Images) != 2 || p.Images[1].Name != "hpc" || *p.Images[1].Parent != "base" || p.Images[0].Parent != nil {
		t.Fatalf("images: %+v", p.Images)
	}
	hpc := p.Images[1]
	if hpc.ID != hpc.Stages[len(hpc.Stages)-1] || len(hpc.Stages) != 3 || hpc.Stages[0] != p.Images[0].Stages[0] {
		t.Errorf("hpc chain: %+v", hpc)
	}
	if len(p.Targets) != 1 || p.Targets[0].Kind != "qcow2" || p.Targets[0].Image != "hpc" {
		t.Errorf("targets: %+v", p.Targets)
	}
	// The three image stages, the disk's adaptation and its write.
	if len(p.Stages) != 5 || p.Summary.Build != 5 || p.Summary.Cached != 0 {
		t.Errorf("stages %d, summary %+v", len(p.Stages), p.Summary)
	}
	if p.Stages[0].Kind != "bootstrap" || len(p.Stages[0].Inputs) != 0 || p.Stages[1].Inputs[0] != p.Stages[0].Digest ||
		p.Stages[3].Kind != "disk-adapt" || p.Stages[3].Inputs[0] != hpc.ID || p.Stages[4].Kind != "qcow2" || p.Stages[4].Inputs[0] != p.Stages[3].Digest {
		t.Errorf("stages: %+v", p.Stages)
	}
}

func TestErrorsPointAtTheSource(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.fg.hcl"), strings.Replace(small, "packages = [\"openmpi-bin\"]", "pacakges = [\"openmpi-bin\"]", 1))
	code, out, errw := fgimg(t, "plan", dir)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"Error: Unsupported argument", "a.fg.hcl line 11", `pacakges = ["openmpi-bin"]`, `Did you mean "packages"?`} {
		if !strings.Contains(errw, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errw)
		}
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.fg.hcl"), small)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"plan", dir}, 0, "Plan: 2 images, 1 target, 5 stages: 5 to build, 0 cached."},
		{[]string{"validate", dir}, 0, "valid"},
		{[]string{"plan", "-only", "nosuch", dir}, 1, `Nothing matches -only "nosuch"`},
		{[]string{"plan", "-only", "hpc", "-except", "disk", dir}, 0, "Plan: 2 images, 0 targets"},
		{[]string{"plan", "-var", "undeclared=1", dir}, 1, `"undeclared"`},
		{[]string{"plan", "-var", "novalue", dir}, 2, "want name=value"},
		{[]string{"plan", "--bogus", dir}, 2, "flag provided but not defined"},
		{[]string{"plan", filepath.Join(dir, "missing")}, 1, "no such file"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{}, 2, "Usage: fgimg"},
		{[]string{"inspect", "nosuch", dir}, 1, "there is no image"},
		{[]string{"inspect", dir}, 2, "inspect needs an image name"},
		{[]string{"inspect"}, 2, "inspect needs an image name"},
		{[]string{"version"}, 0, "fgimg "},
		{[]string{"regenerate"}, 2, "takes one ID or NAME"},
		{[]string{"plan", "-h"}, 0, "Usage: fgimg plan"},
	}
	for _, c := range cases {
		code, out, errw := fgimg(t, c.args...)
		if code != c.code || !strings.Contains(out+errw, c.want) {
			t.Errorf("fgimg %s: exit %d (want %d), output lacks %q:\n%s%s", strings.Join(c.args, " "), code, c.code, c.want, out, errw)
		}
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.fg.hcl"), small)
	code, out, errw := fgimg(t, "inspect", "--json", "hpc", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errw)
	}
	var im map[string]any
	if err := json.Unmarshal([]byte(out), &im); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "parent", "pedigree", "id", "stages", "targets", "description", "os", "arch", "tags", "owner", "permission", "labels"} {
		if _, ok := im[k]; !ok {
			t.Errorf("inspect --json lacks %q", k)
		}
	}
	if im["description"] != "base" || im["parent"] != "base" || len(im["pedigree"].([]any)) != 2 {
		t.Errorf("inherited metadata and pedigree: %v", im)
	}
	if tg, _ := im["targets"].([]any); len(tg) != 1 || tg[0].(map[string]any)["summary"] != "hybrid boot" {
		t.Errorf("the image's targets, as their kind describes them: %v", im["targets"])
	}
	code, out, _ = fgimg(t, "inspect", "hpc", dir)
	if code != 0 || !strings.Contains(out, "base → hpc") || !strings.Contains(out, "qcow2      disk  hybrid boot") {
		t.Errorf("human inspect:\n%s", out)
	}
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	ugly := "image \"a\" {\nfrom=\"docker://debian:12\"\n  tags = [\"x\"]\n}\n"
	pretty := "image \"a\" {\n  from = \"docker://debian:12\"\n  tags = [\"x\"]\n}\n"
	path := filepath.Join(dir, "a.fg.hcl")
	writeFile(t, path, ugly)

	code, out, _ := fgimg(t, "fmt", "-check", "-diff", dir)
	if code != 3 || !strings.Contains(out, "+  from = ") {
		t.Errorf("fmt -check -diff: exit %d\n%s", code, out)
	}
	if b, _ := os.ReadFile(path); string(b) != ugly {
		t.Error("fmt -check must not write")
	}
	if code, _, _ := fgimg(t, "fmt", dir); code != 0 {
		t.Errorf("fmt: exit %d", code)
	}
	if b, _ := os.ReadFile(path); string(b) != pretty {
		t.Errorf("fmt wrote:\n%s", b)
	}
	if code, out, _ := fgimg(t, "fmt", "-check", dir); code != 0 || out != "" {
		t.Errorf("formatted file: exit %d, %q", code, out)
	}
	writeFile(t, path, "image \"a\" {\n")
	if code, _, errw := fgimg(t, "fmt", dir); code != 1 || !strings.Contains(errw, "a.fg.hcl") {
		t.Errorf("syntax error: exit %d\n%s", code, errw)
	}
	if b, _ := os.ReadFile(path); string(b) != "image \"a\" {\n" {
		t.Error("a file with a syntax error must be left alone")
	}
}

func TestExamplesAreFormatted(t *testing.T) {
	if code, out, errw := fgimg(t, "fmt", "-check", "-recursive", "../../examples"); code != 0 {
		t.Errorf("examples need fgimg fmt:\n%s%s", out, errw)
	}
}

// Help asked for is the output, on stdout with exit 0, however it is
// asked for; a mistake in the flags goes to stderr.
func TestHelpGoesToStdout(t *testing.T) {
	for _, cmd := range [][]string{{"validate"}, {"plan"}, {"build"}, {"boot"}, {"register"}, {"vet"}, {"approve"}, {"inspect"}, {"fmt"}, {"cache", "ls"}, {"regenerate"}} {
		for _, h := range []string{"-h", "-help", "--help"} {
			args := append(append([]string{}, cmd...), h)
			code, out, errw := fgimg(t, args...)
			if code != 0 || !strings.HasPrefix(out, "Usage: fgimg "+cmd[0]) || errw != "" {
				t.Errorf("fgimg %s: exit %d, stdout %q, stderr %q; want the usage on stdout and exit 0", strings.Join(args, " "), code, firstLine(out), firstLine(errw))
			}
		}
		args := append(append([]string{}, cmd...), "--bogus")
		if code, out, errw := fgimg(t, args...); code != 2 || out != "" || !strings.Contains(errw, "flag provided but not defined: -bogus") {
			t.Errorf("fgimg %s: exit %d, stdout %q, stderr %q; want the mistake on stderr and exit 2", strings.Join(args, " "), code, firstLine(out), firstLine(errw))
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// helpFlags lists the flags that `fgimg CMD -h` shows, with their
// placeholders ("-var name=value").
func helpFlags(t *testing.T, cmd string) map[string]string {
	t.Helper()
	_, out, errw := fgimg(t, cmd, "-h")
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)(?: (\S+))?$`).FindAllStringSubmatch(out+errw, -1) {
		flags[m[1]] = m[2]
	}
	if len(flags) == 0 {
		t.Fatalf("fgimg %s -h lists no flags:\n%s%s", cmd, out, errw)
	}
	return flags
}

func TestVarPlaceholderIsNameEqualsValue(t *testing.T) {
	for _, cmd := range []string{"validate", "plan", "build", "boot", "inspect"} {
		if got := helpFlags(t, cmd)["var"]; got != "name=value" {
			t.Errorf("fgimg %s -h shows -var %s, want -var name=value", cmd, got)
		}
	}
}

// boot -build builds with every flag build takes, not a subset of them.
func TestBootTakesEveryBuildFlag(t *testing.T) {
	build, boot := helpFlags(t, "build"), helpFlags(t, "boot")
	for name, placeholder := range build {
		if got, ok := boot[name]; !ok || got != placeholder {
			t.Errorf("build takes -%s %s; boot -build does not (boot has %q, %v)", name, placeholder, got, ok)
		}
	}
	// And passes them on: build's own check of -j answers.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.fg.hcl"), small)
	code, _, errw := fgimg(t, "boot", "-build", "-j", "0", "-json", "-except", "hpc", "disk", dir)
	if code != 2 || !strings.Contains(errw, "-j must be at least 1") {
		t.Errorf("boot -build -j 0: exit %d, want 2 and build's complaint about -j:\n%s", code, errw)
	}
}
