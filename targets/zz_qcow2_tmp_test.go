package targets

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/qcow2"
)

func BenchmarkZZQcow2Parts(b *testing.B) {
	root := qcow2BenchRoot(b, netbootBenchTree(b))
	work := b.TempDir()
	mkfs, _ := diskTool("mkfs.ext4")
	for b.Loop() {
		for range 2 {
			raw := filepath.Join(work, "d.raw")
			out := filepath.Join(work, "d.qcow2")
			os.Remove(raw)
			os.Remove(out)
			syscall.Sync()
			t0 := time.Now()
			if _, err := scanTree(context.Background(), root); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			info, err := BuildDisk(context.Background(), &Input{Image: ImageInfo{Name: "bench", ID: "sha256:bench"}, Root: root}, &Spec{TargetKind: "qcow2", Boot: BootNone}, raw)
			if err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			if _, err := qcow2.ConvertFile(context.Background(), out, raw, qcow2.Options{}); err != nil {
				b.Fatal(err)
			}
			t3 := time.Now()
			os.Remove(raw)
			t4 := time.Now()
			os.Remove(out)
			syscall.Sync()
			t5 := time.Now()
			if o, err := exec.Command(mkfs, "-q", "-F", "-d", root, raw, fmt.Sprint(info.Root.Size>>10)+"k").CombinedOutput(); err != nil {
				b.Fatal(err, string(o))
			}
			t6 := time.Now()
			if o, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out).CombinedOutput(); err != nil {
				b.Fatal(err, string(o))
			}
			t7 := time.Now()
			b.Logf("scan %v builddisk %v convert %v unlink %v | mkfs %v qemu-img %v", t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t6.Sub(t5), t7.Sub(t6))
		}
	}
}
