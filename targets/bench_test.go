package targets

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/testkit"
)

// benchImage writes a generated three-layer image (about 20,000 files and
// 200 MB: a large origin layer, then an upper layer with new, replaced and
// deleted files and an opaque directory, then a small one) as layer tars,
// and the tree it makes, applied with layer.Apply, at root/tree.
func benchImage(b *testing.B, root string) (layers []Layer, tree string, size int64) {
	pool := text(7, 16<<20)
	r := rand.New(rand.NewPCG(7, 7))
	put := func(p string, n int) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		off := r.IntN(len(pool) - n)
		if err := os.WriteFile(p, pool[off:off+n], 0o644); err != nil {
			b.Fatal(err)
		}
	}
	small := func() int { return 512 + r.IntN(12<<10) }
	mk := func(name string, fill func(dir string)) {
		dir := filepath.Join(root, name)
		fill(dir)
		p := filepath.Join(root, name+".tar")
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := layer.WriteTree(f, dir, layer.Options{}); err != nil {
			b.Fatal(err)
		}
		st, _ := f.Stat()
		f.Close()
		os.RemoveAll(dir)
		layers = append(layers, Layer{Path: p, Size: st.Size(), Kind: name})
	}
	mk("base", func(dir string) {
		for i := range 15000 {
			put(filepath.Join(dir, fmt.Sprintf("usr/d%03d/f%04d", i/100, i)), small())
		}
		for i := range 40 {
			put(filepath.Join(dir, fmt.Sprintf("usr/big/b%02d", i)), 2<<20)
		}
		put(filepath.Join(dir, "var/cache/old/x"), 100)
	})
	mk("packages", func(dir string) {
		for i := range 3000 {
			put(filepath.Join(dir, fmt.Sprintf("opt/n%02d/f%04d", i/100, i)), small())
		}
		for i := 0; i < 15000; i += 15 { // replace 1000
			put(filepath.Join(dir, fmt.Sprintf("usr/d%03d/f%04d", i/100, i)), small())
		}
		for i := 7; i < 15000; i += 30 { // delete 500
			put(filepath.Join(dir, fmt.Sprintf("usr/d%03d/.wh.f%04d", i/100, i)), 0)
		}
		put(filepath.Join(dir, "var/cache/.wh..wh..opq"), 0)
		put(filepath.Join(dir, "var/cache/new"), 100)
	})
	mk("files", func(dir string) {
		for i := range 2000 {
			put(filepath.Join(dir, fmt.Sprintf("srv/s%02d/f%04d", i/100, i)), small())
		}
	})
	tree = filepath.Join(root, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, l := range layers {
		f, err := os.Open(l.Path)
		if err != nil {
			b.Fatal(err)
		}
		if err := layer.Apply(f, tree, layer.ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	err := filepath.WalkDir(tree, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			info, _ := d.Info()
			size += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return layers, tree, size
}

// BenchmarkSquashGzip compares the tar target (squash + parallel gzip)
// with tar | pigz over the already squashed tree:
//
//	go test -run '^$' -bench SquashGzip -benchtime 1x ./targets/
func BenchmarkSquashGzip(b *testing.B) {
	root := b.TempDir()
	layers, tree, size := benchImage(b, root)
	b.Logf("%d layers, final tree %d MB", len(layers), size>>20)

	b.Run("fgimg", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			dir := b.TempDir()
			arts, err := Tar{}.Write(context.Background(), &Input{Layers: layers}, &TarSpec{Compression: "gzip"}, dir)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st, _ := os.Stat(filepath.Join(dir, arts[0].Path))
			b.ReportMetric(float64(st.Size())/(1<<20), "MB-out")
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
	b.Run("tar-pigz", func(b *testing.B) {
		testkit.Need(b, "pigz")
		b.SetBytes(size)
		out := filepath.Join(root, "pigz.tar.gz")
		for b.Loop() {
			cmd := exec.Command("sh", "-c", `tar -C "$1" -cf - . | pigz > "$2"`, "sh", tree, out)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, o)
			}
			b.StopTimer()
			st, _ := os.Stat(out)
			b.ReportMetric(float64(st.Size())/(1<<20), "MB-out")
			os.Remove(out)
			b.StartTimer()
		}
	})
}
