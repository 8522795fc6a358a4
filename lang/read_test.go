package lang

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func writeFileT(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loadDir loads the configuration in dir and returns its diagnostics.
func loadDir(t *testing.T, dir string, allow ...string) (*Config, hcl.Diagnostics) {
	t.Helper()
	return Load(LoadOptions{Paths: []string{dir}, User: "tester", Environ: []string{}, AllowRead: allow})
}

const readBase = `image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
`

// TestTemplatesReadOnlyTheirTree checks that sources and file functions
// cannot reach past the configuration's tree, by path, by .. or by a
// symlink, and that devices, pseudo-files and huge files are refused.
func TestTemplatesReadOnlyTheirTree(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "shadow")
	writeFileT(t, secret, "root:$6$secret:19000:0:99999:7:::\n")
	big := filepath.Join(t.TempDir(), "big")

	tests := []struct {
		name  string
		body  string
		allow []string
		setup func(t *testing.T, dir string)
		want  string // in the error; "" means it loads
	}{
		{name: "absolute source", body: `file "/etc/x" { source = "` + secret + `" }`, want: "Source outside the configuration"},
		{name: "host file", body: `file "/etc/x" { source = "/etc/hostname" }`, want: "Source outside the configuration"},
		{name: "dotdot source", body: `file "/etc/x" { source = "../sibling.txt" }`, want: "Source outside the configuration",
			setup: func(t *testing.T, dir string) { writeFileT(t, filepath.Join(dir, "..", "sibling.txt"), "x") }},
		{name: "symlink source", body: `file "/etc/x" { source = "shadow" }`, want: "leads to " + secret,
			setup: func(t *testing.T, dir string) { os.Symlink(secret, filepath.Join(dir, "shadow")) }},
		{name: "symlinked directory source", body: `file "/etc/x" { source = "etc" }`, want: "Source outside the configuration",
			setup: func(t *testing.T, dir string) { os.Symlink(outside, filepath.Join(dir, "etc")) }},
		{name: "symlink inside the tree", body: `file "/etc/x" { source = "link" }`,
			setup: func(t *testing.T, dir string) {
				writeFileT(t, filepath.Join(dir, "files", "motd"), "hi")
				os.Symlink("files/motd", filepath.Join(dir, "link"))
			}},
		{name: "file of the environment", body: `file "/etc/x" { content = file("/proc/self/environ") }`, want: "outside what a template may read"},
		{name: "file through a symlink", body: `file "/etc/x" { content = file("shadow") }`, want: "outside what a template may read",
			setup: func(t *testing.T, dir string) { os.Symlink(secret, filepath.Join(dir, "shadow")) }},
		{name: "templatefile outside", body: `file "/etc/x" { content = templatefile("` + secret + `", {}) }`, want: "outside what a template may read"},
		{name: "fileexists outside", body: `file "/etc/x" { content = tostring(fileexists("/etc/passwd")) }`, want: "outside what a template may read"},
		{name: "bootstrap tarball outside", body: `}
image "other" {
  bootstrap "tar" { source = "/etc/hostname" }`, want: "Source outside the configuration"},
		{name: "local image outside", body: `}
image "other" {
  from = "oci:` + outside + `"`, want: "Image source outside the configuration"},
		{name: "allowed by the operator", body: `file "/etc/x" { content = file("` + secret + `") }`, allow: []string{outside}},
		{name: "device", body: `file "/etc/x" { content = file("/dev/zero") }`, allow: []string{"/dev"}, want: "not a regular file (a character device)"},
		{name: "device source", body: `file "/etc/x" { source = "/dev/null" }`, allow: []string{"/dev"}, want: "Source is not a regular file"},
		{name: "proc file", body: `file "/etc/x" { content = file("/proc/self/environ") }`, allow: []string{"/proc"}, want: "kernel pseudo-file"},
		{name: "huge file", body: `file "/etc/x" { content = filebase64("` + big + `") }`, allow: []string{filepath.Dir(big)}, want: "more than the 16 MiB",
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(big, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(big, MaxReadSize+1); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "config")
			writeFileT(t, filepath.Join(dir, "main.fg.hcl"), readBase+tt.body+"\n}\n")
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			_, diags := loadDir(t, dir, tt.allow...)
			if tt.want == "" {
				if diags.HasErrors() {
					t.Fatal(diags.Error())
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatal("loaded without error")
			}
			if !strings.Contains(diags.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", diags.Error(), tt.want)
			}
			for _, d := range diags {
				if d.Severity == hcl.DiagError && d.Subject == nil {
					t.Errorf("error without a source range: %s", d.Summary)
				}
			}
		})
	}
}

// TestReadScopeIsTheGitWorkTree lets a template read anything in the git
// checkout that holds it, and no further.
func TestReadScopeIsTheGitWorkTree(t *testing.T) {
	repo := t.TempDir()
	if err := os.Mkdir(filepath.Join(repo, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFileT(t, filepath.Join(repo, "shared", "motd"), "shared\n")
	dir := filepath.Join(repo, "images", "web")
	writeFileT(t, filepath.Join(dir, "main.fg.hcl"), readBase+`file "/etc/motd" { source = "../../shared/motd" }
  file "/etc/issue" { content = file("../../shared/motd") }
}
`)
	cfg, diags := loadDir(t, dir)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	real, _ := filepath.EvalSymlinks(filepath.Join(repo, "shared", "motd"))
	if got := cfg.Images[0].Files[0].Source; got != real {
		t.Errorf("source resolved to %s, want %s", got, real)
	}
	writeFileT(t, filepath.Join(dir, "main.fg.hcl"), readBase+`file "/etc/motd" { source = "../../../outside" }
}
`)
	writeFileT(t, filepath.Join(repo, "..", "outside"), "x")
	if _, diags := loadDir(t, dir); !strings.Contains(diags.Error(), "Source outside the configuration") {
		t.Errorf("a file beside the checkout was accepted: %v", diags)
	}
}
