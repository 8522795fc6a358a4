package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/opencontainers/go-digest"
)

// Deep pedigrees are mounted through flat snapshots. The kernel takes at
// most 500 overlay lower dirs, all in one page of mount options; a chain
// longer than flatStep layers is mounted as one flat snapshot of its
// bottom layers (the first multiple of flatStep of them) with the rest
// above it. Cutting at multiples of flatStep lets every stage of a deep
// pedigree share the same few flat snapshots.
const flatStep = 100

// flatPrefix names flat snapshots in snapshots/; flat-<hex>.layers beside
// each lists the layers it holds, bottom first, so verify can check it.
const flatPrefix = "flat-"

// LowerDirs returns the overlay lower dirs, topmost first and relative to
// SnapshotsDir, that stack the layers given topmost first: each layer's
// Snapshot (unpacked with unpack), or, below the top flatStep or fewer,
// one flat snapshot of the rest. Layers that are byte-identical (two
// commands that change nothing, say) share one snapshot, which overlayfs
// refuses to stack twice; only its topmost place is kept, which leaves
// the merged view as it was, since the copy above holds the same files
// and whiteouts as the one below.
func (s *Store) LowerDirs(layers []digest.Digest, unpack func(r io.Reader, dir string) error) ([]string, error) {
	top := layers
	var flat string
	if n := len(layers); n > flatStep {
		bottom := flatStep * ((n - 1) / flatStep)
		top = layers[:n-bottom]
		var err error
		if flat, err = s.flatSnapshot(reversed(layers[n-bottom:])); err != nil {
			return nil, err
		}
	}
	var lower []string
	seen := map[digest.Digest]bool{}
	for _, l := range top {
		if seen[l] {
			continue
		}
		seen[l] = true
		dir, err := s.Snapshot(l, unpack)
		if err != nil {
			return nil, err
		}
		lower = append(lower, filepath.Base(dir))
	}
	if flat != "" {
		lower = append(lower, filepath.Base(flat))
	}
	return lower, nil
}

func reversed(l []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(l))
	for i, d := range l {
		out[len(l)-1-i] = d
	}
	return out
}

// flatKey identifies the flat snapshot of layers (bottom first).
func flatKey(layers []digest.Digest) digest.Digest {
	var b strings.Builder
	b.WriteString("fgimg flat snapshot\n")
	for _, l := range layers {
		b.WriteString(l.String() + "\n")
	}
	return digest.FromString(b.String())
}

// flatSnapshot returns a directory holding layers (bottom first) applied
// in order into one plain root filesystem, for use as the bottom overlay
// lower dir; it is made once, like a Snapshot.
func (s *Store) flatSnapshot(layers []digest.Digest) (string, error) {
	key := flatKey(layers)
	dir := filepath.Join(s.SnapshotsDir(), flatPrefix+snapshotName(key))
	err := s.makeSnapshot(dir, key, func(tmp string) error {
		if err := s.applyLayers(layers, tmp); err != nil {
			return err
		}
		var list strings.Builder
		for _, l := range layers {
			list.WriteString(l.String() + "\n")
		}
		return s.writeFileAtomic(dir+".layers", []byte(list.String()))
	})
	if err != nil {
		return "", fmt.Errorf("flat snapshot of %d layers: %w", len(layers), err)
	}
	return dir, nil
}

// applyLayers applies the layer blobs (bottom first) to dir as a plain
// tree: whiteouts delete.
func (s *Store) applyLayers(layers []digest.Digest, dir string) error {
	for _, l := range layers {
		f, err := s.OpenBlob(l)
		if err != nil {
			return err
		}
		err = layer.Apply(f, dir, layer.ApplyOptions{})
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// flatLayers reads the list of layers a flat snapshot was made from.
func (s *Store) flatLayers(name string) ([]digest.Digest, error) {
	b, err := os.ReadFile(filepath.Join(s.SnapshotsDir(), name+".layers"))
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, line := range strings.Fields(string(b)) {
		d := digest.Digest(line)
		if err := checkDigest(d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("lists no layers")
	}
	return out, nil
}
