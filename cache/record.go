package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fgimg/fgimg/internal/atomicfile"
	"github.com/opencontainers/go-digest"
)

// recordVersion is the format version written into every record file.
const recordVersion = 1

// Record is what the store knows about one built stage or target.
type Record struct {
	// Digest is the stage (or target) digest computed by the planner.
	Digest digest.Digest `json:"digest"`
	// Kind is the stage kind ("bootstrap", "packages", …) or target kind.
	Kind string `json:"kind"`
	// Inputs are the digests of the stages this one was built from.
	Inputs []digest.Digest `json:"inputs,omitempty"`
	// Outputs are the result blobs: one layer for a stage, one or more
	// artifacts for a target.
	Outputs []Output `json:"outputs"`
	// Info holds extras, e.g. a resolved OCI manifest digest.
	Info map[string]string `json:"info,omitempty"`
	// Created is when the record was written; PutRecord fills it in
	// when zero.
	Created time.Time `json:"created"`
	// Duration is how long the build took.
	Duration time.Duration `json:"duration_ns"`
	// Log is the digest of the build log blob, if one was kept.
	Log digest.Digest `json:"log,omitempty"`
}

// Output is one result blob of a Record.
type Output struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"media_type,omitempty"`
}

// recordFile is the on-disk form of a Record.
type recordFile struct {
	Version int `json:"version"`
	Record
}

// PutRecord stores rec under rec.Digest, replacing any earlier record.
// Every blob it names (outputs and log) must already be committed, with
// the recorded sizes; PutRecord checks this, so a record never points at
// nothing. The write is atomic and durable.
//
// Callers that may race with other builders of the same digest should
// hold Lock(rec.Digest).
func (s *Store) PutRecord(rec Record) error {
	if err := s.checkRecord(rec); err != nil {
		return fmt.Errorf("writing record %s: %w", rec.Digest, err)
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC()
	}
	data, err := json.MarshalIndent(recordFile{Version: recordVersion, Record: rec}, "", "  ")
	if err != nil {
		return fmt.Errorf("writing record %s: %w", rec.Digest, err)
	}
	if err := s.writeFileAtomic(s.recordPath(rec.Digest), append(data, '\n')); err != nil {
		return fmt.Errorf("writing record %s: %w", rec.Digest, err)
	}
	return nil
}

func (s *Store) checkRecord(rec Record) error {
	if err := checkDigest(rec.Digest); err != nil {
		return err
	}
	for _, in := range rec.Inputs {
		if err := checkDigest(in); err != nil {
			return fmt.Errorf("input: %w", err)
		}
	}
	for _, o := range rec.Outputs {
		if err := s.checkBlob(o.Digest, o.Size); err != nil {
			return fmt.Errorf("output %q: %w", o.Name, err)
		}
	}
	if rec.Log != "" {
		if _, err := s.blobSize(rec.Log); err != nil {
			return fmt.Errorf("log: %w", err)
		}
	}
	return nil
}

// checkBlob checks that blob d is committed with the given size.
func (s *Store) checkBlob(d digest.Digest, size int64) error {
	got, err := s.blobSize(d)
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("blob %s has %d bytes, not %d", d, got, size)
	}
	return nil
}

// writeFileAtomic writes data to path through a fsynced temporary file
// in the scratch directory and a rename.
func (s *Store) writeFileAtomic(path string, data []byte) error {
	dir, err := s.scratch()
	if err != nil {
		return err
	}
	return atomicfile.Write(dir, path, data, 0o644)
}

// Record returns the record of digest d. A missing record gives an error
// that matches fs.ErrNotExist.
func (s *Store) Record(d digest.Digest) (Record, error) {
	if err := checkDigest(d); err != nil {
		return Record{}, fmt.Errorf("reading record: %w", err)
	}
	return s.readRecord(s.recordPath(d), d)
}

func (s *Store) readRecord(path string, d digest.Digest) (Record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Record{}, fmt.Errorf("reading record %s: %w", d, err)
	}
	var rf recordFile
	if err := json.Unmarshal(data, &rf); err != nil {
		return Record{}, fmt.Errorf("reading record %s: %s: %w", d, path, err)
	}
	if rf.Version != recordVersion {
		return Record{}, fmt.Errorf("reading record %s: %s: unsupported format version %d", d, path, rf.Version)
	}
	if rf.Digest != d {
		return Record{}, fmt.Errorf("reading record %s: %s names digest %q", d, path, rf.Digest)
	}
	return rf.Record, nil
}

// Has reports whether d has a complete record whose output blobs all
// exist with their recorded sizes: the planner's cache-hit test.
func (s *Store) Has(d digest.Digest) bool {
	rec, err := s.Record(d)
	if err != nil {
		return false
	}
	for _, o := range rec.Outputs {
		if s.checkBlob(o.Digest, o.Size) != nil {
			return false
		}
	}
	return true
}

// Records returns every record, oldest first. Records that cannot be
// read are left out and reported, all together, in the error, so a
// caller may list the rest.
func (s *Store) Records() ([]Record, error) {
	entries, err := os.ReadDir(s.recordDir())
	if err != nil {
		return nil, fmt.Errorf("listing records: %w", err)
	}
	var recs []Record
	var errs []error
	for _, e := range entries {
		d, ok := recordName(e.Name())
		if !ok {
			continue // not a record (stray file)
		}
		rec, err := s.readRecord(filepath.Join(s.recordDir(), e.Name()), d)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b Record) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	if len(errs) > 0 {
		return recs, fmt.Errorf("listing records: %w", errors.Join(errs...))
	}
	return recs, nil
}

// Remove deletes the record of d; its blobs stay until a gc removes
// them. A missing record gives an error that matches fs.ErrNotExist.
// Callers racing with builders should hold Lock(d).
func (s *Store) Remove(d digest.Digest) error {
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("removing record: %w", err)
	}
	if err := os.Remove(s.recordPath(d)); err != nil {
		return fmt.Errorf("removing record %s: %w", d, err)
	}
	if err := syncDir(s.recordDir()); err != nil {
		return fmt.Errorf("removing record %s: %w", d, err)
	}
	return nil
}

// recordName maps a file name in records/sha256 to its digest.
func recordName(name string) (digest.Digest, bool) {
	hex, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex)
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// recordPath assumes d has passed checkDigest.
func (s *Store) recordPath(d digest.Digest) string {
	return filepath.Join(s.recordDir(), d.Encoded()+".json")
}
