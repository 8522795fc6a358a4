package targets

import (
	"fmt"
	"io"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// gzipBlockSize is pgzip's block size. Output depends on it (and on the
// level) but not on how many blocks are compressed at once, so it is
// fixed while the concurrency follows the machine.
const gzipBlockSize = 1 << 20

// newGzip returns a parallel gzip writer whose output depends only on
// what is written: no name, no time, fixed block size and level.
func newGzip(w io.Writer) (io.WriteCloser, error) {
	zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("starting gzip: %w", err)
	}
	if err := zw.SetConcurrency(gzipBlockSize, max(runtime.GOMAXPROCS(0), 1)); err != nil {
		return nil, fmt.Errorf("starting gzip: %w", err)
	}
	return zw, nil
}

// newZstd returns a parallel zstd writer. With concurrent blocks the input
// is cut into fixed-size jobs, each compressed with a fixed overlap from
// the one before, so the output does not depend on the number of workers;
// at least two keep that mode on (one worker would switch it off and
// change the bytes), at most eight bound the memory jobs hold.
func newZstd(w io.Writer) (io.WriteCloser, error) {
	zw, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(min(max(runtime.GOMAXPROCS(0), 2), 8)),
		zstd.WithConcurrentBlocks(true),
		zstd.WithEncoderCRC(true),
	)
	if err != nil {
		return nil, fmt.Errorf("starting zstd: %w", err)
	}
	return zw, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// compression describes one value of Spec.Compression.
type compression struct {
	suffix    string // file name suffix
	mediaType string
	open      func(io.Writer) (io.WriteCloser, error)
}

func compressionFor(name string) (compression, error) {
	const tarType = "application/vnd.oci.image.layer.v1.tar"
	switch name {
	case "gzip", "": // gzip is the language's default
		return compression{".gz", tarType + "+gzip", newGzip}, nil
	case "zstd":
		return compression{".zst", tarType + "+zstd", newZstd}, nil
	case "none":
		return compression{"", tarType, func(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }}, nil
	}
	return compression{}, fmt.Errorf("unknown compression %q (want gzip, zstd or none)", name)
}
