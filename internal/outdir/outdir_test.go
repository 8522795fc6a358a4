package outdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fill(files map[string]string) func(string) error {
	return func(dir string) error {
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

const manifestOfT = `{"target": "t", "artifacts": [{"path": "blobs/sha256/abc"}, {"path": "disk.raw"}]}`

func TestReplace(t *testing.T) {
	out := t.TempDir()
	first := map[string]string{"manifest.json": manifestOfT, "blobs/sha256/abc": "1", "disk.raw": "old"}
	if err := Replace(out, "t", fill(first)); err != nil {
		t.Fatal(err)
	}
	second := map[string]string{"manifest.json": `{"target": "t", "artifacts": [{"path": "disk.raw"}]}`, "disk.raw": "new"}
	if err := Replace(out, "t", fill(second)); err != nil {
		t.Fatalf("replacing its own folder: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "t", "disk.raw")); string(b) != "new" {
		t.Errorf("disk.raw = %q", b)
	}
	if _, err := os.Stat(filepath.Join(out, "t", "blobs")); err == nil {
		t.Error("a stale artifact lingers")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("OUT holds %d entries, want 1 (no temporary folder left)", len(entries))
	}
}

func TestReplaceRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(dst string)
		want  string
	}{
		{"a user's folder", func(dst string) { write(t, filepath.Join(dst, "thesis.tex"), "x") }, "has no manifest.json"},
		{"a file", func(dst string) { write(t, dst, "x") }, "is not a directory"},
		{"a symlink", func(dst string) { os.Symlink("/etc", dst) }, "is not a directory"},
		{"another tool's manifest", func(dst string) { write(t, filepath.Join(dst, "manifest.json"), `{"name": "app"}`) }, "not fgimg's"},
		{"another target's folder", func(dst string) {
			write(t, filepath.Join(dst, "manifest.json"), strings.Replace(manifestOfT, `"t"`, `"u"`, 1))
		}, "not fgimg's"},
		{"an added file", func(dst string) {
			write(t, filepath.Join(dst, "manifest.json"), manifestOfT)
			write(t, filepath.Join(dst, "disk.raw"), "x")
			write(t, filepath.Join(dst, "notes", "mine.txt"), "x")
		}, filepath.Join("notes", "mine.txt")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			dst := filepath.Join(out, "t")
			tc.setup(dst)
			before := snapshot(t, out)
			err := Replace(out, "t", fill(map[string]string{"manifest.json": manifestOfT}))
			if err == nil || !strings.Contains(err.Error(), dst) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s with %q", err, dst, tc.want)
			}
			if after := snapshot(t, out); after != before {
				t.Errorf("OUT changed:\n%s\nbecame\n%s", before, after)
			}
		})
	}
}

// snapshot lists every path under dir with its content.
func snapshot(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + fi.Mode().String())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			b.WriteString(" " + string(c))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

func TestOutside(t *testing.T) {
	base := t.TempDir()
	cache := filepath.Join(base, "cache")
	os.MkdirAll(filepath.Join(cache, "blobs"), 0o700)
	os.Symlink(cache, filepath.Join(base, "link"))
	for _, out := range []string{cache, filepath.Join(cache, "blobs", ".."), filepath.Join(cache, "new", "dir"), filepath.Join(base, "link", "x")} {
		if err := Outside(out, cache); err == nil || !strings.Contains(err.Error(), "inside the cache") {
			t.Errorf("Outside(%s) = %v, want a refusal", out, err)
		}
	}
	for _, out := range []string{base, filepath.Join(base, "cache2"), filepath.Join(base, "out")} {
		if err := Outside(out, cache); err != nil {
			t.Errorf("Outside(%s) = %v", out, err)
		}
	}
}

// A folder that fgimg register added its registrations.json to is still
// fgimg's: the next build replaces it.
func TestReplaceAfterRegister(t *testing.T) {
	out := t.TempDir()
	own := map[string]string{"manifest.json": `{"target": "t", "artifacts": [{"path": "disk.qcow2"}]}`, "disk.qcow2": "old"}
	if err := Replace(out, "t", fill(own)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "t", RegistrationsName), []byte("{}"), 0o644)
	if err := Replace(out, "t", fill(own)); err != nil {
		t.Errorf("rebuilding a registered target: %v", err)
	}
}
