package targets

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Sparse files. The layers hold every file dense (layer.WriteTree copies
// contents), so Squash finds the holes again: a run of at least minHole
// zero bytes, in whole holeBlock blocks, is written as a hole, in the
// GNU sparse format 1.0 that archive/tar, GNU tar and bsdtar read
// (tar -xS extracts it sparse). archive/tar cannot write that format, so
// its two header blocks are written here. Smaller runs of zeros (the
// padding inside executables) stay data.
const (
	holeBlock = 4 << 10
	minHole   = 64 << 10
)

// segment is a byte range of a file.
type segment struct{ off, len int64 }

// dataSegments reads a file's contents and returns the ranges that hold
// data, the last one ending at the file's size (with length 0 when the
// file ends in a hole), or nil when the file has no hole.
func (s *squasher) dataSegments(ino *inode) ([]segment, error) {
	if ino.offset >= 0 {
		if zero, err := s.probeZero(ino); err != nil || !zero {
			return nil, err
		}
	}
	r, err := s.open(ino)
	if err != nil {
		return nil, err
	}
	var holes []segment
	zeroFrom := int64(-1) // start of the current run of zero blocks
	endRun := func(at int64) {
		if zeroFrom >= 0 && at-zeroFrom >= minHole {
			holes = append(holes, segment{zeroFrom, at - zeroFrom})
		}
		zeroFrom = -1
	}
	var zero [holeBlock]byte
	var off int64
	for off < ino.size {
		n, err := io.ReadFull(r, s.buf[:min(int64(len(s.buf)), ino.size-off)])
		if err != nil {
			return nil, fmt.Errorf("layer %d ends within the file's contents: %w", ino.layer, err)
		}
		for i := 0; i < n; i += holeBlock {
			b := s.buf[i:min(i+holeBlock, n)]
			if bytes.Equal(b, zero[:len(b)]) {
				if zeroFrom < 0 {
					zeroFrom = off + int64(i)
				}
			} else {
				endRun(off + int64(i))
			}
		}
		off += int64(n)
	}
	endRun(ino.size)
	if len(holes) == 0 {
		return nil, nil
	}
	var data []segment
	var pos int64
	for _, h := range holes {
		if h.off > pos {
			data = append(data, segment{pos, h.off - pos})
		}
		pos = h.off + h.len
	}
	return append(data, segment{pos, ino.size - pos}), nil
}

// probeZero says whether a file stored dense in its layer may have a
// hole, reading one holeBlock in every minHole: a hole is at least
// minHole long and starts on a holeBlock boundary, so it covers a whole
// block at a multiple of minHole, and a file none of whose such blocks
// is zero has none. Most large files (programs, libraries, archives)
// are ruled out so, without reading them twice.
func (s *squasher) probeZero(ino *inode) (bool, error) {
	var zero [holeBlock]byte
	b := s.buf[:holeBlock]
	for off := int64(0); off+holeBlock <= ino.size; off += minHole {
		if err := s.ctx.Err(); err != nil {
			return false, err
		}
		if _, err := s.files[ino.layer].ReadAt(b, ino.offset+off); err != nil {
			return false, fmt.Errorf("layer %d ends within the file's contents: %w", ino.layer, err)
		}
		if bytes.Equal(b, zero[:]) {
			return true, nil
		}
	}
	return false, nil
}

// writeSparse writes a regular file as a GNU sparse 1.0 entry: a PAX
// header carrying hdr's records and GNU.sparse.{major,minor,name,
// realsize}, a ustar header named .../GNUSparseFile.0/<name>, then the
// map ("count\n" and "offset\nlength\n" for each data segment, padded to
// a block) and the data segments one after another.
func (s *squasher) writeSparse(tw *tar.Writer, hdr *tar.Header, ino *inode, data []segment) error {
	var sparseMap []byte
	sparseMap = strconv.AppendInt(sparseMap, int64(len(data)), 10)
	sparseMap = append(sparseMap, '\n')
	size := int64(0)
	for _, d := range data {
		sparseMap = strconv.AppendInt(sparseMap, d.off, 10)
		sparseMap = append(sparseMap, '\n')
		sparseMap = strconv.AppendInt(sparseMap, d.len, 10)
		sparseMap = append(sparseMap, '\n')
		size += d.len
	}
	sparseMap = append(sparseMap, make([]byte, blockPad(int64(len(sparseMap))))...)
	size += int64(len(sparseMap))

	records, err := paxRecordsOf(hdr)
	if err != nil {
		return err
	}
	delete(records, "path") // GNU.sparse.name holds the name
	records["GNU.sparse.major"] = "1"
	records["GNU.sparse.minor"] = "0"
	records["GNU.sparse.name"] = hdr.Name
	records["GNU.sparse.realsize"] = strconv.FormatInt(ino.size, 10)
	if size > maxOctal(12) {
		records["size"] = strconv.FormatInt(size, 10)
	}
	var pax strings.Builder
	for _, k := range slices.Sorted(maps.Keys(records)) {
		pax.WriteString(paxRecord(k, records[k]))
	}

	// Let the tar writer finish the entry before, then write around it.
	if err := tw.Flush(); err != nil {
		return err
	}
	dir, file := path.Split(hdr.Name)
	var blocks bytes.Buffer
	blocks.Write(ustarBlock(&tar.Header{Name: path.Join(dir, "PaxHeaders.0", file), Typeflag: tar.TypeXHeader, Size: int64(pax.Len())}))
	blocks.WriteString(pax.String())
	blocks.Write(make([]byte, blockPad(int64(pax.Len()))))
	main := *hdr
	main.Name, main.Size = path.Join(dir, "GNUSparseFile.0", file), size
	blocks.Write(ustarBlock(&main))
	blocks.Write(sparseMap)
	if _, err := s.out.Write(blocks.Bytes()); err != nil {
		return err
	}

	r, err := s.open(ino)
	if err != nil {
		return err
	}
	var pos, written int64
	for _, d := range data {
		if err := s.skip(r, d.off-pos); err != nil {
			return err
		}
		n, err := io.CopyBuffer(s.out, io.LimitReader(r, d.len), s.buf)
		if err != nil {
			return err
		}
		if n != d.len {
			return fmt.Errorf("layer %d ends within the file's contents", ino.layer)
		}
		pos, written = d.off+d.len, written+n
	}
	_, err = s.out.Write(make([]byte, blockPad(written)))
	return err
}

// skip moves r, a reader from open, n bytes on: over a hole in a file
// stored dense it seeks, in an expanded sparse entry it reads.
func (s *squasher) skip(r io.Reader, n int64) error {
	if sk, ok := r.(io.Seeker); ok {
		_, err := sk.Seek(n, io.SeekCurrent)
		return err
	}
	_, err := io.CopyBuffer(io.Discard, io.LimitReader(r, n), s.buf)
	return err
}

// paxRecordsOf returns the PAX records archive/tar writes for hdr
// (xattrs, a long name, large ids, sub-second times), by writing the
// header and reading it back.
func paxRecordsOf(hdr *tar.Header) (map[string]string, error) {
	var b bytes.Buffer
	h := *hdr
	h.Size = 0
	if err := tar.NewWriter(&b).WriteHeader(&h); err != nil {
		return nil, err
	}
	back, err := tar.NewReader(&b).Next()
	if err != nil {
		return nil, err
	}
	records := map[string]string{}
	maps.Copy(records, back.PAXRecords)
	return records, nil
}

// paxRecord formats one "LEN key=value\n" record, LEN counting itself.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3 // ' ', '=', '\n'
	n += len(strconv.Itoa(n))
	rec := strconv.Itoa(n) + " " + k + "=" + v + "\n"
	if len(rec) != n { // the length gained a digit
		rec = strconv.Itoa(len(rec)) + " " + k + "=" + v + "\n"
	}
	return rec
}

func blockPad(n int64) int64 { return -n & 511 }

func maxOctal(width int) int64 { return 1<<(3*(width-1)) - 1 }

// ustarBlock is hdr's ustar header block. Numbers too large for a field
// are left 0: the PAX header before it carries them. Names longer than
// the field are cut: readers take the name from GNU.sparse.name.
func ustarBlock(hdr *tar.Header) []byte {
	b := make([]byte, 512)
	octal := func(field []byte, v int64) {
		if v < 0 || v > maxOctal(len(field)) {
			v = 0
		}
		s := strconv.FormatInt(v, 8)
		copy(field, strings.Repeat("0", len(field)-1-len(s))+s)
	}
	copy(b[0:100], hdr.Name)
	octal(b[100:108], hdr.Mode)
	octal(b[108:116], int64(hdr.Uid))
	octal(b[116:124], int64(hdr.Gid))
	octal(b[124:136], hdr.Size)
	mtime := int64(0)
	if !hdr.ModTime.IsZero() {
		mtime = hdr.ModTime.Unix()
	}
	octal(b[136:148], mtime)
	b[156] = hdr.Typeflag
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := int64(0)
	for _, c := range b {
		sum += int64(c)
	}
	octal(b[148:155], sum)
	b[155] = ' '
	return b
}
