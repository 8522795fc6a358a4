package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// benchDiskTree writes a root file system of about 1.1 GB in 60,000
// files (small ones in 600 directories, and 40 of 8 MiB), with a Debian
// sized fake kernel and initrd.
func benchDiskTree(b *testing.B, dir string) (files int, bytes int64) {
	pool := text(11, 16<<20)
	r := rand.New(rand.NewPCG(11, 11))
	put := func(rel string, n int) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		for left := n; left > 0; {
			k := min(left, 4<<20)
			off := r.IntN(len(pool) - k)
			if _, err := f.Write(pool[off : off+k]); err != nil {
				b.Fatal(err)
			}
			left -= k
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		files++
		bytes += int64(n)
	}
	for i := range 60000 {
		put(fmt.Sprintf("usr/lib/d%03d/f%05d", i/100, i), 256+r.IntN(24<<10))
	}
	for i := range 40 {
		put(fmt.Sprintf("opt/big/b%02d", i), 8<<20)
	}
	put("boot/vmlinuz-"+testKernel, 8<<20)
	put("boot/initrd.img-"+testKernel, 40<<20)
	return files, bytes
}

// BenchmarkRawDisk times the raw target against mkfs.ext4 -d alone on the
// same tree into a file the size of the root partition, and reports
// the ratio (the bar: at most 1.1) and the peak memory of the writer's
// process and of the mkfs.ext4 it runs.
//
// The writer runs in a child process of its own. Its peak is its
// VmHWM: the rusage of a child Go starts includes the parent's peak,
// since Go spawns with vfork and Linux keeps the old memory's high-water
// mark across execve. For the same reason the mkfs.ext4 figures (from
// rusage) are upper bounds: at least the spawning process's size.
//
//	go test -run '^$' -bench RawDisk -benchtime 1x ./targets/
func BenchmarkRawDisk(b *testing.B) {
	needDiskTools(b)
	work := b.TempDir()
	tree := filepath.Join(work, "tree")
	files, size := benchDiskTree(b, tree)
	stats, err := scanTree(context.Background(), tree)
	if err != nil {
		b.Fatal(err)
	}
	lay, err := planDisk(stats, 48<<20, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("tree: %d files, %d MB; disk %s, root partition %s", files, size>>20, formatDiskSize(lay.size, false), formatDiskSize(lay.rootSize, false))
	mkfs := testkit.Need(b, "mkfs.ext4")[0]
	var mkfsTime, rawTime time.Duration
	var rawSelf, rawKids, mkfsRSS int64
	for b.Loop() {
		img := filepath.Join(work, "mkfs.img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Truncate(img, lay.rootSize); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(mkfs, "-q", "-F", "-d", tree, img)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
		mkfsTime += time.Since(start)
		mkfsRSS = max(mkfsRSS, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
		os.Remove(img)

		out := filepath.Join(work, "raw")
		if err := os.Mkdir(out, 0o755); err != nil {
			b.Fatal(err)
		}
		req, _ := json.Marshal(rawWriterRequest{Root: tree, Dir: out})
		cmd = exec.Command(os.Args[0], "-test.run=^TestRawWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FGIMG_TEST_RAW_WRITER="+string(req))
		start = time.Now()
		o, err := cmd.CombinedOutput()
		rawTime += time.Since(start)
		if err != nil {
			b.Fatalf("raw writer: %v\n%s", err, o)
		}
		var self, kids int64
		if _, err := fmt.Sscanf(string(o[strings.Index(string(o), "rusage "):]), "rusage %d %d", &self, &kids); err != nil {
			b.Fatalf("raw writer's output: %s", o)
		}
		rawSelf, rawKids = max(rawSelf, self), max(rawKids, kids)
		os.RemoveAll(out)
	}
	b.ReportMetric(float64(rawTime)/float64(mkfsTime), "raw/mkfs")
	b.ReportMetric(rawTime.Seconds()/float64(b.N), "raw-s")
	b.ReportMetric(mkfsTime.Seconds()/float64(b.N), "mkfs-s")
	b.ReportMetric(float64(rawSelf)/1024, "fgimg-peak-MiB")
	b.ReportMetric(float64(rawKids)/1024, "its-mkfs-peak-MiB")
	b.ReportMetric(float64(mkfsRSS)/1024, "mkfs-peak-MiB")
}

type rawWriterRequest struct{ Root, Dir string }

// TestRawWriterProcess is BenchmarkRawDisk's child process, not a test:
// it runs the raw writer alone, so that its peak memory is its own, and
// prints that (VmHWM) and its children's peak (rusage), in KiB.
func TestRawWriterProcess(t *testing.T) {
	env := os.Getenv("FGIMG_TEST_RAW_WRITER")
	if env == "" {
		t.Skip("BenchmarkRawDisk's child process")
	}
	var req rawWriterRequest
	if err := json.Unmarshal([]byte(env), &req); err != nil {
		t.Fatal(err)
	}
	if _, err := (Raw{}).Write(context.Background(), diskInput(req.Root), &RawSpec{DiskSpec{}}, req.Dir); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &hwm)
		}
	}
	var kids syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	fmt.Printf("rusage %d %d\n", hwm, kids.Maxrss)
}
