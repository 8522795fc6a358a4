package vet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
)

// Vetting is deterministic for an image, a policy and a vulnerability
// database, so its report is kept in the cache like a stage: a record of
// kind ReportKind under Key, input the image, one output (the report).
const (
	ReportKind      = "vet"
	ReportMediaType = "application/vnd.fgimg.vet-report.v1+json"
	reportOutput    = "report.json"
)

// Key is the cache record of the report on image under policy p with
// the vulnerability database vulnDB ("" for none); boot says whether the
// image was booted.
func Key(image digest.Digest, p Policy, vulnDB string, boot bool) digest.Digest {
	pol, _ := json.Marshal(p)
	return digest.FromString(fmt.Sprintf("fgimg vet v1\n%s\n%s\n%s\nboot=%t\n", image, pol, vulnDB, boot))
}

// Cached returns the report kept under key, or ok false.
func Cached(store *cache.Store, key digest.Digest) (r *Report, ok bool, err error) {
	if !store.Has(key) {
		return nil, false, nil
	}
	rec, err := store.Record(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for _, o := range rec.Outputs {
		if o.Name != reportOutput {
			continue
		}
		path, err := store.BlobPath(o.Digest)
		if err != nil {
			return nil, false, err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, false, err
		}
		r = &Report{}
		if err := json.Unmarshal(b, r); err != nil {
			return nil, false, fmt.Errorf("the vetting report %s: %w", key, err)
		}
		return r, true, nil
	}
	return nil, false, fmt.Errorf("the vetting record %s has no %s", key, reportOutput)
}

// Save keeps r in the cache under key, for image.
func Save(store *cache.Store, key, image digest.Digest, r *Report) error {
	work, err := store.TempDir("vet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := filepath.Join(work, reportOutput)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	desc, err := store.PutFile(path)
	if err != nil {
		return err
	}
	return store.PutRecord(cache.Record{Digest: key, Kind: ReportKind, Inputs: []digest.Digest{image},
		Duration: time.Duration(r.Seconds * float64(time.Second)),
		Outputs:  []cache.Output{{Name: reportOutput, Digest: desc.Digest, Size: desc.Size, MediaType: ReportMediaType}}})
}
