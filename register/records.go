package register

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/atomicfile"
	"github.com/fgimg/fgimg/internal/outdir"
	"github.com/opencontainers/go-digest"
)

// RecordsName is the file in OUT/<target>/ where register keeps the
// target's registrations, beside the artifacts.
const RecordsName = outdir.RegistrationsName

// RecordsMediaType is the media type of the registrations blob in the
// cache.
const RecordsMediaType = "application/vnd.fgimg.registrations.v1+json"

// RecordKind is the Kind of the cache record that holds a target's
// registrations.
const RecordKind = "registrations"

// Records is registrations.json: where one build of a target (its
// TargetDigest) is registered. It is plain JSON for the catalog and for
// people. The same document is kept in the cache as a blob, named by
// the record RecordKey(TargetDigest) (Kind "registrations", Inputs the
// target digest, one Output "registrations.json").
type Records struct {
	Version      int            `json:"version"`
	Target       string         `json:"target"`
	Kind         string         `json:"kind"`
	TargetDigest digest.Digest  `json:"target_digest"`
	Images       []Registration `json:"registrations"`
}

// Registration is one image in one cloud.
type Registration struct {
	// Cloud names the cloud as Cloud.String does.
	Cloud    string        `json:"cloud"`
	Step     string        `json:"step"`
	Artifact string        `json:"artifact"`
	ImageID  string        `json:"image_id"`
	Name     string        `json:"name"`
	Digest   digest.Digest `json:"digest"`
	// Time is when register made (or, for an image it reused, last
	// confirmed) the registration; Uploaded says whether it uploaded.
	Time     time.Time `json:"time"`
	Uploaded bool      `json:"uploaded"`
}

// RecordKey is the cache record digest under which a target build's
// registrations are kept.
func RecordKey(targetDigest digest.Digest) digest.Digest {
	return digest.FromString("fgimg registrations\x00" + string(targetDigest))
}

// Record merges what Apply did in cloud into the target's
// registrations (replacing that cloud's earlier entries for the same
// steps) and writes them to OUT/<target>/registrations.json and, when
// store is not nil, to the cache. An image already recorded keeps its
// entry (and time), so a register that changed nothing writes nothing.
func Record(store *cache.Store, t *Target, cloud string, done []Applied, now time.Time) (*Records, error) {
	recs := &Records{Version: 1, Target: t.File.Target, Kind: t.File.Kind, TargetDigest: t.File.TargetDigest}
	path := filepath.Join(t.Dir, RecordsName)
	inOut, err := readRecords(path, recs)
	if err != nil {
		return nil, err
	}
	key := RecordKey(t.File.TargetDigest)
	inCache := store == nil || t.File.TargetDigest == "" || store.Has(key)
	if !inOut && store != nil && t.File.TargetDigest != "" {
		if err := cachedRecords(store, key, recs); err != nil {
			return nil, err
		}
	}
	changed := false
	for _, d := range done {
		s := t.step(d.Step)
		i := slices.IndexFunc(recs.Images, func(r Registration) bool { return r.Cloud == cloud && r.Step == d.Step })
		if i >= 0 && recs.Images[i].ImageID == d.Image.ID {
			continue
		}
		if i >= 0 {
			recs.Images = slices.Delete(recs.Images, i, i+1)
		}
		recs.Images = append(recs.Images, Registration{
			Cloud: cloud, Step: d.Step, Artifact: s.Artifact, ImageID: d.Image.ID, Name: s.Name,
			Digest: s.Digest, Time: now.UTC(), Uploaded: d.Uploaded,
		})
		changed = true
	}
	b, _ := json.MarshalIndent(recs, "", "  ")
	b = append(b, '\n')
	if changed || !inOut {
		if err := writeAtomic(path, b); err != nil {
			return nil, fmt.Errorf("writing registrations: %w", err)
		}
	}
	if store != nil && t.File.TargetDigest != "" && (changed || !inCache) {
		desc, err := store.PutBlob(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("keeping registrations in the cache: %w", err)
		}
		rec := cache.Record{
			Digest: key, Kind: RecordKind, Inputs: []digest.Digest{t.File.TargetDigest},
			Outputs: []cache.Output{{Name: RecordsName, Digest: desc.Digest, Size: desc.Size, MediaType: RecordsMediaType}},
			Info:    map[string]string{"target": t.File.Target},
		}
		if err := store.PutRecord(rec); err != nil {
			return nil, fmt.Errorf("keeping registrations in the cache: %w", err)
		}
	}
	return recs, nil
}

// readRecords reads a registrations.json of the same target build into
// recs and reports whether there was one; a missing file, or one of
// another build, leaves recs as it is.
func readRecords(path string, recs *Records) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var old Records
	if err := json.Unmarshal(b, &old); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if old.TargetDigest != recs.TargetDigest {
		return false, nil
	}
	recs.Images = old.Images
	return true, nil
}

// cachedRecords reads the cache's registrations of a target build into
// recs, if it has any.
func cachedRecords(store *cache.Store, key digest.Digest, recs *Records) error {
	rec, err := store.Record(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || len(rec.Outputs) != 1 {
		return err
	}
	f, err := store.OpenBlob(rec.Outputs[0].Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	var old Records
	b, err := io.ReadAll(f)
	if err == nil {
		err = json.Unmarshal(b, &old)
	}
	if err != nil {
		return fmt.Errorf("reading the cache's registrations %s: %w", key, err)
	}
	recs.Images = old.Images
	return nil
}

// writeAtomic writes path through a temporary file beside its folder
// (not in it: the target's folder must hold only what its manifest
// lists and registrations.json) and a rename.
func writeAtomic(path string, data []byte) error {
	return atomicfile.Write(filepath.Dir(filepath.Dir(path)), path, data, 0o644)
}
