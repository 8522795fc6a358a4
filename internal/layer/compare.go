package layer

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Compare reports, as an error naming the first path that differs,
// whether the tree dir is not what Apply with ApplyOptions.Overlay makes
// of the layer read from r: the same names, types, modes, owners, sizes,
// contents, link targets, device numbers, extended attributes, whiteouts
// and opaque directories. Times are not compared (a layer's may be
// clamped to SOURCE_DATE_EPOCH). When not running as root, owners,
// device nodes and trusted.* attributes are left out too, since a
// rootless Apply cannot set them. It returns nil when the two agree.
func Compare(r io.Reader, dir string) error {
	rd, closeFn, err := decompress(r)
	if err != nil {
		return err
	}
	defer closeFn()
	lenient := os.Geteuid() != 0
	want, err := summarize(rd, lenient)
	if err != nil {
		return fmt.Errorf("reading the layer: %w", err)
	}
	got, err := summarizeTree(dir, true, lenient)
	if err != nil {
		return err
	}
	return compareSummaries(want, got, "the layer")
}

// CompareTrees reports, as an error naming the first path that differs,
// whether the plain trees want and got differ, in what Compare compares.
func CompareTrees(want, got string) error {
	lenient := os.Geteuid() != 0
	w, err := summarizeTree(want, false, lenient)
	if err != nil {
		return err
	}
	g, err := summarizeTree(got, false, lenient)
	if err != nil {
		return err
	}
	return compareSummaries(w, g, "the expected tree")
}

// summarizeTree summarizes the layer that WriteTree (or, with diff,
// WriteDiff) makes of dir.
func summarizeTree(dir string, diff, lenient bool) ([]entrySummary, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw, dir, Options{}, diff)) }()
	out, err := summarize(pr, lenient)
	pr.CloseWithError(io.ErrClosedPipe) // stop the writer if we stopped early
	return out, err
}

// compareSummaries names the first difference between want (from
// source) and got.
func compareSummaries(want, got []entrySummary, source string) error {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j == len(got) || (i < len(want) && want[i].name < got[j].name):
			return fmt.Errorf("%s is missing", want[i].name)
		case i == len(want) || got[j].name < want[i].name:
			return fmt.Errorf("%s is not in %s", got[j].name, source)
		case want[i].what != got[j].what:
			return fmt.Errorf("%s differs: %s has %s, the tree %s", want[i].name, source, want[i].what, got[j].what)
		}
		i, j = i+1, j+1
	}
	return nil
}

// entrySummary is what Compare compares of one tar entry, and its
// modification time, which only DiffArchives compares.
type entrySummary struct {
	name  string
	what  string
	mtime time.Time
}

// summarize lists a layer's entries, sorted by name, each described
// without its times.
func summarize(r io.Reader, lenient bool) ([]entrySummary, error) {
	var out []entrySummary
	tr := tar.NewReader(r)
	h := sha256.New()
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := cleanName(hdr.Name)
		if err != nil || name == "" {
			continue // Apply writes nothing for these
		}
		if _, base := splitRel(name); strings.HasPrefix(base, whiteoutPrefix) {
			// Only its name means anything to Apply.
			out = append(out, entrySummary{name: name, what: "whiteout"})
			continue
		}
		typ := hdr.Typeflag
		if typ == tar.TypeRegA || typ == tar.TypeGNUSparse {
			typ = tar.TypeReg
		}
		if lenient && (typ == tar.TypeChar || typ == tar.TypeBlock) {
			continue
		}
		var xattrs []string
		for k, v := range hdr.PAXRecords {
			x, ok := strings.CutPrefix(k, "SCHILY.xattr.")
			if ok && !isOverlayXattr(x) && !(lenient && strings.HasPrefix(x, "trusted.")) {
				xattrs = append(xattrs, fmt.Sprintf("%s=%q", x, v))
			}
		}
		sort.Strings(xattrs)
		what := fmt.Sprintf("type %c mode %04o", typ, hdr.Mode&0o7777)
		if !lenient {
			what += fmt.Sprintf(" owner %d:%d", hdr.Uid, hdr.Gid)
		}
		switch typ {
		case tar.TypeReg:
			h.Reset()
			if _, err := io.Copy(h, tr); err != nil {
				return nil, err
			}
			what += fmt.Sprintf(" %d bytes sha256:%x", hdr.Size, h.Sum(nil))
		case tar.TypeLink:
			target, _ := cleanName(hdr.Linkname)
			what += fmt.Sprintf(" -> %q", target)
		case tar.TypeSymlink:
			what += fmt.Sprintf(" -> %q", hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock:
			what += fmt.Sprintf(" device %d,%d", hdr.Devmajor, hdr.Devminor)
		}
		if len(xattrs) > 0 {
			what += " xattrs " + strings.Join(xattrs, " ")
		}
		out = append(out, entrySummary{name: name, what: what, mtime: hdr.ModTime})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// FileDiff is one path in which two archives differ: only in A, only
// in B, or in both with another type, mode, owner, content, link
// target, device, extended attributes or modification time.
type FileDiff struct {
	Path string `json:"path"`
	// A and B describe the entry in each archive; empty: absent.
	A string `json:"a,omitempty"`
	B string `json:"b,omitempty"`
}

// DiffArchives lists every path in which the tar archives a and b
// (each plain, gzip or zstd) differ, in path order: what a user needs
// to see of two artifacts that should have been bit-identical.
func DiffArchives(a, b io.Reader) ([]FileDiff, error) {
	var sums [2][]entrySummary
	for i, r := range []io.Reader{a, b} {
		rd, closeFn, err := decompress(r)
		if err != nil {
			return nil, err
		}
		sums[i], err = summarize(rd, false)
		closeFn()
		if err != nil {
			return nil, fmt.Errorf("reading archive %c: %w", 'A'+i, err)
		}
	}
	describe := func(e entrySummary) string {
		return e.what + " mtime " + e.mtime.UTC().Format(time.RFC3339Nano)
	}
	var out []FileDiff
	x, y := sums[0], sums[1]
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case j == len(y) || (i < len(x) && x[i].name < y[j].name):
			out = append(out, FileDiff{Path: x[i].name, A: describe(x[i])})
			i++
		case i == len(x) || y[j].name < x[i].name:
			out = append(out, FileDiff{Path: y[j].name, B: describe(y[j])})
			j++
		default:
			if x[i].what != y[j].what || !x[i].mtime.Equal(y[j].mtime) {
				out = append(out, FileDiff{Path: x[i].name, A: describe(x[i]), B: describe(y[j])})
			}
			i, j = i+1, j+1
		}
	}
	return out, nil
}
