package planner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSourceSwappedForSymlinkAfterLoad: lang checks a source once; if a
// directory on its path becomes a symlink out of the tree before the
// plan hashes it, planning fails instead of hashing (and later copying)
// the file the symlink leads to.
func TestSourceSwappedForSymlinkAfterLoad(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "motd"), []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"file", "tree"} {
		if err := os.MkdirAll(filepath.Join(dir, "files", name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "file", "motd"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "tree", "motd"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := `image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  file "/etc/motd" { source = "files/file/motd" }
  file "/srv" { source = "files/tree" }
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := load(t, []string{dir})
	mustPlan(t, cfg, Options{}) // the tree as checked plans fine

	for _, name := range []string{"file", "tree"} {
		p := filepath.Join(dir, "files", name)
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, p); err != nil {
			t.Fatal(err)
		}
	}
	_, diags := New(cfg, Options{})
	if !diags.HasErrors() {
		t.Fatal("planned a source redirected out of the tree after it was checked")
	}
	if !strings.Contains(diags.Error(), "symlink") {
		t.Errorf("the error does not say a symlink is in the way: %s", diags.Error())
	}
}
