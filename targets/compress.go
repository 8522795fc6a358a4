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

const (
	// gzipBlocks bounds the blocks pgzip compresses at once (each holds
	// about 4 MiB with its output and compressor).
	gzipBlocks = 8
	// zstdWindow is the zstd window. It decides the bytes (the number of
	// workers does not) and the memory: each job is four windows of
	// input, and with zstd -3's 2 MiB window four workers took fgimg past
	// 250 MiB, eight past 470 MiB. 1 MiB makes files under 2% larger.
	zstdWindow  = 1 << 20
	zstdWorkers = 4
)

// newGzip returns a parallel gzip writer whose output depends only on
// what is written: no name, no time, fixed block size and level.
func newGzip(w io.Writer) (io.WriteCloser, error) {
	zw, err := pgzip.NewWriterLevel(w, pgzip.DefaultCompression)
	if err != nil {
		return nil, fmt.Errorf("starting gzip: %w", err)
	}
	if err := zw.SetConcurrency(gzipBlockSize, min(max(runtime.GOMAXPROCS(0), 1), gzipBlocks)); err != nil {
		return nil, fmt.Errorf("starting gzip: %w", err)
	}
	return zw, nil
}

// newZstd returns a parallel zstd writer. With concurrent blocks the input
// is cut into fixed-size jobs, each compressed with a fixed overlap from
// the one before, so the output does not depend on the number of workers;
// at least two keep that mode on (one worker would switch it off and
// change the bytes), at most zstdWorkers, with a 1 MiB window, keep
// fgimg's peak memory near 160 MiB.
func newZstd(w io.Writer) (io.WriteCloser, error) {
	zw, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithEncoderConcurrency(min(max(runtime.GOMAXPROCS(0), 2), zstdWorkers)),
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
