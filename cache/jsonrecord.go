package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// A JSON record keeps one derived fact about stages (an image's software
// stack, a vetting report) as the single output of a record of its own,
// keyed by a digest of what it depends on.

// RecordStore is what JSON records need of a store (a *Store, or the
// engine's view of one).
type RecordStore interface {
	Has(digest.Digest) bool
	Record(digest.Digest) (Record, error)
	PutRecord(Record) error
	PutFile(path string) (Descriptor, error)
	BlobPath(digest.Digest) (string, error)
	TempDir(pattern string) (string, error)
}

var _ RecordStore = (*Store)(nil)

// JSONRecord decodes into v the output name of the record key: ok false
// when there is no such record.
func JSONRecord(s RecordStore, key digest.Digest, name string, v any) (ok bool, err error) {
	if !s.Has(key) {
		return false, nil
	}
	rec, err := s.Record(key)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, o := range rec.Outputs {
		if o.Name != name {
			continue
		}
		path, err := s.BlobPath(o.Digest)
		if err != nil {
			return false, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return false, fmt.Errorf("the %s record %s: %w", rec.Kind, key, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("the %s record %s has no %s", rec.Kind, key, name)
}

// PutJSONRecord stores v as JSON, the one output name (of mediaType) of
// rec, and writes rec.
func PutJSONRecord(s RecordStore, rec Record, name, mediaType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	work, err := s.TempDir("record-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	path := filepath.Join(work, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	desc, err := s.PutFile(path)
	if err != nil {
		return err
	}
	rec.Outputs = []Output{{Name: name, Digest: desc.Digest, Size: desc.Size, MediaType: mediaType}}
	return s.PutRecord(rec)
}
