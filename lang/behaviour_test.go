package lang

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// writeConfig writes files (name → content) into a new directory.
func writeConfig(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mustLoad(t *testing.T, opts LoadOptions) *Config {
	t.Helper()
	if opts.Environ == nil {
		opts.Environ = []string{}
	}
	if opts.User == "" {
		opts.User = "tester"
	}
	cfg, diags := Load(opts)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return cfg
}

func TestVariablePrecedence(t *testing.T) {
	dir := writeConfig(t, map[string]string{
		"main.fg.hcl": `
variable "v" { default = "default" }
image "i" {
  bootstrap "debootstrap" { suite = "bookworm" }
  description = var.v
}`,
		"a.auto.fgvars.hcl":    `v = "auto-a"`,
		"b.auto.fgvars.hcl":    `v = "auto-b"`,
		"../file1.fgvars.hcl":  `v = "file1"`,
		"../file2.fgvars.json": `{"v": "file2"}`,
	})
	file1 := filepath.Join(dir, "../file1.fgvars.hcl")
	file2 := filepath.Join(dir, "../file2.fgvars.json")
	env := []string{"FGIMG_VAR_v=env"}
	desc := func(opts LoadOptions) string {
		opts.Paths = []string{dir}
		return mustLoad(t, opts).Image("i").Meta.Description
	}
	// Auto files beat the environment, which beats the default; the
	// later auto file (alphabetically) wins.
	if got := desc(LoadOptions{Environ: env}); got != "auto-b" {
		t.Errorf("auto files: got %q", got)
	}
	os.Remove(filepath.Join(dir, "a.auto.fgvars.hcl"))
	os.Remove(filepath.Join(dir, "b.auto.fgvars.hcl"))
	if got := desc(LoadOptions{}); got != "default" {
		t.Errorf("default: got %q", got)
	}
	if got := desc(LoadOptions{Environ: env}); got != "env" {
		t.Errorf("environment: got %q", got)
	}
	// -var-file and -var count in command-line order.
	got := desc(LoadOptions{Environ: env, Vars: []VarArg{{Name: "v", Value: "cli"}, {File: file1}}})
	if got != "file1" {
		t.Errorf("-var then -var-file: got %q", got)
	}
	got = desc(LoadOptions{Environ: env, Vars: []VarArg{{File: file1}, {File: file2}, {Name: "v", Value: "cli"}}})
	if got != "cli" {
		t.Errorf("-var-file then -var: got %q", got)
	}
	got = desc(LoadOptions{Vars: []VarArg{{File: file1}, {File: file2}}})
	if got != "file2" {
		t.Errorf("JSON var file: got %q", got)
	}
}

func TestVariableErrorsNameTheVariable(t *testing.T) {
	dir := writeConfig(t, map[string]string{"main.fg.hcl": `
variable "size" { type = number }
variable "tags" {
  type = list(string)
  default = []
}
image "i" {
  bootstrap "debootstrap" { suite = "bookworm" }
}`})
	cases := []struct {
		vars []VarArg
		want string
	}{
		{[]VarArg{{Name: "size", Value: "1"}, {Name: "sise", Value: "2"}}, `"sise"`},
		{[]VarArg{{Name: "size", Value: "big"}}, `variable "size"`},
		{[]VarArg{{Name: "size", Value: "1"}, {Name: "tags", Value: `["a", `}}, `"tags"`},
		{nil, `The variable "size" has no default`},
	}
	for _, c := range cases {
		_, diags := Load(LoadOptions{Paths: []string{dir}, Vars: c.vars, Environ: []string{}})
		if !diags.HasErrors() || !strings.Contains(allText(diags), c.want) {
			t.Errorf("vars %v: want an error mentioning %s, got %v", c.vars, c.want, diags)
		}
	}
	// Complex values from -var are HCL expressions.
	cfg := mustLoad(t, LoadOptions{Paths: []string{dir}, Vars: []VarArg{{Name: "size", Value: "3"}, {Name: "tags", Value: `["a", "b"]`}}})
	for _, v := range cfg.Variables {
		if v.Name == "tags" && v.Value.LengthInt() != 2 {
			t.Errorf("tags = %#v", v.Value)
		}
	}
}

func TestMetadataInheritance(t *testing.T) {
	dir := writeConfig(t, map[string]string{"main.fg.hcl": `
image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  description = "base image"
  os = "debian-12"
  tags = ["debian", "base"]
  owner = "ops"
  permission = "public"
  labels = { suite = "bookworm", tier = "base" }
}
image "child" {
  parent = image.base
  tags = ["hpc", "debian"]
  labels = { tier = "hpc", mpi = "openmpi" }
}
image "grandchild" {
  parent = image.child
  description = "grandchild"
  permission = "group:hadoop"
}`})
	cfg := mustLoad(t, LoadOptions{Paths: []string{dir}})
	child, gc := cfg.Image("child").Meta, cfg.Image("grandchild").Meta
	if strings.Join(child.Tags, ",") != "debian,base,hpc" {
		t.Errorf("tags: parent's first, union: %v", child.Tags)
	}
	if child.Labels["tier"] != "hpc" || child.Labels["suite"] != "bookworm" || child.Labels["mpi"] != "openmpi" {
		t.Errorf("labels merge, child wins: %v", child.Labels)
	}
	if child.Description != "base image" || child.OS != "debian-12" || child.Owner != "ops" || child.Arch != "amd64" {
		t.Errorf("scalars inherited: %+v", child)
	}
	if gc.Description != "grandchild" || gc.Permission != "group:hadoop" || gc.Labels["mpi"] != "openmpi" {
		t.Errorf("grandchild: %+v", gc)
	}
	ped := cfg.Image("grandchild").Pedigree()
	if len(ped) != 3 || ped[0].Name != "base" || ped[2].Name != "grandchild" {
		t.Errorf("pedigree: %v", ped)
	}
	if cfg.Image("base").Meta.Owner != "ops" || mustLoad(t, LoadOptions{Paths: []string{dir}, User: "carol"}).Image("base").Meta.Owner != "ops" {
		t.Error("explicit owner must win over the running user")
	}
}

func TestDefaultsAndNormalisation(t *testing.T) {
	dir := writeConfig(t, map[string]string{"main.fg.hcl": `
image "i" {
  bootstrap "debootstrap" { suite = "bookworm" }
  service "ssh" {}
  service "apt-daily.timer" { enabled = false }
  file "/etc/x" { content = "x" }
}`})
	cfg := mustLoad(t, LoadOptions{Paths: []string{dir}, User: "dora"})
	im := cfg.Image("i")
	b := im.Bootstrap
	if b.Mirror != DefaultMirror || b.Variant != "minbase" || strings.Join(b.Components, ",") != "main" {
		t.Errorf("bootstrap defaults: %+v", b)
	}
	if im.Meta.Owner != "dora" || im.Meta.Permission != "private" || im.Meta.Arch != "amd64" {
		t.Errorf("metadata defaults: %+v", im.Meta)
	}
	if im.Services[0].Unit != "ssh.service" || !im.Services[0].Enabled || im.Services[1].Unit != "apt-daily.timer" || im.Services[1].Enabled {
		t.Errorf("services: %+v %+v", im.Services[0], im.Services[1])
	}
}

func TestAllErrorsInOneRun(t *testing.T) {
	dir := writeConfig(t, map[string]string{
		"a.fg.hcl": `image "a" { packages = ["x"] }`,
		"b.fg.hcl": `target "qcow2" "q" {
  image = image.a
  size = "lots"
}`,
		"c.fg.hcl": `image "c" {
  parent = image.zzz
}`,
	})
	_, diags := Load(LoadOptions{Paths: []string{dir}, Environ: []string{}})
	files := map[string]bool{}
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Subject != nil {
			files[filepath.Base(d.Subject.Filename)] = true
		}
	}
	if len(files) != 3 {
		t.Errorf("want errors from all three files, got %v: %v", files, diags)
	}
}

func TestFunctionsResolveAgainstTheTemplateDirectory(t *testing.T) {
	dir := writeConfig(t, map[string]string{
		"sub/main.fg.hcl": `
image "i" {
  bootstrap "debootstrap" { suite = "bookworm" }
  file "/etc/motd" { content = templatefile("motd.tpl", { name = "hpc" }) }
  file "/etc/issue" { source = "issue" }
}`,
		"sub/motd.tpl": `Welcome to ${name}`,
		"sub/issue":    "Debian\n",
	})
	t.Chdir(t.TempDir())
	cfg := mustLoad(t, LoadOptions{Paths: []string{filepath.Join(dir, "sub")}})
	files := cfg.Image("i").Files
	if *files[0].Content != "Welcome to hpc" {
		t.Errorf("templatefile: %q", *files[0].Content)
	}
	if files[1].Source != filepath.Join(dir, "sub", "issue") {
		t.Errorf("source: %q", files[1].Source)
	}
}

func TestFormat(t *testing.T) {
	out, diags := Format([]byte("image \"a\" {\nfrom=\"docker://x\"\n  tags = [\"a\"]\n}\n"), "x.fg.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := "image \"a\" {\n  from = \"docker://x\"\n  tags = [\"a\"]\n}\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if _, diags := Format([]byte("image \"a\" {"), "x.fg.hcl"); !diags.HasErrors() {
		t.Error("a syntax error must not be formatted")
	}
}

func allText(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(d.Summary + ": " + d.Detail + "\n")
	}
	return b.String()
}
