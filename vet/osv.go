package vet

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	debversion "pault.ag/go/debian/version"

	"github.com/fgimg/fgimg/internal/swstack"
)

// DB is a vulnerability database in the OSV format
// (ossf.github.io/osv-schema), read from a file so that vetting works
// offline: one JSON record, a JSON list of records, a directory of
// *.json records, or a zip of them (as osv.dev publishes per
// ecosystem, such as Debian/all.zip).
type DB struct {
	// Digest identifies the database's content: a vetting result is
	// cached under it.
	Digest string
	Path   string
	vulns  []osvRecord
}

type osvRecord struct {
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases"`
	Summary  string   `json:"summary"`
	Severity []struct {
		Type  string `json:"type"`
		Score string `json:"score"`
	} `json:"severity"`
	Affected []struct {
		Package struct {
			Ecosystem string `json:"ecosystem"`
			Name      string `json:"name"`
		} `json:"package"`
		Ranges []struct {
			Type   string              `json:"type"`
			Events []map[string]string `json:"events"`
		} `json:"ranges"`
		Versions          []string       `json:"versions"`
		EcosystemSpecific map[string]any `json:"ecosystem_specific"`
		DatabaseSpecific  map[string]any `json:"database_specific"`
	} `json:"affected"`
	DatabaseSpecific map[string]any `json:"database_specific"`
}

// maxDB bounds one record file (a zip's members included).
const maxDB = 1 << 30

// LoadDB reads the OSV database at path.
func LoadDB(path string) (*DB, error) {
	db := &DB{Path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("the vulnerability database: %w", err)
	}
	var files []struct {
		name string
		b    []byte
	}
	addFile := func(name string, r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, maxDB+1))
		if err != nil {
			return err
		}
		if len(b) > maxDB {
			return fmt.Errorf("%s is larger than %d bytes", name, maxDB)
		}
		files = append(files, struct {
			name string
			b    []byte
		}{name, b})
		return nil
	}
	switch {
	case fi.IsDir():
		names, _ := filepath.Glob(filepath.Join(path, "*.json"))
		for _, n := range names {
			f, err := os.Open(n)
			if err != nil {
				return nil, err
			}
			err = addFile(filepath.Base(n), f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	case strings.HasSuffix(path, ".zip"):
		z, err := zip.OpenReader(path)
		if err != nil {
			return nil, fmt.Errorf("the vulnerability database: %w", err)
		}
		defer z.Close()
		for _, zf := range z.File {
			if !strings.HasSuffix(zf.Name, ".json") {
				continue
			}
			r, err := zf.Open()
			if err != nil {
				return nil, err
			}
			err = addFile(zf.Name, r)
			r.Close()
			if err != nil {
				return nil, err
			}
		}
	default:
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		err = addFile(filepath.Base(path), f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var all bytes.Buffer
	for _, f := range files {
		fmt.Fprintf(&all, "%s\x00%d\x00", f.name, len(f.b))
		all.Write(f.b)
		b := bytes.TrimSpace(f.b)
		if len(b) > 0 && b[0] == '[' {
			var rs []osvRecord
			if err := json.Unmarshal(b, &rs); err != nil {
				return nil, fmt.Errorf("the vulnerability database %s: %s: %w", path, f.name, err)
			}
			db.vulns = append(db.vulns, rs...)
			continue
		}
		var r osvRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("the vulnerability database %s: %s: %w", path, f.name, err)
		}
		db.vulns = append(db.vulns, r)
	}
	db.Digest = digestBytes(all.Bytes())
	return db, nil
}

// Len is the number of records.
func (db *DB) Len() int { return len(db.vulns) }

// Match returns a finding for each installed package a record says is
// affected, in the image's ecosystem (os-release's ID and VERSION_ID:
// "Debian:12"). Debian versions compare as dpkg does; other package
// managers match the records' exact version lists only.
func (db *DB) Match(st *swstack.Stack) []Finding {
	var out []Finding
	for _, v := range db.vulns {
		for _, a := range v.Affected {
			if !sameEcosystem(a.Package.Ecosystem, st) {
				continue
			}
			for _, p := range st.Packages {
				if a.Package.Name != p.Name && a.Package.Name != p.Source {
					continue
				}
				fixed, hit := affected(st.Manager, p.Version, a.Versions, a.Ranges)
				if !hit {
					continue
				}
				f := Finding{ID: IDVulnerable, Severity: severityOf(v, a.EcosystemSpecific, a.DatabaseSpecific),
					Package: p.Name + " " + p.Version,
					Detail:  strings.TrimSpace(v.ID + " " + strings.Join(v.Aliases, " ") + ": " + v.Summary)}
				if fixed != "" {
					f.Fix = fmt.Sprintf("upgrade %s to %s or later: rebuild the packages stage from an updated mirror, or pin it (packages = [\"%s=%s\"])", p.Name, fixed, p.Name, fixed)
				} else {
					f.Fix = "no fixed version is known: remove " + p.Name + " (and what depends on it) if the image can do without it"
				}
				out = append(out, f)
			}
		}
	}
	return out
}

func sameEcosystem(eco string, st *swstack.Stack) bool {
	base, rel, _ := strings.Cut(eco, ":")
	if !strings.EqualFold(base, st.OSID) || st.OSID == "" {
		return false
	}
	rel, _, _ = strings.Cut(rel, ":")
	rel = strings.TrimPrefix(rel, "v")
	return rel == "" || rel == st.OSVersionID || strings.HasPrefix(st.OSVersionID, rel+".")
}

// affected says whether version is affected, and the version that fixes
// it when a range names one.
func affected(manager, version string, versions []string, ranges []struct {
	Type   string              `json:"type"`
	Events []map[string]string `json:"events"`
}) (fixed string, hit bool) {
	if slices.Contains(versions, version) {
		hit = true
	}
	if manager != "dpkg" {
		return "", hit
	}
	cur, err := debversion.Parse(version)
	if err != nil {
		return "", hit
	}
	cmp := func(s string) (int, bool) {
		if s == "0" {
			return 1, true // introduced "0": every version
		}
		v, err := debversion.Parse(s)
		if err != nil {
			return 0, false
		}
		return debversion.Compare(cur, v), true
	}
	for _, r := range ranges {
		if r.Type != "ECOSYSTEM" {
			continue
		}
		// Events apply in version order: an introduced opens, a fixed
		// closes, a last_affected closes after its version.
		in := false
		for _, e := range sortedEvents(r.Events) {
			for kind, at := range e {
				c, ok := cmp(at)
				if !ok {
					continue
				}
				switch kind {
				case "introduced":
					if c >= 0 {
						in = true
					}
				case "fixed":
					if c >= 0 {
						in = false
					} else if in && fixed == "" {
						fixed = at
					}
				case "last_affected":
					if c > 0 {
						in = false
					}
				}
			}
		}
		hit = hit || in
	}
	return fixed, hit
}

func sortedEvents(evs []map[string]string) []map[string]string {
	out := slices.Clone(evs)
	val := func(e map[string]string) string {
		for _, v := range e {
			return v
		}
		return ""
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := val(out[i]), val(out[j])
		if a == "0" || b == "0" {
			return a == "0" && b != "0"
		}
		va, ea := debversion.Parse(a)
		vb, eb := debversion.Parse(b)
		if ea != nil || eb != nil {
			return false
		}
		return debversion.Compare(va, vb) < 0
	})
	return out
}

// severityOf reads a record's severity: the database's word (GitHub's
// "HIGH", Debian's urgency), else a numeric CVSS score; high when the
// record gives none.
func severityOf(v osvRecord, specific ...map[string]any) Severity {
	for _, m := range append(specific, v.DatabaseSpecific) {
		for _, k := range []string{"severity", "urgency"} {
			if s, ok := m[k].(string); ok {
				switch strings.ToLower(strings.TrimSpace(s)) {
				case "critical":
					return Critical
				case "high", "important":
					return High
				case "medium", "moderate":
					return Medium
				case "low", "unimportant", "negligible":
					return Low
				}
			}
		}
	}
	for _, s := range v.Severity {
		if f, err := strconv.ParseFloat(s.Score, 64); err == nil {
			switch {
			case f >= 9:
				return Critical
			case f >= 7:
				return High
			case f >= 4:
				return Medium
			default:
				return Low
			}
		}
	}
	return High
}
