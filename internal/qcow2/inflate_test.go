package qcow2

import (
	"errors"
	"fmt"
)

// inflate is a small, slow RFC 1951 decoder (after zlib's puff.c) that
// also reports the longest back reference, so tests can check that
// deflated clusters stay within QEMU's 4 KiB window. It decodes the whole
// stream and fails unless it yields exactly n bytes.
func inflate(in []byte, n int) (out []byte, maxDist int, err error) {
	r := &bitReader{b: in}
	out = make([]byte, 0, n)
	for last := false; !last; {
		if last, err = r.bit(); err != nil {
			return nil, 0, err
		}
		typ, err := r.bits(2)
		if err != nil {
			return nil, 0, err
		}
		switch typ {
		case 0:
			r.n, r.nbits = 0, 0 // to a byte boundary
			if r.pos+4 > len(in) {
				return nil, 0, errors.New("stored block header past the end")
			}
			ln := int(in[r.pos]) | int(in[r.pos+1])<<8
			nln := int(in[r.pos+2]) | int(in[r.pos+3])<<8
			if ln != ^nln&0xffff {
				return nil, 0, errors.New("stored block length mismatch")
			}
			r.pos += 4
			if r.pos+ln > len(in) {
				return nil, 0, errors.New("stored block past the end")
			}
			out = append(out, in[r.pos:r.pos+ln]...)
			r.pos += ln
		case 1:
			out, maxDist, err = r.codes(out, maxDist, fixedLit, fixedDist)
		case 2:
			var lit, dist *huff
			if lit, dist, err = r.dynamic(); err == nil {
				out, maxDist, err = r.codes(out, maxDist, lit, dist)
			}
		default:
			return nil, 0, errors.New("invalid block type 3")
		}
		if err != nil {
			return nil, 0, err
		}
	}
	if len(out) != n {
		return nil, 0, fmt.Errorf("inflated %d bytes, want %d", len(out), n)
	}
	return out, maxDist, nil
}

type bitReader struct {
	b     []byte
	pos   int
	n     uint32 // bit buffer
	nbits uint
}

func (r *bitReader) bits(need uint) (uint32, error) {
	for r.nbits < need {
		if r.pos >= len(r.b) {
			return 0, errors.New("deflate stream ends early")
		}
		r.n |= uint32(r.b[r.pos]) << r.nbits
		r.pos++
		r.nbits += 8
	}
	v := r.n & (1<<need - 1)
	r.n >>= need
	r.nbits -= need
	return v, nil
}

func (r *bitReader) bit() (bool, error) {
	v, err := r.bits(1)
	return v == 1, err
}

// huff is a canonical Huffman code: codes per length, symbols by code.
type huff struct {
	count  [16]int
	symbol []int
}

func newHuff(lengths []int) *huff {
	h := &huff{symbol: make([]int, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	h.count[0] = 0
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = sym
			offs[l]++
		}
	}
	return h
}

func (r *bitReader) decode(h *huff) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= 15; l++ {
		b, err := r.bits(1)
		if err != nil {
			return 0, err
		}
		code |= int(b)
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+code-first], nil
		}
		index += count
		first = (first + count) << 1
		code <<= 1
	}
	return 0, errors.New("invalid Huffman code")
}

var (
	lenBase   = []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra  = []uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase  = []int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = []uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}

	fixedLit, fixedDist = func() (*huff, *huff) {
		l := make([]int, 288)
		for i := range l {
			switch {
			case i < 144:
				l[i] = 8
			case i < 256:
				l[i] = 9
			case i < 280:
				l[i] = 7
			default:
				l[i] = 8
			}
		}
		d := make([]int, 30)
		for i := range d {
			d[i] = 5
		}
		return newHuff(l), newHuff(d)
	}()
)

func (r *bitReader) codes(out []byte, maxDist int, lit, dist *huff) ([]byte, int, error) {
	for {
		sym, err := r.decode(lit)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case sym < 256:
			out = append(out, byte(sym))
			continue
		case sym == 256:
			return out, maxDist, nil
		case sym > 285:
			return nil, 0, errors.New("invalid length symbol")
		}
		sym -= 257
		e, err := r.bits(lenExtra[sym])
		if err != nil {
			return nil, 0, err
		}
		length := lenBase[sym] + int(e)
		ds, err := r.decode(dist)
		if err != nil {
			return nil, 0, err
		}
		if ds > 29 {
			return nil, 0, errors.New("invalid distance symbol")
		}
		e, err = r.bits(distExtra[ds])
		if err != nil {
			return nil, 0, err
		}
		d := distBase[ds] + int(e)
		if d > len(out) {
			return nil, 0, errors.New("distance before the start of the output")
		}
		maxDist = max(maxDist, d)
		for range length {
			out = append(out, out[len(out)-d])
		}
	}
}

func (r *bitReader) dynamic() (*huff, *huff, error) {
	v, err := r.bits(14)
	if err != nil {
		return nil, nil, err
	}
	nlen, ndist, ncode := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	order := []int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	lengths := make([]int, 19)
	for i := range ncode {
		l, err := r.bits(3)
		if err != nil {
			return nil, nil, err
		}
		lengths[order[i]] = int(l)
	}
	lencode := newHuff(lengths)
	lengths = make([]int, nlen+ndist)
	for i := 0; i < nlen+ndist; {
		sym, err := r.decode(lencode)
		if err != nil {
			return nil, nil, err
		}
		if sym < 16 {
			lengths[i] = sym
			i++
			continue
		}
		prev, rep := 0, uint32(0)
		switch sym {
		case 16:
			if i == 0 {
				return nil, nil, errors.New("repeat with no previous length")
			}
			prev = lengths[i-1]
			rep, err = r.bits(2)
			rep += 3
		case 17:
			rep, err = r.bits(3)
			rep += 3
		default:
			rep, err = r.bits(7)
			rep += 11
		}
		if err != nil {
			return nil, nil, err
		}
		if i+int(rep) > nlen+ndist {
			return nil, nil, errors.New("too many code lengths")
		}
		for range rep {
			lengths[i] = prev
			i++
		}
	}
	return newHuff(lengths[:nlen]), newHuff(lengths[nlen:]), nil
}
