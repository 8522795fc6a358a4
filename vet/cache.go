package vet

import (
	"encoding/json"
	"fmt"
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

// checksVersion names what the checks look for: change it with any
// check, so that no report cached by older checks is reused.
const checksVersion = "v2"

// Key is the cache record of the report on image under policy p with
// the vulnerability database vulnDB ("" for none); boot says whether the
// image was booted.
func Key(image digest.Digest, p Policy, vulnDB string, boot bool) digest.Digest {
	pol, _ := json.Marshal(p)
	return digest.FromString(fmt.Sprintf("fgimg vet %s\n%s\n%s\n%s\nboot=%t\n", checksVersion, image, pol, vulnDB, boot))
}

// Cached returns the report kept under key, or ok false.
func Cached(store *cache.Store, key digest.Digest) (*Report, bool, error) {
	r := &Report{}
	ok, err := cache.JSONRecord(store, key, reportOutput, r)
	if !ok || err != nil {
		return nil, false, err
	}
	return r, true, nil
}

// Save keeps r in the cache under key, for image.
func Save(store *cache.Store, key, image digest.Digest, r *Report) error {
	return cache.PutJSONRecord(store, cache.Record{Digest: key, Kind: ReportKind, Inputs: []digest.Digest{image},
		Duration: time.Duration(r.Seconds * float64(time.Second))}, reportOutput, ReportMediaType, r)
}
