package qcow2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
)

const (
	// DefaultClusterBits gives QEMU's default 64 KiB clusters.
	DefaultClusterBits = 16

	magic         = 0x514649fb // "QFI\xfb"
	version       = 3
	refcountOrder = 4 // 16-bit refcounts
	headerLength  = 112

	flagCopied     = uint64(1) << 63 // standard cluster or L2 table with refcount exactly one
	flagCompressed = uint64(1) << 62

	// deflateWindow is the largest match distance QEMU's inflate accepts:
	// it decompresses clusters with inflateInit2(windowBits = -12).
	deflateWindow = 1 << 12

	jobBytes   = 1 << 20 // raw bytes read per job
	maxWorkers = 16
)

// Options tune Convert. The zero value writes uncompressed 64 KiB clusters.
type Options struct {
	// Compress deflates every cluster that shrinks by at least one
	// 512-byte sector.
	Compress bool
	// Workers is the number of goroutines that scan (and compress)
	// clusters; 0 means GOMAXPROCS, at most 16. It never changes the
	// output.
	Workers int
	// ClusterBits is log2 of the cluster size, 12 (4 KiB) to 21 (2 MiB);
	// 0 means DefaultClusterBits.
	ClusterBits int
}

// Stats describes a written image.
type Stats struct {
	VirtualSize int64 // bytes, the raw file's size
	Clusters    int64 // guest clusters in the virtual disk
	Data        int64 // clusters stored as they are
	Compressed  int64 // clusters stored deflated
	FileSize    int64 // bytes of the qcow2 file
}

// Unallocated is the number of all-zero guest clusters left unallocated.
func (s Stats) Unallocated() int64 { return s.Clusters - s.Data - s.Compressed }

// ConvertFile writes the raw disk image src as a qcow2 image at dst,
// which is created or truncated, and removed again on failure.
func ConvertFile(ctx context.Context, dst, src string, opts Options) (Stats, error) {
	in, err := os.Open(src)
	if err != nil {
		return Stats{}, fmt.Errorf("qcow2: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Stats{}, fmt.Errorf("qcow2: %w", err)
	}
	st, err := Convert(ctx, out, in, opts)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("qcow2: closing %s: %w", dst, cerr)
	}
	if err != nil {
		return Stats{}, errors.Join(err, os.Remove(dst))
	}
	return st, nil
}

// Convert writes the raw disk image read from src as a qcow2 image to
// dst, which it truncates first. The virtual disk has src's size. src
// must not change while Convert runs.
func Convert(ctx context.Context, dst, src *os.File, opts Options) (Stats, error) {
	bits := opts.ClusterBits
	if bits == 0 {
		bits = DefaultClusterBits
	}
	if bits < 12 || bits > 21 {
		return Stats{}, fmt.Errorf("qcow2: cluster bits %d out of range 12..21", bits)
	}
	fi, err := src.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("qcow2: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Stats{}, fmt.Errorf("qcow2: %s is not a regular file", src.Name())
	}
	if dfi, err := dst.Stat(); err != nil || dfi.Size() != 0 {
		// (Truncating only when needed: ext4 flushes a file truncated to
		// zero and rewritten when it is closed.)
		if err := dst.Truncate(0); err != nil {
			return Stats{}, fmt.Errorf("qcow2: %w", err)
		}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, maxWorkers)
	c := newConverter(dst, src, fi.Size(), bits, opts.Compress)
	if err := c.run(ctx, workers); err != nil {
		return Stats{}, fmt.Errorf("qcow2: converting %s: %w", src.Name(), err)
	}
	return c.stats, nil
}

type converter struct {
	dst, src *os.File
	srcFd    int
	size     int64
	bits     int
	cs       int64 // cluster size
	compress bool
	zero     []byte // a cluster of zeros, read only

	clusters   int64 // guest clusters
	l2Entries  int64 // entries per L2 table
	refEntries int64 // refcounts per refcount block
	l1         []uint64
	l1Clusters int64

	pos     int64    // next free byte in dst
	l2      []uint64 // the L2 table being filled
	l2Index int64    // which one; -1 before the first
	l2Used  bool

	pending  map[int64][]uint16 // refcount blocks not yet written, by index
	reftable []uint64           // refcount table: offsets of written blocks

	stats Stats
}

func newConverter(dst, src *os.File, size int64, bits int, compress bool) *converter {
	cs := int64(1) << bits
	c := &converter{
		dst: dst, src: src, srcFd: int(src.Fd()), size: size, bits: bits, cs: cs, compress: compress,
		zero:       make([]byte, cs),
		clusters:   (size + cs - 1) / cs,
		l2Entries:  cs / 8,
		refEntries: cs * 8 / (1 << refcountOrder),
		l2Index:    -1,
		pending:    map[int64][]uint16{},
	}
	c.l1 = make([]uint64, (c.clusters+c.l2Entries-1)/c.l2Entries)
	c.l1Clusters = max(1, (int64(len(c.l1))*8+cs-1)/cs)
	c.l2 = make([]uint64, c.l2Entries)
	c.stats = Stats{VirtualSize: size, Clusters: c.clusters}
	return c
}

// alignPos moves the write position to the next cluster boundary.
func (c *converter) alignPos() { c.pos = (c.pos + c.cs - 1) &^ (c.cs - 1) }

// flushL2 writes the current L2 table, if it maps anything, and then
// every refcount block whose host range lies wholly behind the write
// position.
func (c *converter) flushL2() error {
	if c.l2Index < 0 || !c.l2Used {
		return nil
	}
	c.alignPos()
	if err := c.writeTable(c.l2, c.pos); err != nil {
		return fmt.Errorf("writing L2 table: %w", err)
	}
	c.l1[c.l2Index] = flagCopied | uint64(c.pos)
	c.ref(c.pos>>c.bits, 1)
	c.pos += c.cs
	clear(c.l2)
	c.l2Used = false
	// Each block written may complete the range it lands in.
	for {
		done := int64(-1)
		for r := range c.pending {
			if (r+1)*c.refEntries <= c.pos>>c.bits && (done < 0 || r < done) {
				done = r
			}
		}
		if done < 0 {
			return nil
		}
		if err := c.writeRefBlock(done); err != nil {
			return err
		}
	}
}

// writeRefBlock writes refcount block r at the (aligned) write position.
func (c *converter) writeRefBlock(r int64) error {
	c.ref(c.pos>>c.bits, 1) // the block's own cluster, in a later range
	return c.putRefBlock(r)
}

// putRefBlock writes refcount block r, whose own cluster is already
// counted, at the write position and enters it in the refcount table.
func (c *converter) putRefBlock(r int64) error {
	at := c.pos
	counts := c.pending[r]
	delete(c.pending, r)
	buf := make([]byte, c.cs)
	for i, n := range counts {
		binary.BigEndian.PutUint16(buf[2*i:], n)
	}
	if _, err := c.dst.WriteAt(buf, at); err != nil {
		return fmt.Errorf("writing refcount block: %w", err)
	}
	for int64(len(c.reftable)) <= r {
		c.reftable = append(c.reftable, 0)
	}
	c.reftable[r] = uint64(at)
	c.pos += c.cs
	return nil
}

// ref adds one reference to each of n host clusters from cluster k on.
func (c *converter) ref(k, n int64) {
	for ; n > 0; k, n = k+1, n-1 {
		r := k / c.refEntries
		b := c.pending[r]
		if b == nil {
			b = make([]uint16, c.refEntries)
			c.pending[r] = b
		}
		b[k%c.refEntries]++ // cannot wrap: a cluster holds far fewer than 65535 deflated clusters
	}
}

// finish writes the last L2 table, the refcount structures, the L1
// table and the header.
func (c *converter) finish() error {
	if err := c.flushL2(); err != nil {
		return err
	}
	c.alignPos()
	// The refcount table and the remaining blocks go at the end; they
	// must count themselves, so find how many are needed.
	at := c.pos >> c.bits
	firstRange := at / c.refEntries
	tableClusters, blocks := int64(1), int64(1)
	for {
		end := at + tableClusters + blocks // exclusive, in clusters
		lastRange := (end - 1) / c.refEntries
		b := lastRange - firstRange + 1
		t := ((lastRange+1)*8 + c.cs - 1) / c.cs
		if b == blocks && t == tableClusters {
			break
		}
		blocks, tableClusters = b, t
	}
	// Every range from firstRange on holds some of these clusters, so
	// counting them creates all the blocks still to write.
	tablePos := c.pos
	c.ref(at, tableClusters+blocks)
	c.pos += tableClusters * c.cs
	for r := firstRange; r < firstRange+blocks; r++ {
		if err := c.putRefBlock(r); err != nil {
			return err
		}
	}
	if len(c.pending) != 0 {
		return fmt.Errorf("internal error: %d refcount blocks left unwritten", len(c.pending))
	}
	table := make([]uint64, tableClusters*c.cs/8)
	copy(table, c.reftable)
	if err := c.writeTable(table, tablePos); err != nil {
		return fmt.Errorf("writing refcount table: %w", err)
	}
	l1 := make([]uint64, c.l1Clusters*c.cs/8)
	copy(l1, c.l1)
	if err := c.writeTable(l1, c.cs); err != nil {
		return fmt.Errorf("writing L1 table: %w", err)
	}
	if err := c.writeHeader(tablePos, tableClusters); err != nil {
		return err
	}
	c.stats.FileSize = c.pos
	return nil
}

func (c *converter) writeTable(t []uint64, at int64) error {
	buf := make([]byte, 8*len(t))
	for i, v := range t {
		binary.BigEndian.PutUint64(buf[8*i:], v)
	}
	_, err := c.dst.WriteAt(buf, at)
	return err
}

func (c *converter) writeHeader(reftable, reftableClusters int64) error {
	h := make([]byte, headerLength+8) // + the end-of-extensions marker
	be := binary.BigEndian
	be.PutUint32(h[0:], magic)
	be.PutUint32(h[4:], version)
	// 8: backing file offset, 16: its size: none
	be.PutUint32(h[20:], uint32(c.bits))
	be.PutUint64(h[24:], uint64(c.size))
	// 32: no encryption
	be.PutUint32(h[36:], uint32(len(c.l1)))
	be.PutUint64(h[40:], uint64(c.cs)) // L1 table offset
	be.PutUint64(h[48:], uint64(reftable))
	be.PutUint32(h[56:], uint32(reftableClusters))
	// 60: no snapshots; 72, 80, 88: no incompatible, compatible or autoclear features
	be.PutUint32(h[96:], refcountOrder)
	be.PutUint32(h[100:], headerLength)
	// 104: compression type 0, zlib; then padding and the zero extension marker
	if _, err := c.dst.WriteAt(h, 0); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	return nil
}
