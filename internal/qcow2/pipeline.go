package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

// Cluster kinds in a job.
const (
	kindZero = iota
	kindData
	kindDeflated
)

// job is a run of consecutive guest clusters, all under one L2 table.
type job struct {
	first int64  // first guest cluster
	n     int    // clusters
	in    []byte // the n clusters' raw bytes
	out   []byte // deflated clusters, back to back
	kind  []uint8
	cend  []int32 // end of each deflated cluster in out
	ops   []op    // the writes that store the allocated clusters
	err   error
	done  chan struct{}
}

// op is one write: bufs back to back at at. A run of data clusters is
// one buf, src's bytes from from on; deflated clusters have from -1.
type op struct {
	at, from int64
	bufs     [][]byte
}

func (o *op) len() (n int64) {
	for _, b := range o.bufs {
		n += int64(len(b))
	}
	return n
}

// writers is the number of goroutines writing data clusters.
const writers = 2

// run converts with a pipeline of goroutines. The planner walks src's
// data extents and makes jobs in guest order; workers read, scan and
// compress them in any order; the calling goroutine lays them out in
// guest order (host offsets, L2 entries, refcounts) and hands them to
// writers. A fixed pool of jobs bounds the memory in flight.
//
// (Reading and writing through 1 MiB buffers beat both mapping src and
// copy_file_range, measured on ext4: those cost more in page tables and
// splicing than the copies they save.)
func (c *converter) run(ctx context.Context, workers int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	perJob := max(1, jobBytes/int(c.cs))
	pool := make([]*job, 2*workers+2*writers+2)
	free := make(chan *job, len(pool))
	for i := range pool {
		j := &job{in: make([]byte, perJob*int(c.cs)), kind: make([]uint8, perJob), cend: make([]int32, perJob)}
		if c.compress {
			j.out = make([]byte, 0, perJob*int(c.cs))
		}
		pool[i] = j
		free <- j
	}
	// Every job fits in every channel at once: sends never block.
	ordered := make(chan *job, len(pool))
	work := make(chan *job, len(pool))
	writes := make(chan *job, len(pool))

	var wg, wwg sync.WaitGroup
	wg.Go(func() {
		if err := c.plan(ctx, free, ordered, work); err != nil {
			cancel(err)
		}
	})
	for range workers {
		wg.Go(func() { c.scan(ctx, work) })
	}
	dstFd := int(c.dst.Fd())
	for range writers {
		wwg.Go(func() {
			for j := range writes {
				if err := c.write(dstFd, j); err != nil {
					cancel(err)
				}
				free <- j
			}
		})
	}
	err := c.layoutAll(ctx, ordered, writes)
	close(writes)
	wwg.Wait()
	if err != nil {
		cancel(err)
	}
	wg.Wait() // the planner and workers use src and the jobs
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		return err
	}
	return c.finish()
}

// layoutAll lays out the jobs in guest order and sends them to writes.
func (c *converter) layoutAll(ctx context.Context, ordered <-chan *job, writes chan<- *job) error {
	c.pos = (1 + c.l1Clusters) * c.cs
	c.ref(0, 1+c.l1Clusters)
	for j := range ordered {
		select {
		case <-j.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if j.err != nil {
			return j.err
		}
		if err := c.layout(j); err != nil {
			return err
		}
		writes <- j
	}
	return context.Cause(ctx) // nil unless the planner failed
}

// plan walks src's data extents and sends jobs for the clusters they
// touch to ordered (in guest order, for the layout) and work (for the
// workers).
func (c *converter) plan(ctx context.Context, free <-chan *job, ordered, work chan<- *job) error {
	defer close(work)
	defer close(ordered)
	fd := c.srcFd
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL)
	perJob := max(1, jobBytes/c.cs)
	for pos := int64(0); pos < c.size; {
		start, end, err := dataExtent(fd, pos, c.size)
		if err != nil {
			return err
		}
		if start >= end {
			break
		}
		first := start / c.cs
		last := min((end+c.cs-1)/c.cs, c.clusters) // exclusive
		for g := first; g < last; {
			n := min(perJob, last-g, c.l2Entries-g%c.l2Entries)
			var j *job
			select {
			case j = <-free:
			case <-ctx.Done():
				return nil
			}
			j.first, j.n, j.err = g, int(n), nil
			j.ops = j.ops[:0]
			j.done = make(chan struct{})
			ordered <- j
			work <- j
			g += n
		}
		pos = last * c.cs
	}
	return nil
}

// dataExtent finds the first run of data at or after pos: [start, end).
// start == end means there is none. Without SEEK_DATA support the whole
// rest of the file counts as data.
func dataExtent(fd int, pos, size int64) (start, end int64, err error) {
	start, err = unix.Seek(fd, pos, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
		return pos, size, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("seeking data: %w", err)
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, fmt.Errorf("seeking hole: %w", err)
	}
	return start, min(end, size), nil
}

// scan reads each job's clusters and classifies (and, compressing,
// deflates) them.
func (c *converter) scan(ctx context.Context, work <-chan *job) {
	cs := int(c.cs)
	var fw *flate.Writer
	var scratch bytes.Buffer
	if c.compress {
		var err error
		fw, err = flate.NewWriterWindow(&scratch, deflateWindow)
		if err != nil {
			panic(err) // deflateWindow is within the allowed range
		}
		scratch.Grow(cs + cs/8)
	}
	for j := range work {
		if ctx.Err() == nil {
			j.err = c.scanJob(j, fw, &scratch)
		}
		close(j.done)
	}
}

func (c *converter) scanJob(j *job, fw *flate.Writer, scratch *bytes.Buffer) error {
	cs := int(c.cs)
	buf := j.in[:j.n*cs]
	off := j.first * c.cs
	m, err := c.src.ReadAt(buf, off)
	if err != nil && !(err == io.EOF && off+int64(m) == c.size) {
		return fmt.Errorf("reading at %d: %w", off, err)
	}
	clear(buf[m:]) // the last cluster's tail past the end of src
	j.out = j.out[:0]
	for i := range j.n {
		data := buf[i*cs : (i+1)*cs]
		switch {
		case bytes.Equal(data, c.zero):
			j.kind[i] = kindZero
		case !c.compress:
			j.kind[i] = kindData
		default:
			scratch.Reset()
			fw.Reset(scratch)
			if _, err := fw.Write(data); err != nil {
				return fmt.Errorf("compressing cluster %d: %w", j.first+int64(i), err)
			}
			if err := fw.Close(); err != nil {
				return fmt.Errorf("compressing cluster %d: %w", j.first+int64(i), err)
			}
			if scratch.Len() <= cs-512 {
				j.kind[i] = kindDeflated
				j.out = append(j.out, scratch.Bytes()...)
				j.cend[i] = int32(len(j.out))
			} else {
				j.kind[i] = kindData
			}
		}
	}
	return nil
}

// layout places a job's allocated clusters at the write position
// (j.ops), records them in the L2 table and the refcounts, and first
// writes the previous L2 table if the job starts a new one.
func (c *converter) layout(j *job) error {
	if idx := j.first / c.l2Entries; idx != c.l2Index {
		if err := c.flushL2(); err != nil {
			return err
		}
		c.l2Index = idx
	}
	cs := c.cs
	cstart := int32(0)
	for i := range j.n {
		g := j.first + int64(i)
		var last *op
		if len(j.ops) > 0 {
			last = &j.ops[len(j.ops)-1]
		}
		switch j.kind[i] {
		case kindData:
			// After deflated data the rest of the cluster stays a hole.
			c.alignPos()
			data := j.in[int64(i)*cs : int64(i+1)*cs]
			if last != nil && last.from >= 0 && last.at+last.len() == c.pos && last.from+last.len() == g*cs {
				b := last.bufs[0]
				last.bufs[0] = b[:len(b)+int(cs)] // the next cluster of j.in
			} else {
				j.ops = append(j.ops, op{at: c.pos, from: g * cs, bufs: [][]byte{data}})
			}
			c.l2[g%c.l2Entries] = flagCopied | uint64(c.pos)
			c.ref(c.pos>>c.bits, 1)
			c.pos += cs
			c.stats.Data++
		case kindDeflated:
			b := j.out[cstart:j.cend[i]]
			cstart = j.cend[i]
			if last != nil && last.from < 0 && last.at+last.len() == c.pos {
				last.bufs = append(last.bufs, b)
			} else {
				j.ops = append(j.ops, op{at: c.pos, from: -1, bufs: [][]byte{b}})
			}
			first := c.pos &^ 511
			lastSector := (c.pos + int64(len(b)) - 1) &^ 511
			extra := uint64(lastSector-first) / 512
			shift := 62 - (c.bits - 8)
			c.l2[g%c.l2Entries] = flagCompressed | extra<<shift | uint64(c.pos)
			// QEMU counts one reference per host cluster the sectors touch.
			c.ref(first>>c.bits, (lastSector>>c.bits)-(first>>c.bits)+1)
			c.pos += int64(len(b))
			c.stats.Compressed++
		default:
			continue
		}
		c.l2Used = true
	}
	return nil
}

// write stores a job's clusters.
func (c *converter) write(fd int, j *job) error {
	for i := range j.ops {
		if err := writev(fd, j.ops[i].bufs, j.ops[i].at); err != nil {
			return err
		}
	}
	return nil
}

// writev writes bufs back to back at off.
func writev(fd int, bufs [][]byte, off int64) error {
	for len(bufs) > 0 {
		n, err := unix.Pwritev(fd, bufs, off)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("writing at %d: %w", off, err)
		}
		off += int64(n)
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
	return nil
}
