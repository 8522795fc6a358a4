package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/flate"
)

// image is a qcow2 file parsed independently of the writer, the way a
// reader such as QEMU sees it.
type image struct {
	b          []byte // the whole file
	bits       uint32
	cs         int64
	size       int64
	l1         []uint64
	compressed int64 // guest clusters stored deflated
	data       int64 // guest clusters stored as they are
}

var be = binary.BigEndian

// parseImage reads a qcow2 file and checks its structure: header
// fields, alignment, that no two things overlap wrongly, and that the
// stored refcounts equal the references counted from the L1 and L2
// tables, the refcount structures and the header, as qemu-img check
// counts them (a deflated cluster references every host cluster its
// sectors touch).
func parseImage(t *testing.T, path string) *image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 112 || be.Uint32(b) != magic || be.Uint32(b[4:]) != 3 {
		t.Fatalf("%s: not a qcow2 v3 file", path)
	}
	im := &image{b: b, bits: be.Uint32(b[20:]), size: int64(be.Uint64(b[24:]))}
	im.cs = 1 << im.bits
	for _, f := range []struct {
		off  int
		want uint64
		name string
	}{{8, 0, "backing file offset"}, {32, 0, "crypt method"}, {60, 0, "snapshots"}, {72, 0, "incompatible features"},
		{80, 0, "compatible features"}, {88, 0, "autoclear features"}} {
		var got uint64
		if f.name == "crypt method" || f.name == "snapshots" {
			got = uint64(be.Uint32(b[f.off:]))
		} else {
			got = be.Uint64(b[f.off:])
		}
		if got != f.want {
			t.Errorf("header %s = %d, want %d", f.name, got, f.want)
		}
	}
	if order := be.Uint32(b[96:]); order != 4 {
		t.Errorf("refcount order %d, want 4", order)
	}
	if hl := be.Uint32(b[100:]); hl < 104 || hl%8 != 0 {
		t.Errorf("header length %d", hl)
	}
	if int64(len(b))%im.cs != 0 {
		t.Errorf("file size %d is not a multiple of the cluster size", len(b))
	}
	nclusters := int64(len(b)) / im.cs
	refs := make([]int, nclusters)
	exclusive := make([]bool, nclusters) // holds a table or a data cluster
	inc := func(off, n int64, what string) {
		if off < 0 || off+n > int64(len(b)) {
			t.Fatalf("%s at %d+%d lies outside the file (%d bytes)", what, off, n, len(b))
		}
		for k := off >> im.bits; k <= (off+n-1)>>im.bits; k++ {
			refs[k]++
			if what != "compressed cluster" {
				exclusive[k] = true
			}
		}
	}
	aligned := func(off uint64, what string) {
		if off%uint64(im.cs) != 0 || off == 0 {
			t.Fatalf("%s at %#x is not cluster aligned", what, off)
		}
	}
	inc(0, im.cs, "header")

	l1Size := int64(be.Uint32(b[36:]))
	l2Entries := im.cs / 8
	guestClusters := (im.size + im.cs - 1) / im.cs
	if want := (guestClusters + l2Entries - 1) / l2Entries; l1Size != want {
		t.Errorf("L1 size %d, want %d", l1Size, want)
	}
	l1Off := be.Uint64(b[40:])
	aligned(l1Off, "L1 table")
	inc(int64(l1Off), max(8*l1Size, 1), "L1 table")
	im.l1 = make([]uint64, l1Size)
	csizeShift := 62 - (im.bits - 8)
	csizeMask := uint64(1)<<(im.bits-8) - 1
	for i := range im.l1 {
		e := be.Uint64(b[int(l1Off)+8*i:])
		im.l1[i] = e
		if e == 0 {
			continue
		}
		off := e &^ flagCopied
		if e&flagCopied == 0 || off&^(1<<56-1) != 0 {
			t.Errorf("L1 entry %d = %#x: want the copied flag and no reserved bits", i, e)
		}
		aligned(off, "L2 table")
		inc(int64(off), im.cs, "L2 table")
		for j := range l2Entries {
			e := be.Uint64(b[int64(off)+8*j:])
			switch {
			case e == 0:
			case e&flagCompressed != 0:
				if e&flagCopied != 0 {
					t.Errorf("compressed L2 entry %#x has the copied flag", e)
				}
				coff := e & (1<<csizeShift - 1)
				n := int64((e>>csizeShift)&csizeMask) + 1
				inc(int64(coff&^511), n*512, "compressed cluster")
				im.compressed++
			default:
				doff := e &^ flagCopied
				if e&flagCopied == 0 || doff&^(1<<56-1) != 0 || doff&1 != 0 {
					t.Errorf("L2 entry %#x: want the copied flag, no zero flag, no reserved bits", e)
				}
				aligned(doff, "data cluster")
				inc(int64(doff), im.cs, "data cluster")
				im.data++
			}
		}
	}

	rtOff := int64(be.Uint64(b[48:]))
	rtClusters := int64(be.Uint32(b[56:]))
	aligned(uint64(rtOff), "refcount table")
	inc(rtOff, rtClusters*im.cs, "refcount table")
	refEntries := im.cs * 8 / 16
	stored := make([]int, nclusters)
	for i := range rtClusters * im.cs / 8 {
		e := be.Uint64(b[rtOff+8*i:])
		if e == 0 {
			if i*refEntries < nclusters {
				t.Errorf("refcount table entry %d is empty but the file reaches cluster %d", i, nclusters-1)
			}
			continue
		}
		aligned(e, "refcount block")
		inc(int64(e), im.cs, "refcount block")
		for k := range refEntries {
			n := int(be.Uint16(b[int64(e)+2*k:]))
			if c := i*refEntries + k; c < nclusters {
				stored[c] = n
			} else if n != 0 {
				t.Errorf("refcount %d for cluster %d past the end of the file", n, c)
			}
		}
	}
	bad := 0
	for k := range refs {
		if refs[k] != stored[k] {
			if bad++; bad < 10 {
				t.Errorf("cluster %d: stored refcount %d, referenced %d times", k, stored[k], refs[k])
			}
		}
		if refs[k] == 0 {
			t.Errorf("cluster %d is unused", k)
		}
		// Only deflated clusters may share host clusters.
		if exclusive[k] && refs[k] != 1 {
			t.Errorf("cluster %d holds a table or data cluster and is referenced %d times", k, refs[k])
		}
	}
	return im
}

// readCluster returns guest cluster g's contents.
func (im *image) readCluster(t *testing.T, g int64) []byte {
	t.Helper()
	out := make([]byte, im.cs)
	l2 := im.l1[g/(im.cs/8)] &^ flagCopied
	if l2 == 0 {
		return out
	}
	e := be.Uint64(im.b[int64(l2)+8*(g%(im.cs/8)):])
	switch {
	case e == 0:
	case e&flagCompressed != 0:
		shift := 62 - (im.bits - 8)
		coff := int64(e & (1<<shift - 1))
		n := int64((e>>shift)&(1<<(im.bits-8)-1)) + 1
		end := coff&^511 + n*512
		// Inflate exactly the bytes QEMU would hand to zlib, with a
		// reader that rejects matches beyond 4 KiB.
		r := flate.NewReader(bytes.NewReader(im.b[coff:end]))
		if _, err := io.ReadFull(r, out); err != nil {
			t.Fatalf("guest cluster %d: inflating %d bytes at %#x: %v", g, end-coff, coff, err)
		}
		checkWindow(t, im.b[coff:end], out, g)
	default:
		off := int64(e &^ flagCopied)
		copy(out, im.b[off:off+im.cs])
	}
	return out
}

// checkWindow checks with an independent inflater that the deflate
// stream decodes to want and never refers further back than 4 KiB, the
// window QEMU inflates with (zlib itself does not always catch that).
func checkWindow(t *testing.T, stream, want []byte, g int64) {
	t.Helper()
	got, dist, err := inflate(stream, len(want))
	if err != nil {
		t.Fatalf("guest cluster %d: %v", g, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("guest cluster %d: the two inflaters disagree", g)
	}
	if dist > 4096 {
		t.Fatalf("guest cluster %d: deflate back reference of %d bytes, QEMU allows 4096", g, dist)
	}
}

// compareRaw checks that every guest cluster reads as the raw file.
func (im *image) compareRaw(t *testing.T, raw string) {
	t.Helper()
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(want)) != im.size {
		t.Fatalf("virtual size %d, raw file %d bytes", im.size, len(want))
	}
	for g := int64(0); g*im.cs < im.size; g++ {
		got := im.readCluster(t, g)
		w := want[g*im.cs : min((g+1)*im.cs, im.size)]
		if !bytes.Equal(got[:len(w)], w) || !allZero(got[len(w):]) {
			t.Fatalf("guest cluster %d differs from the raw file", g)
		}
	}
}

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

func (im *image) String() string {
	return fmt.Sprintf("qcow2 %d bytes, virtual %d, %d data + %d compressed clusters", len(im.b), im.size, im.data, im.compressed)
}
