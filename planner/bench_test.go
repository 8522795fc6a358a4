package planner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/targets"
)

// writeGenerated writes a configuration of n images in a pedigree depth
// levels deep: n/depth roots, each the top of a chain of depth images.
// Every image installs packages, places a file and runs a command, and
// every chain ends in a qcow2 target.
func writeGenerated(b testing.TB, n, depth int) string {
	dir := b.TempDir()
	var sb strings.Builder
	chains := n / depth
	for c := 0; c < chains; c++ {
		for d := 0; d < depth; d++ {
			name := fmt.Sprintf("img-%d-%d", c, d)
			fmt.Fprintf(&sb, "image %q {\n", name)
			if d == 0 {
				fmt.Fprintf(&sb, "  bootstrap \"debootstrap\" {\n    suite = \"bookworm\"\n    include = [\"pkg-%d\"]\n  }\n", c)
			} else {
				fmt.Fprintf(&sb, "  parent = image.img-%d-%d\n", c, d-1)
			}
			fmt.Fprintf(&sb, "  description = \"image %d of chain %d\"\n  tags = [\"chain-%d\", \"level-%d\"]\n", d, c, c, d)
			fmt.Fprintf(&sb, "  packages = [\"pkg-%d-%d\", \"common\"]\n", c, d)
			fmt.Fprintf(&sb, "  file \"/etc/level\" {\n    content = \"%d\\n\"\n    mode = \"0644\"\n  }\n", d)
			fmt.Fprintf(&sb, "  run = [\"echo %s > /etc/image-name\"]\n}\n\n", name)
		}
		fmt.Fprintf(&sb, "target \"qcow2\" \"disk-%d\" {\n  image = image.img-%d-%d\n  size = \"4GiB\"\n}\n\n", c, c, depth-1)
	}
	if err := os.WriteFile(filepath.Join(dir, "generated.fg.hcl"), []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkPlan measures plan end to end (read, parse, evaluate, compile,
// render) for configurations of growing size, 10 levels deep; the time
// per image should stay flat as the configuration grows.
func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{250, 500, 1000, 2000} {
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			dir := writeGenerated(b, n, 10)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg, diags := lang.Load(lang.LoadOptions{Paths: []string{dir}, Environ: []string{}, User: "bench", TargetKinds: targets.Schemas()})
				if diags.HasErrors() {
					b.Fatal(diags.Error())
				}
				p, diags := New(cfg, Options{})
				if diags.HasErrors() {
					b.Fatal(diags.Error())
				}
				_ = p.String()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/image")
		})
	}
}

func TestGeneratedConfigPlans(t *testing.T) {
	dir := writeGenerated(t, 100, 10)
	p := mustPlan(t, load(t, []string{dir}), Options{})
	if len(p.Images) != 100 || len(p.Targets) != 10 {
		t.Fatalf("%d images, %d targets", len(p.Images), len(p.Targets))
	}
	// Each chain: 1 origin + 3 phases per image + the disk's adaptation
	// stage + 1 target stage.
	if want := 10 * (1 + 10*3 + 1 + 1); len(p.Stages) != want {
		t.Errorf("%d stages, want %d", len(p.Stages), want)
	}
}
