package qcow2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/testkit"
)

// text makes n bytes of compressible text with some binary noise.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	words := strings.Fields("the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial bakers")
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if r.IntN(8) == 0 {
			b = append(b, byte(r.Uint32()), byte(r.Uint32()))
		}
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:n]
}

// noise makes n incompressible bytes.
func noise(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, ^seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type region struct {
	off  int64
	data []byte
}

// sparseRaw writes a sparse raw file of the given size with data at the
// regions; everything else is a hole.
func sparseRaw(t testing.TB, size int64, regions ...region) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		if _, err := f.WriteAt(r.data, r.off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

// syntheticRaw is a few MB of disk with data at odd offsets, a lone
// byte, incompressible runs next to compressible ones, an allocated
// region of zeros, a zero cluster between data clusters, a hole, a
// repeated pattern and data in the last, partial cluster.
func syntheticRaw(t testing.TB) (path string, size int64) {
	size = 7*mib + 4608
	return sparseRaw(t, size,
		region{0, text(1, 100*kib)},
		region{200_003, []byte{0x5a}},
		region{300_001, noise(2, 3*64*kib)},
		region{300_001 + 3*64*kib, text(3, 300*kib)},
		region{1 * mib, make([]byte, mib)}, // allocated, all zero
		// Data, an allocated cluster of zeros, data: one extent.
		region{4*mib - 64*kib, append(text(8, 64*kib), append(make([]byte, 64*kib), text(9, 64*kib)...)...)},
		// 2 MiB to 4 MiB - 64 KiB, and 4 MiB + 128 KiB to 5 MiB: holes
		region{5*mib + 77, append(text(4, 200*kib), append(noise(5, 70*kib), text(6, 200*kib)...)...)},
		region{6 * mib, bytes.Repeat([]byte{0xa5}, 128*kib)},
		region{size - 4608 + 1, text(7, 4607)},
	), size
}

// zeroClusters counts the raw file's all-zero clusters of size cs.
func zeroClusters(t testing.TB, raw string, cs int64) int64 {
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for off := int64(0); off < int64(len(b)); off += cs {
		if allZero(b[off:min(off+cs, int64(len(b)))]) {
			n++
		}
	}
	return n
}

func convert(t testing.TB, raw string, opts Options) (string, Stats) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "disk.qcow2")
	st, err := ConvertFile(context.Background(), out, raw, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out, st
}

func TestConvertSynthetic(t *testing.T) {
	raw, size := syntheticRaw(t)
	for _, bits := range []int{16, 12} {
		zeros := zeroClusters(t, raw, 1<<bits)
		var plainSize int64
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("bits=%d/compress=%v", bits, compress), func(t *testing.T) {
				out, st := convert(t, raw, Options{Compress: compress, ClusterBits: bits})
				im := parseImage(t, out)
				im.compareRaw(t, raw)
				if im.bits != uint32(bits) || im.size != size {
					t.Errorf("header: cluster bits %d, size %d; want %d, %d", im.bits, im.size, bits, size)
				}
				if got := st.Unallocated(); got != zeros {
					t.Errorf("%d clusters unallocated, want the %d all-zero ones", got, zeros)
				}
				if st.Data != im.data || st.Compressed != im.compressed || st.FileSize != int64(len(im.b)) {
					t.Errorf("stats %+v disagree with the file: %v", st, im)
				}
				if !compress {
					plainSize = st.FileSize
					if st.Compressed != 0 {
						t.Errorf("%d clusters compressed without Compress", st.Compressed)
					}
					return
				}
				// The noise does not compress and must be stored as is.
				if st.Compressed == 0 || st.Data == 0 {
					t.Errorf("want both compressed and incompressible clusters, got %+v", st)
				}
				if st.FileSize >= plainSize*3/4 {
					t.Errorf("compressed image %d bytes, uncompressed %d", st.FileSize, plainSize)
				}
			})
		}
	}
}

// TestConvertDeterministic: the same raw file gives the same bytes,
// whatever the number of workers.
func TestConvertDeterministic(t *testing.T) {
	raw, _ := syntheticRaw(t)
	for _, compress := range []bool{false, true} {
		a, _ := convert(t, raw, Options{Compress: compress, Workers: 1})
		b, _ := convert(t, raw, Options{Compress: compress, Workers: 5})
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if !bytes.Equal(ab, bb) {
			t.Errorf("compress=%v: 1 and 5 workers give different images", compress)
		}
	}
}

// TestConvertManyTables uses 4 KiB clusters, so that a small disk needs
// several L2 tables (one per 2 MiB of guest) and refcount blocks (one
// per 8 MiB of file), some written in the middle of the data.
func TestConvertManyTables(t *testing.T) {
	size := int64(40*mib + 512)
	var regions []region
	for off := int64(4321); off < size-300*kib; off += 1*mib + 333*kib {
		regions = append(regions, region{off, text(uint64(off), 300*kib)}, region{off + 300*kib, noise(uint64(off), 200*kib)})
	}
	regions = append(regions, region{size - 100, text(9, 100)})
	raw := sparseRaw(t, size, regions...)
	for _, compress := range []bool{false, true} {
		out, st := convert(t, raw, Options{Compress: compress, ClusterBits: 12})
		im := parseImage(t, out)
		im.compareRaw(t, raw)
		rtClusters := int64(be.Uint32(im.b[56:]))
		blocks := 0
		for i := range rtClusters * im.cs / 8 {
			if be.Uint64(im.b[be.Uint64(im.b[48:])+uint64(8*i):]) != 0 {
				blocks++
			}
		}
		if blocks < 2 || len(im.l1) < 20 {
			t.Errorf("compress=%v: %d refcount blocks, %d L1 entries: the test does not exercise several", compress, blocks, len(im.l1))
		}
		qemuCheck(t, out)
		qemuCompare(t, raw, out)
		t.Logf("compress=%v: %v, %d refcount blocks, stats %+v", compress, im, blocks, st)
	}
}

// TestConvertLargeSparse converts a mostly empty 20 GiB disk: the hole
// costs nothing and the L1 table spans 40 L2 tables' worth of guest.
func TestConvertLargeSparse(t *testing.T) {
	size := int64(20 << 30)
	raw := sparseRaw(t, size,
		region{0, text(1, 4096)},
		region{3<<30 + 12345, text(2, 200*kib)},
		region{size - 65536 - 7, text(3, 65536+7)},
	)
	out, st := convert(t, raw, Options{})
	if st.Data != 1+4+2 || st.Clusters != size>>16 {
		t.Errorf("stats %+v: want 7 data clusters of %d", st, size>>16)
	}
	if st.FileSize > 16*64*kib {
		t.Errorf("a 20 GiB disk with 270 KiB of data made a %d byte image", st.FileSize)
	}
	qemuCheck(t, out)
	qemuCompare(t, raw, out)
}

func TestConvertEmptyAndTiny(t *testing.T) {
	for _, size := range []int64{0, 1, 511, 65536} {
		var regions []region
		if size > 0 {
			regions = append(regions, region{size - 1, []byte{7}})
		}
		raw := sparseRaw(t, size, regions...)
		for _, compress := range []bool{false, true} {
			out, st := convert(t, raw, Options{Compress: compress})
			im := parseImage(t, out)
			im.compareRaw(t, raw)
			if size > 0 && st.Data+st.Compressed != 1 {
				t.Errorf("size %d: stats %+v", size, st)
			}
		}
	}
}

func TestConvertErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "x.qcow2")
	if _, err := ConvertFile(context.Background(), out, filepath.Join(dir, "missing.raw"), Options{}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing source: %v", err)
	}
	if _, err := ConvertFile(context.Background(), out, dir, Options{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory as source: %v", err)
	}
	raw, _ := syntheticRaw(t)
	if _, err := ConvertFile(context.Background(), out, raw, Options{ClusterBits: 9}); err == nil {
		t.Error("9 cluster bits accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ConvertFile(ctx, out, raw, Options{Compress: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed conversion left %s behind", out)
	}
}

// TestQemu checks the synthetic disk's images with QEMU's own tools:
// qemu-img check finds them clean, qemu-img compare identical to the
// raw file, qemu-img info reads the format, and qemu-io reads the hole,
// the allocated zeros and the pattern back.
func TestQemu(t *testing.T) {
	raw, size := syntheticRaw(t)
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			out, _ := convert(t, raw, Options{Compress: compress})
			qemuCheck(t, out)
			qemuCompare(t, raw, out)
			info := qemuInfo(t, out)
			if info.Format != "qcow2" || info.VirtualSize != size || info.ClusterSize != 65536 ||
				info.Specific.Data.Compat != "1.1" || info.Specific.Data.RefcountBits != 16 {
				t.Errorf("qemu-img info: %+v", info)
			}
			qemuIO(t, out,
				"read -P 0 2M 1984K",     // a hole
				"read -P 0 1M 1M",        // allocated zeros, left unallocated
				"read -P 0xa5 6M 128K",   // the pattern
				"read -P 0x5a 200003 1",  // the lone byte
				"read -P 0 196608 3395",  // the zeros around it
				"read -P 0 200004 62140", // ...
			)
		})
	}
}

func needTool(t testing.TB, name string) {
	t.Helper()
	testkit.Need(t, name)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuCheck runs qemu-img check and fails on any error, leak or
// corruption it reports.
func qemuCheck(t testing.TB, path string) {
	t.Helper()
	needTool(t, "qemu-img")
	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", "--output=json", path).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img check %s: %v\n%s", path, err, out)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	for _, k := range []string{"corruptions", "leaks", "check-errors", "corruptions-fixed", "leaks-fixed"} {
		if v, ok := res[k]; ok && v != float64(0) {
			t.Errorf("qemu-img check: %s = %v\n%s", k, v, out)
		}
	}
}

func qemuCompare(t testing.TB, raw, qcow string) {
	t.Helper()
	needTool(t, "qemu-img")
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow)
}

type qemuImgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ClusterSize int64  `json:"cluster-size"`
	Specific    struct {
		Data struct {
			Compat          string `json:"compat"`
			RefcountBits    int    `json:"refcount-bits"`
			CompressionType string `json:"compression-type"`
			Corrupt         bool   `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

func qemuInfo(t testing.TB, path string) qemuImgInfo {
	t.Helper()
	needTool(t, "qemu-img")
	var info qemuImgInfo
	out := run(t, "qemu-img", "info", "-f", "qcow2", "--output=json", path)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, out)
	}
	if info.Specific.Data.Corrupt {
		t.Errorf("qemu-img info: image marked corrupt")
	}
	return info
}

// qemuIO runs qemu-io read -P commands; qemu-io reports a mismatch as
// "Pattern verification failed".
func qemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	needTool(t, "qemu-io")
	args := []string{"-f", "qcow2", "-r"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := run(t, "qemu-io", append(args, path)...)
	if strings.Contains(out, "failed") || strings.Count(out, "read ") != len(cmds) {
		t.Errorf("qemu-io:\n%s", out)
	}
}
