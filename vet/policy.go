package vet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Policy says which findings block and whether a boot in isolation is
// required.
type Policy struct {
	// Block is the lowest severity that blocks.
	Block Severity `json:"block"`
	// BlockIDs block whatever their severity.
	BlockIDs []string `json:"block_ids,omitempty"`
	// Allow lists findings that do not block: an ID, or ID:WHERE for one
	// path or package ("files.world-writable:/srv/scratch").
	Allow []string `json:"allow,omitempty"`
	// Boot requires a boot in isolation (vet -boot).
	Boot bool `json:"boot"`
}

// BareMetalKinds are the target kinds that deploy onto bare metal, whose
// default policy is the strict one. (Keyed on the names: the kinds are
// declared by targets.)
var BareMetalKinds = []string{"xcat", "warewulf"}

// Default is the built-in policy for a target kind: for bare metal,
// high and critical findings block and the boot is required; for the
// rest (clouds, disks, archives), critical findings block.
func Default(kind string) Policy {
	if IsBareMetal(kind) {
		return Policy{Block: High, Boot: true}
	}
	return Policy{Block: Critical}
}

// IsBareMetal says whether kind deploys onto bare metal.
func IsBareMetal(kind string) bool { return slices.Contains(BareMetalKinds, kind) }

// Blocks says whether the policy blocks f.
func (p Policy) Blocks(f Finding) bool {
	if f.ID == IDBootNotRun {
		return p.Boot
	}
	if slices.Contains(p.BlockIDs, f.ID) {
		return true
	}
	for _, a := range p.Allow {
		id, where, scoped := strings.Cut(a, ":")
		if id == f.ID && (!scoped || where == f.Path || where == f.Package) {
			return false
		}
	}
	return f.Severity >= p.Block
}

// Stricter returns the policy that blocks whatever p or q blocks.
func Stricter(p, q Policy) Policy {
	r := Policy{Block: min(p.Block, q.Block), Boot: p.Boot || q.Boot}
	r.BlockIDs = union(p.BlockIDs, q.BlockIDs)
	for _, a := range p.Allow {
		if slices.Contains(q.Allow, a) {
			r.Allow = append(r.Allow, a)
		}
	}
	return r
}

func union(a, b []string) []string {
	var out []string
	for _, s := range append(slices.Clone(a), b...) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Override is what a template sets in a target's vet block: each field
// set replaces the default's.
type Override struct {
	Block    *Severity
	BlockIDs []string
	Allow    []string
	Boot     *bool
}

// Config is the operator's configuration: a policy per target kind (or
// a default for every kind), which a template cannot loosen, and the
// vulnerability database to match.
type Config struct {
	Default *Policy           `json:"default,omitempty"`
	Kinds   map[string]Policy `json:"kinds,omitempty"`
	// VulnDB is an OSV file, directory or zip; vet's -vulns overrides it.
	VulnDB string `json:"vuln_db,omitempty"`
	// Path is where the configuration was read from.
	Path string `json:"-"`
}

// ConfigPath is the operator's configuration file: $FGIMG_VET_CONFIG,
// else /etc/fgimg/vet.json.
func ConfigPath() string {
	if p := os.Getenv("FGIMG_VET_CONFIG"); p != "" {
		return p
	}
	return "/etc/fgimg/vet.json"
}

// LoadConfig reads the operator's configuration; a missing file is an
// empty configuration.
func LoadConfig(path string) (*Config, error) {
	c := &Config{Path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the vetting configuration: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("the vetting configuration %s: %w", path, err)
	}
	return c, nil
}

// floor is the policy a template cannot loosen for kind: the
// operator's, else for bare metal the built-in default; ok false when
// there is none (a cloud without the operator's word).
func (c *Config) floor(kind string) (Policy, bool) {
	if c != nil {
		if p, ok := c.Kinds[kind]; ok {
			return p, true
		}
		if c.Default != nil {
			return *c.Default, true
		}
	}
	if IsBareMetal(kind) {
		return Default(kind), true
	}
	return Policy{}, false
}

// Effective is the policy for a target of kind whose template sets o
// (nil without a vet block): the built-in default with the template's
// fields over it, made at least as strict as the operator's policy for
// the kind (for bare metal, at least the built-in default).
func (c *Config) Effective(kind string, o *Override) Policy {
	p := Default(kind)
	if c != nil {
		if op, ok := c.Kinds[kind]; ok {
			p = op
		} else if c.Default != nil {
			p = *c.Default
		}
	}
	if o != nil {
		if o.Block != nil {
			p.Block = *o.Block
		}
		if o.BlockIDs != nil {
			p.BlockIDs = union(p.BlockIDs, o.BlockIDs)
		}
		if o.Allow != nil {
			p.Allow = o.Allow
		}
		if o.Boot != nil {
			p.Boot = *o.Boot
		}
	}
	if f, ok := c.floor(kind); ok {
		p = Stricter(p, f)
	}
	return p
}
