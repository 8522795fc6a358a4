package qcow2

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// benchTree writes a tree of 50,000 small files (512 B to 16 KiB of
// text) and 64 large ones (4 MiB, half text, half noise): about 650 MB.
func benchTree(b *testing.B, dir string) (files int, bytes int64) {
	textPool, noisePool := text(11, 16<<20), noise(12, 8<<20)
	r := rand.New(rand.NewPCG(13, 13))
	put := func(p string, pool []byte, n int) {
		off := r.IntN(len(pool) - n)
		if err := os.WriteFile(p, pool[off:off+n], 0o644); err != nil {
			b.Fatal(err)
		}
		files++
		bytes += int64(n)
	}
	for d := range 500 {
		sub := filepath.Join(dir, fmt.Sprintf("usr/share/d%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range 100 {
			put(filepath.Join(sub, fmt.Sprintf("f%03d", i)), textPool, 512+r.IntN(16<<10))
		}
	}
	big := filepath.Join(dir, "opt/big")
	if err := os.MkdirAll(big, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 64 {
		pool := textPool
		if i%2 == 1 {
			pool = noisePool
		}
		put(filepath.Join(big, fmt.Sprintf("b%02d", i)), pool, 4<<20)
	}
	return files, bytes
}

// BenchmarkConvert converts a 1 GiB ext4 disk made by mkfs.ext4 -d from
// a tree of 50,000 files, side by side with qemu-img convert on the same
// raw file: the converter alone (the qcow2 target, which also builds the
// disk, is targets.BenchmarkQCOW2). The converter runs in a child
// process, for its peak RSS. Metrics: seconds of each, the ratios
// fgimg/qemu-img (plain-x for -O qcow2, z-x for -c -O qcow2) and the
// converter's peak RSS. Every run starts after a sync(2).
//
//	go test -run '^$' -bench Convert -benchtime 1x ./internal/qcow2/
func BenchmarkConvert(b *testing.B) {
	testkit.Need(b, "mkfs.ext4", "qemu-img")
	dir := b.TempDir()
	files, size := benchTree(b, filepath.Join(dir, "tree"))
	raw := filepath.Join(dir, "disk.raw")
	mkfs := timeCmd(b, "mkfs.ext4", "-q", "-F", "-d", filepath.Join(dir, "tree"), raw, "1G")
	b.Logf("tree: %d files, %d MB; mkfs.ext4 -d: %.2fs", files, size>>20, mkfs.Seconds())
	out := filepath.Join(dir, "out.qcow2")
	var sum struct{ plain, z, qplain, qz time.Duration }
	var rssPlain, rssZ int64
	var sizePlain, sizeZ, sizeQZ int64
	fgimg := func(compress bool) {
		os.Remove(out) // every run writes a new file
		d, rss := childConvert(b, raw, out, compress)
		if compress {
			sum.z += d
			rssZ, sizeZ = max(rssZ, rss), fileSize(b, out)
		} else {
			sum.plain += d
			rssPlain, sizePlain = max(rssPlain, rss), fileSize(b, out)
		}
	}
	qemuImg := func(compress bool) {
		os.Remove(out)
		if compress {
			sum.qz += timeCmd(b, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, out)
			sizeQZ = fileSize(b, out)
		} else {
			sum.qplain += timeCmd(b, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out)
		}
	}
	// The order of the runs alternates, so that neither side always
	// finds the page cache in the state the other left it in.
	n := 0
	for b.Loop() {
		n++
		fgimg(false)
		qemuImg(false)
		qemuImg(false)
		fgimg(false)
		if n%2 == 1 {
			fgimg(true)
			qemuImg(true)
		} else {
			qemuImg(true)
			fgimg(true)
		}
	}
	os.Remove(out)
	avg := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	avg2 := func(d time.Duration) float64 { return d.Seconds() / float64(2*n) }
	b.ReportMetric(avg2(sum.plain), "fgimg-s")
	b.ReportMetric(avg2(sum.qplain), "qemu-img-s")
	b.ReportMetric(avg(sum.z), "fgimg-c-s")
	b.ReportMetric(avg(sum.qz), "qemu-img-c-s")
	b.ReportMetric(sum.plain.Seconds()/sum.qplain.Seconds(), "plain-x")
	b.ReportMetric(sum.z.Seconds()/sum.qz.Seconds(), "z-x")
	b.ReportMetric(float64(max(rssPlain, rssZ))/(1<<20), "peak-RSS-MB")
	b.Logf("sizes: plain %d MB, compressed %d MB (qemu-img -c: %d MB); peak RSS plain %d MB, compressed %d MB",
		sizePlain>>20, sizeZ>>20, sizeQZ>>20, rssPlain>>20, rssZ>>20)
}

func timeCmd(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	syscall.Sync() // no run pays for another's writeback
	start := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	return time.Since(start)
}

func fileSize(b *testing.B, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

// childArgs is what childConvert hands TestConvertChild.
type childArgs struct {
	Src, Dst string
	Compress bool
}

const childEnv = "FGIMG_QCOW2_CHILD"

// childConvert converts src to dst in a child process (this test binary
// running TestConvertChild) and returns the time taken and its peak RSS
// in bytes.
func childConvert(b *testing.B, src, dst string, compress bool) (time.Duration, int64) {
	b.Helper()
	arg, _ := json.Marshal(childArgs{src, dst, compress})
	cmd := exec.Command(os.Args[0], "-test.run=^TestConvertChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(arg))
	syscall.Sync()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		b.Fatalf("converting in a child process: %v\n%s", err, out)
	}
	return d, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
}

// TestConvertChild is the child process of childConvert; run directly it
// does nothing.
func TestConvertChild(t *testing.T) {
	arg := os.Getenv(childEnv)
	if arg == "" {
		t.Skip("only a child process of BenchmarkConvert")
	}
	var a childArgs
	if err := json.Unmarshal([]byte(arg), &a); err != nil {
		t.Fatal(err)
	}
	if _, err := ConvertFile(context.Background(), a.Dst, a.Src, Options{Compress: a.Compress}); err != nil {
		t.Fatal(err)
	}
}
