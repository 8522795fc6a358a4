package planner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/stages"
)

// StageDiff is how the stage at one position of a chain differs from
// the stage at the same position of another: why its digest differs.
// A stage's digest covers its kind, its canonical spec and its input's
// digest, so the reasons are, in that order of precedence: another kind
// (Kind), spec fields (Changes, the first being the first input that
// differs), or only its input stage (InputDiffers). A stage that only
// one chain has has A or B empty.
type StageDiff struct {
	Index        int           `json:"index"` // from 0, the origin
	A            digest.Digest `json:"a,omitempty"`
	B            digest.Digest `json:"b,omitempty"`
	KindA        string        `json:"kind_a,omitempty"`
	KindB        string        `json:"kind_b,omitempty"`
	Same         bool          `json:"same"`
	Changes      []SpecChange  `json:"changes,omitempty"`
	InputDiffers bool          `json:"input_differs,omitempty"`
	// SpecUnknown: a side's spec is not known (a build recorded by an
	// older fgimg), so the fields that differ cannot be named.
	SpecUnknown bool `json:"spec_unknown,omitempty"`
}

// ChainStage is a stage as CompareStageChains sees it: a planned one
// (ChainOf) or one an earlier build recorded.
type ChainStage struct {
	Digest digest.Digest `json:"digest"`
	Kind   string        `json:"kind"`
	// Spec is the canonical spec (SpecJSON); nil when not known.
	Spec  json.RawMessage `json:"spec,omitempty"`
	Input digest.Digest   `json:"input,omitempty"`
}

// SpecJSON is s's canonical spec as JSON: what its digest covers, and
// what a build records so that a later one can be compared with it.
func SpecJSON(s *Stage) json.RawMessage {
	b, err := json.Marshal(s.Spec)
	if err != nil {
		panic("planner: spec does not marshal: " + err.Error())
	}
	return b
}

// ChainOf is a chain of planned stages as ChainStages.
func ChainOf(chain []*Stage) []ChainStage {
	out := make([]ChainStage, len(chain))
	for i, s := range chain {
		out[i] = ChainStage{Digest: s.Digest, Kind: s.Kind(), Spec: SpecJSON(s), Input: inputDigest(s)}
	}
	return out
}

// SpecChange is one field of a canonical spec that differs. Path names
// it as kind.field, with a list element by its path or name when it has
// one ("files.entries[/etc/motd].digest") and by index otherwise. For a
// set of strings (a package list), Added and Removed say how; otherwise
// From and To are the two values as JSON (empty: absent).
type SpecChange struct {
	Path    string   `json:"path"`
	From    string   `json:"from,omitempty"`
	To      string   `json:"to,omitempty"`
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

func (c SpecChange) String() string {
	if c.Added != nil || c.Removed != nil {
		var parts []string
		if len(c.Added) > 0 {
			parts = append(parts, "added "+strings.Join(c.Added, ", "))
		}
		if len(c.Removed) > 0 {
			parts = append(parts, "removed "+strings.Join(c.Removed, ", "))
		}
		return c.Path + ": " + strings.Join(parts, "; ")
	}
	show := func(s string) string {
		if s == "" {
			return "(none)"
		}
		if d := digest.Digest(s); d.Validate() == nil {
			return d.Algorithm().String() + ":" + Short(d)
		}
		if len(s) > 80 {
			return s[:77] + "…"
		}
		return s
	}
	return fmt.Sprintf("%s: %s → %s", c.Path, show(c.From), show(c.To))
}

// Reason is the stage's first difference in words.
func (d StageDiff) Reason() string {
	switch {
	case d.Same:
		return "the same stage"
	case d.A == "":
		return "only in B"
	case d.B == "":
		return "only in A"
	case d.KindA != d.KindB:
		return fmt.Sprintf("a %s stage against a %s stage", d.KindA, d.KindB)
	case len(d.Changes) > 0:
		return d.Changes[0].String()
	case d.InputDiffers:
		return fmt.Sprintf("its input (stage %d) differs", d.Index)
	case d.SpecUnknown:
		return "its spec differs; which field is unknown (a build recorded by an older fgimg keeps no spec)"
	}
	return "a spec that differs in no field (a different format version)"
}

// CompareChains compares two chains of planned stages, position by
// position from the origin up.
func CompareChains(a, b []*Stage) []StageDiff { return CompareStageChains(ChainOf(a), ChainOf(b)) }

// CompareStageChains compares two chains of stages (two images', an
// image's and an earlier build's, or two builds'), position by position
// from the origin up.
func CompareStageChains(a, b []ChainStage) []StageDiff {
	n := max(len(a), len(b))
	out := make([]StageDiff, n)
	for i := range n {
		d := StageDiff{Index: i}
		if i < len(a) {
			d.A, d.KindA = a[i].Digest, a[i].Kind
		}
		if i < len(b) {
			d.B, d.KindB = b[i].Digest, b[i].Kind
		}
		if i < len(a) && i < len(b) {
			d.Same = d.A == d.B
			if !d.Same && d.KindA == d.KindB {
				d.InputDiffers = a[i].Input != b[i].Input
				if a[i].Spec == nil || b[i].Spec == nil {
					d.SpecUnknown = true
				} else if ch, err := CompareSpecJSON(d.KindA, a[i].Spec, b[i].Spec); err == nil {
					d.Changes = ch
				} else {
					d.SpecUnknown = true
				}
			}
		}
		out[i] = d
	}
	return out
}

func inputDigest(s *Stage) digest.Digest {
	if s.Input == nil {
		return ""
	}
	return s.Input.Digest
}

// CompareSpecs lists the fields in which two specs of one kind differ,
// comparing their canonical JSON (what the digest covers), in field
// order. A spec recorded by an earlier build can be compared through
// CompareSpecJSON.
func CompareSpecs(a, b stages.Spec) []SpecChange {
	ja, err := json.Marshal(a)
	if err != nil {
		panic("planner: spec does not marshal: " + err.Error())
	}
	jb, err := json.Marshal(b)
	if err != nil {
		panic("planner: spec does not marshal: " + err.Error())
	}
	ch, _ := CompareSpecJSON(a.Kind(), ja, jb)
	return ch
}

// CompareSpecJSON is CompareSpecs on two canonical specs of kind as JSON.
func CompareSpecJSON(kind string, a, b []byte) ([]SpecChange, error) {
	var va, vb any
	if err := decode(a, &va); err != nil {
		return nil, fmt.Errorf("the first spec: %w", err)
	}
	if err := decode(b, &vb); err != nil {
		return nil, fmt.Errorf("the second spec: %w", err)
	}
	var out []SpecChange
	compareValues(kind, va, vb, &out)
	return out, nil
}

func decode(b []byte, v *any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

func compareValues(path string, a, b any, out *[]SpecChange) {
	switch va := a.(type) {
	case map[string]any:
		vb, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range va {
			keys[k] = true
		}
		for k := range vb {
			keys[k] = true
		}
		for _, k := range sortedKeys(keys) {
			compareValues(path+"."+k, va[k], vb[k], out)
		}
		return
	case []any:
		vb, ok := b.([]any)
		if !ok && b != nil {
			break
		}
		compareLists(path, va, vb, out)
		return
	case nil:
		if vb, ok := b.([]any); ok {
			compareLists(path, nil, vb, out)
			return
		}
	}
	if !equalJSON(a, b) {
		*out = append(*out, SpecChange{Path: path, From: showJSON(a), To: showJSON(b)})
	}
}

// compareLists compares lists of strings as sets (every list of strings
// in a canonical spec but a run stage's commands is sorted, a set),
// lists of objects with a "path" or "name" by that key, and anything
// else element by element.
func compareLists(path string, a, b []any, out *[]SpecChange) {
	if strs(a) && strs(b) && !strings.HasSuffix(path, ".commands") {
		in := func(l []any) map[string]bool {
			m := map[string]bool{}
			for _, s := range l {
				m[s.(string)] = true
			}
			return m
		}
		ina, inb := in(a), in(b)
		c := SpecChange{Path: path}
		for _, s := range b {
			if !ina[s.(string)] {
				c.Added = append(c.Added, s.(string))
			}
		}
		for _, s := range a {
			if !inb[s.(string)] {
				c.Removed = append(c.Removed, s.(string))
			}
		}
		if c.Added != nil || c.Removed != nil {
			*out = append(*out, c)
		}
		return
	}
	if key := listKey(a, b); key != "" {
		ma, mb := keyed(a, key), keyed(b, key)
		all := map[string]bool{}
		for k := range ma {
			all[k] = true
		}
		for k := range mb {
			all[k] = true
		}
		for _, k := range sortedKeys(all) {
			ea, eb := ma[k], mb[k]
			p := fmt.Sprintf("%s[%s]", path, k)
			if ea == nil || eb == nil {
				c := SpecChange{Path: p}
				if ea != nil {
					c.From = showJSON(ea)
				}
				if eb != nil {
					c.To = showJSON(eb)
				}
				*out = append(*out, c)
				continue
			}
			compareValues(p, ea, eb, out)
		}
		return
	}
	for i := range max(len(a), len(b)) {
		var ea, eb any
		if i < len(a) {
			ea = a[i]
		}
		if i < len(b) {
			eb = b[i]
		}
		compareValues(fmt.Sprintf("%s[%d]", path, i), ea, eb, out)
	}
}

func strs(l []any) bool {
	for _, v := range l {
		if _, ok := v.(string); !ok {
			return false
		}
	}
	return true
}

// listKey is the field every object of both lists has a distinct
// string value of: "path" or "name".
func listKey(a, b []any) string {
	for _, key := range []string{"path", "name"} {
		ok := len(a)+len(b) > 0
		for _, l := range [][]any{a, b} {
			seen := map[string]bool{}
			for _, v := range l {
				m, isMap := v.(map[string]any)
				s, isStr := m[key].(string)
				if !isMap || !isStr || seen[s] {
					ok = false
				}
				seen[s] = true
			}
		}
		if ok {
			return key
		}
	}
	return ""
}

func keyed(l []any, key string) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, v := range l {
		o := v.(map[string]any)
		m[o[key].(string)] = o
	}
	return m
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// showJSON is a value as compact JSON, strings without their quotes;
// "" for an absent value.
func showJSON(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
