package main

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/opencontainers/go-digest"
)

// fgimgBinary builds fgimg as users run it, for the benchmarks of whole
// processes: the test binary acting as main starts slower (the testing
// packages and every test's dependencies are initialised too).
func fgimgBinary(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "fgimg")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

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
// pedigree with a target, everything cached: the bar is 100 ms; beside
// it, the catalog's share of it: opening the catalog and recording the
// build's 11 entries and its export, as the build does.
func BenchmarkNoopBuild(b *testing.B) {
	e := benchEnv(b, noopConfig(), nil)
	e.bin = fgimgBinary(b)
	e.mustBuild(b)
	b.Run("build", func(b *testing.B) {
		for range b.N {
			e.mustBuild(b)
		}
	})
	b.Run("catalog-record", func(b *testing.B) {
		store, err := cache.Open(e.cache)
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		cat, err := catalog.Open(store)
		if err != nil {
			b.Fatal(err)
		}
		keys, err := cat.Files().Keys()
		if err != nil || len(keys) != 11 {
			b.Fatalf("%d entries recorded (%v), want 11", len(keys), err)
		}
		var entries []*catalog.Entry
		for _, k := range keys {
			en, err := cat.Files().Get(k)
			if err != nil {
				b.Fatal(err)
			}
			entries = append(entries, &catalog.Entry{ID: en.ID, Name: en.Name})
		}
		cat.Close()
		last := entries[len(entries)-1]
		b.ResetTimer()
		for range b.N {
			cat, err := catalog.Open(store)
			if err != nil {
				b.Fatal(err)
			}
			use := catalog.Use{ID: last.ID, Name: last.Name, Event: catalog.Event{Who: catalog.User(), When: time.Now().UTC(), What: catalog.UseExport}}
			if err := cat.Record(entries, []catalog.Use{use}); err != nil {
				b.Fatal(err)
			}
			cat.Close()
		}
	})
}

// noopConfig is a 10-image pedigree on busybox with a tar target.
func noopConfig() string {
	var sb strings.Builder
	sb.WriteString("image \"i0\" {\n  bootstrap \"tar\" {\n    source = \"rootfs.tar\"\n  }\n}\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&sb, "image \"i%d\" {\n  parent = image.i%d\n  file \"/etc/level\" {\n    content = \"%d\"\n  }\n  run = [\"echo %d > /etc/run\"]\n}\n", i, i-1, i, i)
	}
	sb.WriteString("target \"tar\" \"top\" {\n  image = image.i9\n  compression = \"none\"\n}\n")
	return sb.String()
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

// BenchmarkExamplesRepository builds the Debian examples' images from
// the mirror (minutes) and measures, side by side in one run:
//   - regenerating image hadoop after a purge, its parents (base, hpc)
//     still cached, against building it cold with an empty cache (the
//     bar: 0.05×); regen-ratio;
//   - the cache's bytes for the four images on one base (base, hpc, web,
//     hadoop) against the base image's layers plus every other image's
//     own layers (the bar: 1.1×): layers-ratio counts the stored layers
//     and logs (blobs), cache-ratio the whole cache, with the unpacked
//     snapshots overlayfs mounts.
func BenchmarkExamplesRepository(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("building needs root")
	}
	testkit.Need(b, "debootstrap")
	needMirror(b)
	examples, _ := filepath.Abs("../../examples/debian")
	for range b.N {
		e := &env{dir: examples, cache: b.TempDir(), out: b.TempDir()}
		run := func(args ...string) time.Duration {
			start := time.Now()
			// SOURCE_DATE_EPOCH: without it, files that packages'
			// scripts write keep the time of the build, and the
			// regenerated stages cannot be bit-identical.
			if out, err := e.command(context.Background(), sde, args...).CombinedOutput(); err != nil {
				b.Fatalf("fgimg %v: %v\n%s", args, err, out)
			}
			return time.Since(start)
		}
		cold := run("build", "-o", e.out, "-only", "hadoop")
		run("build", "-o", e.out, "-only", "web")
		layers, blobs, all := cacheBytes(b, e.cache)
		run("keep", "base")
		run("keep", "hpc")
		run("keep", "web")
		run("purge", "-unused-for", "0s", "-keep-last", "0")
		regen := run("regenerate", "-o", e.out, "hadoop")
		b.ReportMetric(float64(cold.Milliseconds()), "cold-ms")
		b.ReportMetric(float64(regen.Milliseconds()), "regenerate-ms")
		b.ReportMetric(float64(regen)/float64(cold), "regen-ratio")
		b.ReportMetric(float64(blobs)/float64(layers), "layers-ratio")
		b.ReportMetric(float64(all)/float64(layers), "cache-ratio")
		b.ReportMetric(float64(layers)/(1<<20), "base+deltas-MiB")
	}
}

// cacheBytes returns the sum of the layers of every stage recorded in
// the cache at dir (each stage once: the base's and each image's own),
// the bytes of its blobs, and of the whole cache directory (each inode
// once).
func cacheBytes(b *testing.B, dir string) (layers, blobs, all int64) {
	store, err := cache.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	recs, err := store.Records()
	store.Close()
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range recs {
		for _, o := range r.Outputs {
			layers += o.Size
		}
	}
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		all += fi.Size()
		if strings.Contains(p, "/blobs/") {
			blobs += fi.Size()
		}
		return nil
	})
	return layers, blobs, all
}

// BenchmarkImagesQuery is a whole `fgimg images QUERY` process over a
// catalog of 10,000 entries: the bar is 100 ms.
func BenchmarkImagesQuery(b *testing.B) {
	e := &env{dir: b.TempDir(), cache: b.TempDir(), bin: fgimgBinary(b)}
	store, err := cache.Open(e.cache)
	if err != nil {
		b.Fatal(err)
	}
	cat, err := catalog.Open(store)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC()
	var entries []*catalog.Entry
	for i := range 10000 {
		en := &catalog.Entry{
			ID: digest.FromString(fmt.Sprint("entry ", i)), Name: fmt.Sprintf("img%d", i%500), Type: catalog.TypeImage,
			Owner: []string{"alice", "bob"}[i%2], OS: []string{"debian-12", "rocky-9"}[i%2], Tags: []string{"hpc"},
			Kind: "image", Status: catalog.StatusBuilt, Created: now.Add(-time.Duration(i) * time.Hour), Size: int64(i) << 20,
			Stack: &swstack.Stack{Manager: "dpkg"},
		}
		for p := range 20 {
			en.Stack.Packages = append(en.Stack.Packages, swstack.Package{Name: fmt.Sprint("pkg", p), Version: fmt.Sprintf("%d.%d", i%5, p)})
		}
		en.Stack.Packages = append(en.Stack.Packages, swstack.Package{Name: "openmpi-bin", Version: fmt.Sprintf("4.%d.0-1", i%3)})
		entries = append(entries, en)
	}
	if err := cat.Record(entries, nil); err != nil {
		b.Fatal(err)
	}
	// Index them now: the first query would take them in.
	if err := cat.Rebuild(); err != nil {
		b.Fatal(err)
	}
	cat.Close()
	store.Close()
	for _, q := range []string{
		"name,size,last_access where owner=alice, size>1GiB",
		"* where package=openmpi-bin@4.1*, last_access>90d order by access_count desc",
		"name where package~^openmp, name~^img1",
	} {
		b.Run(strings.Fields(q)[0]+"/"+strings.Fields(q)[2], func(b *testing.B) {
			for range b.N {
				if out, err := e.command(context.Background(), nil, "images", q).CombinedOutput(); err != nil {
					b.Fatalf("%v\n%s", err, out)
				}
			}
		})
	}
}
