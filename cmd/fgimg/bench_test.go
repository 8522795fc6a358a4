package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// benchEnv is a build environment for benchmarks (newEnv needs a *testing.T).
func benchEnv(b *testing.B, config string, rootfs func(dir string)) *env {
	if os.Geteuid() != 0 {
		b.Skip("building needs root")
	}
	e := &env{dir: b.TempDir(), cache: b.TempDir()}
	e.out = filepath.Join(e.dir, "out")
	root := b.TempDir()
	testkit.BusyboxRootfs(b, root)
	if rootfs != nil {
		rootfs(root)
	}
	testkit.RootfsTar(b, filepath.Join(e.dir, "rootfs.tar"), root)
	os.WriteFile(filepath.Join(e.dir, "main.fg.hcl"), []byte(config), 0o644)
	return e
}

func (e *env) mustBuild(b *testing.B, args ...string) {
	cmd := e.command(context.Background(), nil, append([]string{"build", "-o", e.out}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
}

// BenchmarkNoopBuild is a whole `fgimg build` process of a 10-image
// pedigree with a target, everything cached: the bar is 100 ms.
func BenchmarkNoopBuild(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("image \"i0\" {\n  bootstrap \"tar\" {\n    source = \"rootfs.tar\"\n  }\n}\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&sb, "image \"i%d\" {\n  parent = image.i%d\n  file \"/etc/level\" {\n    content = \"%d\"\n  }\n  run = [\"echo %d > /etc/run\"]\n}\n", i, i-1, i, i)
	}
	sb.WriteString("target \"tar\" \"top\" {\n  image = image.i9\n  compression = \"none\"\n}\n")
	e := benchEnv(b, sb.String(), nil)
	e.mustBuild(b)
	b.ResetTimer()
	for range b.N {
		e.mustBuild(b)
	}
}

// BenchmarkChildOnCachedParent measures, on a cached parent of 1 GB, the
// time from starting `fgimg build` to the start of the child's own
// command (read from --json events), beside `cp -a` of the parent's tree,
// which is what a build script copying a base chroot would pay. The bar
// for fgimg is 1 s.
func BenchmarkChildOnCachedParent(b *testing.B) {
	const config = `
variable "n" {
  default = "0"
}
image "parent" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
}
image "child" {
  parent = image.parent
  run    = ["echo ${var.n} > /etc/child"]
}
`
	var parentTree string
	e := benchEnv(b, config, func(dir string) {
		fill1GB(b, filepath.Join(dir, "data"))
		parentTree = dir
	})
	e.mustBuild(b, "-only", "parent")
	// A first child build, as on any day after the parent was built:
	// the parent's source digests are remembered from then on.
	e.mustBuild(b, "-var", "n=warm-up")

	b.Run("fgimg", func(b *testing.B) {
		var total time.Duration
		for i := range b.N {
			cmd := e.command(context.Background(), nil, "build", "--json", "-o", e.out, "-var", fmt.Sprintf("n=%d-%d", i, time.Now().UnixNano()))
			stdout, _ := cmd.StdoutPipe()
			start := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			var until time.Duration
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"event":"start"`) && strings.Contains(sc.Text(), "child: run") {
					until = time.Since(start)
				}
			}
			if err := cmd.Wait(); err != nil || until == 0 {
				b.Fatalf("build: %v (child start seen: %v)", err, until)
			}
			total += until
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-child-start")
	})
	b.Run("cp-a", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			dst := filepath.Join(b.TempDir(), "copy")
			exec.Command("sync").Run()
			start := time.Now()
			if out, err := exec.Command("cp", "-a", parentTree, dst).CombinedOutput(); err != nil {
				b.Fatalf("%v %s", err, out)
			}
			total += time.Since(start)
			os.RemoveAll(dst)
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-child-start")
	})
}

// fill1GB writes 1 GiB in 1,024 files of incompressible data.
func fill1GB(b *testing.B, dir string) {
	os.MkdirAll(dir, 0o755)
	r := rand.New(rand.NewSource(1))
	buf := make([]byte, 1<<20)
	for i := range 1024 {
		r.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
