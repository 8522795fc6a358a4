package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// ProblemKind classifies a Problem found by Verify.
type ProblemKind string

const (
	// CorruptBlob: a blob's content does not hash to its name, or it
	// cannot be read.
	CorruptBlob ProblemKind = "corrupt blob"
	// MissingBlob: a record names a blob that is not in the store.
	MissingBlob ProblemKind = "missing blob"
	// BadRecord: a record cannot be read, or names a blob with another
	// size than the blob has.
	BadRecord ProblemKind = "bad record"
	// StrayFile: a file under blobs/ or records/ whose name is not a
	// digest, or a file in snapshots/; the store never writes one.
	StrayFile ProblemKind = "stray file"
	// TamperedSnapshot: a snapshot differs from the layer blob it was
	// unpacked from, or that blob is gone. Verify removes it.
	TamperedSnapshot ProblemKind = "tampered snapshot"
)

// Problem is one inconsistency found by Verify.
type Problem struct {
	Kind ProblemKind
	// Path is the file concerned (the blob or record file).
	Path string
	// Digest is the blob's expected digest (CorruptBlob, MissingBlob) or
	// the record's digest (BadRecord).
	Digest digest.Digest
	// Actual is the digest of a corrupt blob's content, if readable.
	Actual digest.Digest
	// Record is the record naming a missing blob.
	Record digest.Digest
	// Detail says more, in words.
	Detail string
}

func (p Problem) String() string {
	switch p.Kind {
	case CorruptBlob:
		if p.Actual != "" {
			return fmt.Sprintf("corrupt blob %s: content hashes to %s", p.Digest, p.Actual)
		}
		return fmt.Sprintf("corrupt blob %s: %s", p.Digest, p.Detail)
	case MissingBlob:
		return fmt.Sprintf("missing blob %s named by record %s (%s)", p.Digest, p.Record, p.Detail)
	case BadRecord:
		return fmt.Sprintf("bad record %s: %s", p.Digest, p.Detail)
	default:
		return fmt.Sprintf("%s %s: %s", p.Kind, p.Path, p.Detail)
	}
}

// Verify rehashes every blob, checks that every blob each record names
// exists with the recorded size, and compares every snapshot with its
// layer blob, removing the snapshots that differ (see verifySnapshots):
// a build that has one mounted meanwhile sees it vanish. The error is for failures that stop verification (such as an
// unreadable directory); what is wrong with the store comes back as
// problems. Verify reads every byte in the store, so it takes a while on
// a big cache.
func (s *Store) Verify() ([]Problem, error) {
	var problems []Problem
	sound, corrupt := map[string]digest.Digest{}, map[string]bool{} // by snapshot name
	entries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return nil, fmt.Errorf("verifying cache: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(s.blobDir(), e.Name())
		want := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if want.Validate() != nil || !e.Type().IsRegular() {
			problems = append(problems, Problem{Kind: StrayFile, Path: p, Detail: "not a blob"})
			continue
		}
		got, err := hashFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // removed meanwhile
		case err != nil:
			problems = append(problems, Problem{Kind: CorruptBlob, Path: p, Digest: want, Detail: err.Error()})
		case got != want:
			problems = append(problems, Problem{Kind: CorruptBlob, Path: p, Digest: want, Actual: got})
		default:
			sound[snapshotName(want)] = want
			continue
		}
		corrupt[snapshotName(want)] = true
	}
	snapProblems, err := s.verifySnapshots(sound, corrupt)
	if err != nil {
		return nil, fmt.Errorf("verifying cache: %w", err)
	}
	problems = append(problems, snapProblems...)

	entries, err = os.ReadDir(s.recordDir())
	if err != nil {
		return nil, fmt.Errorf("verifying cache: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(s.recordDir(), e.Name())
		d, ok := recordName(e.Name())
		if !ok {
			problems = append(problems, Problem{Kind: StrayFile, Path: p, Detail: "not a record"})
			continue
		}
		rec, err := s.readRecord(p, d)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			problems = append(problems, Problem{Kind: BadRecord, Path: p, Digest: d, Detail: err.Error()})
			continue
		}
		check := func(what string, bd digest.Digest, size int64) {
			if checkDigest(bd) != nil {
				problems = append(problems, Problem{Kind: BadRecord, Path: p, Digest: d,
					Detail: fmt.Sprintf("%s has invalid digest %q", what, bd)})
				return
			}
			got, err := s.blobSize(bd)
			switch {
			case err != nil:
				problems = append(problems, Problem{Kind: MissingBlob, Path: s.blobPath(bd), Digest: bd, Record: d, Detail: what})
			case size >= 0 && got != size:
				problems = append(problems, Problem{Kind: BadRecord, Path: p, Digest: d,
					Detail: fmt.Sprintf("%s %s has %d bytes, record says %d", what, bd, got, size)})
			}
		}
		for _, o := range rec.Outputs {
			check(fmt.Sprintf("output %q", o.Name), o.Digest, o.Size)
		}
		if rec.Log != "" {
			check("log", rec.Log, -1)
		}
	}
	return problems, nil
}

func hashFile(p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digest.Canonical.FromReader(f)
}

// Usage is the space taken by a store, as reported by Store.Usage.
type Usage struct {
	Blobs     Tally
	Records   Tally
	Snapshots Tally
}

// Tally counts entries and their bytes: file sizes for blobs and records;
// for snapshots the sizes of the regular files inside, each hard-linked
// file counted once.
type Tally struct {
	Count int
	Bytes int64
}

// Usage measures the store for `fgimg cache du`.
func (s *Store) Usage() (Usage, error) {
	var u Usage
	var err error
	if u.Blobs, err = tallyFiles(s.blobDir()); err != nil {
		return Usage{}, fmt.Errorf("measuring cache: %w", err)
	}
	if u.Records, err = tallyFiles(s.recordDir()); err != nil {
		return Usage{}, fmt.Errorf("measuring cache: %w", err)
	}
	entries, err := os.ReadDir(s.SnapshotsDir())
	if err != nil {
		return Usage{}, fmt.Errorf("measuring cache: %w", err)
	}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		u.Snapshots.Count++
		err := filepath.WalkDir(filepath.Join(s.SnapshotsDir(), e.Name()), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				k := inode{uint64(st.Dev), st.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			u.Snapshots.Bytes += fi.Size()
			return nil
		})
		if err != nil {
			return Usage{}, fmt.Errorf("measuring cache: %w", err)
		}
	}
	return u, nil
}

func tallyFiles(dir string) (Tally, error) {
	var t Tally
	entries, err := os.ReadDir(dir)
	if err != nil {
		return t, err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return t, err
		}
		if fi.Mode().IsRegular() {
			t.Count++
			t.Bytes += fi.Size()
		}
	}
	return t, nil
}
