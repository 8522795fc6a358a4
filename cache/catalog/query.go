package catalog

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/agext/levenshtein"
)

// The query language (docs in README.md, "The image catalog"):
//
//	query := [FIELDS] ["where" COND {"," COND}] ["order" "by" FIELD ["asc"|"desc"]] ["limit" N]
//	FIELDS := "*" | FIELD {"," FIELD}
//	COND := FIELD OP VALUE        OP: = != ~ !~ < <= > >=
//	VALUE := a word without blanks or commas, or "a quoted string"

// Field kinds.
type fieldKind int

const (
	kText fieldKind = iota
	kNumber
	kBytes
	kTime
	kTag
	kPackage
	kID
)

type field struct {
	kind fieldKind
	expr string // SQL expression over entries e
}

var fields = map[string]field{
	"id":           {kID, "e.id"},
	"name":         {kText, "e.name"},
	"type":         {kText, "e.type"},
	"owner":        {kText, "e.owner"},
	"os":           {kText, "e.os"},
	"arch":         {kText, "e.arch"},
	"description":  {kText, "e.description"},
	"tag":          {kTag, "e.tags"},
	"tags":         {kTag, "e.tags"},
	"permission":   {kText, "e.permission"},
	"kind":         {kText, "e.kind"},
	"vm_type":      {kText, "e.kind"},
	"aim":          {kText, "e.aim"},
	"status":       {kText, "e.status"},
	"location":     {kText, "e.location"},
	"created":      {kTime, "e.created"},
	"last_access":  {kTime, "coalesce(e.last_access, e.created)"},
	"size":         {kBytes, "e.size"},
	"access_count": {kNumber, "e.access_count"},
	"keep":         {kNumber, "e.keep"},
	"package":      {kPackage, ""},
	// registered: the clouds a target is registered in (registrations.json's
	// cloud names, such as `openstack cloud "lab" (http://...)`), comma-separated.
	"registered": {kText, `coalesce((SELECT group_concat(DISTINCT json_extract(j.value, '$.cloud'))
		FROM records r, json_each(r.record, '$.registrations.registrations') j WHERE r.key = e.key), '')`},
}

// DefaultFields are the columns `images` shows when the query names none.
var DefaultFields = []string{"id", "name", "type", "kind", "os", "size", "status", "last_access", "access_count"}

// AllFields are the columns of "*".
var AllFields = []string{"id", "name", "type", "owner", "os", "arch", "kind", "aim", "tags", "permission", "status",
	"size", "created", "last_access", "access_count", "keep", "location", "description"}

// Query is a parsed query.
type Query struct {
	Fields []string
	where  []string
	args   []any
	order  string
	limit  int
}

// QueryError is a mistake in a query, at a 1-based column.
type QueryError struct {
	Query string
	Col   int
	Msg   string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("query, column %d: %s\n  %s\n  %s^", e.Col, e.Msg, e.Query, strings.Repeat(" ", e.Col-1))
}

type parser struct {
	s   string
	pos int // byte offset
	now time.Time
	q   *Query
}

// ParseQuery parses a query; now is what durations count back from.
func ParseQuery(s string, now time.Time) (*Query, error) {
	p := &parser{s: s, now: now, q: &Query{}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.q, nil
}

func (p *parser) errAt(pos int, format string, args ...any) error {
	return &QueryError{Query: p.s, Col: len([]rune(p.s[:pos])) + 1, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skip() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// word reads an identifier; it returns "" when there is none.
func (p *parser) word() (string, int) {
	p.skip()
	start := p.pos
	for p.pos < len(p.s) {
		c := rune(p.s[p.pos])
		if c == '_' || unicode.IsLetter(c) || (p.pos > start && unicode.IsDigit(c)) {
			p.pos++
			continue
		}
		break
	}
	return p.s[start:p.pos], start
}

// peekKeyword reports whether keyword kw comes next (not consuming it).
func (p *parser) peekKeyword(kw string) bool {
	save := p.pos
	w, _ := p.word()
	p.pos = save
	return strings.EqualFold(w, kw)
}

func (p *parser) parse() error {
	p.skip()
	if p.pos < len(p.s) && p.s[p.pos] == '*' {
		p.pos++
		p.q.Fields = AllFields
	} else if !p.peekKeyword("where") && !p.peekKeyword("order") && !p.peekKeyword("sort") && !p.peekKeyword("limit") {
		for {
			name, at := p.word()
			if name == "" {
				if p.skip(); p.pos >= len(p.s) && len(p.q.Fields) == 0 {
					break // the empty query
				}
				return p.errAt(p.pos, "want a field name%s", p.fieldHint())
			}
			if f, err := p.field(name, at); err != nil {
				return err
			} else if f.kind == kPackage {
				return p.errAt(at, "package is for conditions only (fgimg show lists an image's packages)")
			}
			p.q.Fields = append(p.q.Fields, strings.ToLower(name))
			if p.skip(); p.pos < len(p.s) && p.s[p.pos] == ',' {
				p.pos++
				continue
			}
			break
		}
	}
	if len(p.q.Fields) == 0 {
		p.q.Fields = DefaultFields
	}
	if p.peekKeyword("where") {
		p.word()
		for {
			if err := p.cond(); err != nil {
				return err
			}
			if p.skip(); p.pos < len(p.s) && p.s[p.pos] == ',' {
				p.pos++
				continue
			}
			break
		}
	}
	if p.peekKeyword("order") || p.peekKeyword("sort") {
		p.word()
		if w, at := p.word(); !strings.EqualFold(w, "by") {
			return p.errAt(at, "want \"by\" after \"order\"")
		}
		name, at := p.word()
		f, err := p.field(name, at)
		if err != nil {
			return err
		}
		if f.kind == kPackage || f.kind == kTag {
			return p.errAt(at, "cannot order by %s", name)
		}
		dir := "ASC"
		if p.peekKeyword("desc") {
			p.word()
			dir = "DESC"
		} else if p.peekKeyword("asc") {
			p.word()
		}
		p.q.order = f.expr + " " + dir
	}
	if p.peekKeyword("limit") {
		p.word()
		p.skip()
		v, at := p.value()
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return p.errAt(at, "want a positive number after limit, not %q", v)
		}
		p.q.limit = n
	}
	if p.skip(); p.pos < len(p.s) {
		if len(p.q.where) == 0 && p.q.order == "" {
			return p.errAt(p.pos, "unexpected %q: want \",\", \"where\", \"order by\" or \"limit\"", p.rest())
		}
		return p.errAt(p.pos, "unexpected %q: conditions are separated by \",\"", p.rest())
	}
	return nil
}

func (p *parser) rest() string {
	r := p.s[p.pos:]
	if i := strings.IndexAny(r, " ,"); i > 0 {
		r = r[:i]
	}
	return r
}

func (p *parser) fieldHint() string {
	if p.pos >= len(p.s) {
		return ", found the end of the query"
	}
	return fmt.Sprintf(", found %q", p.rest())
}

func (p *parser) field(name string, at int) (field, error) {
	if name == "" {
		return field{}, p.errAt(at, "want a field name%s", p.fieldHint())
	}
	f, ok := fields[strings.ToLower(name)]
	if !ok {
		var best string
		for n := range fields {
			if d := levenshtein.Distance(strings.ToLower(name), n, nil); d <= 2 && (best == "" || d < levenshtein.Distance(strings.ToLower(name), best, nil)) {
				best = n
			}
		}
		hint := ""
		if best != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", best)
		}
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		slices.Sort(names)
		return field{}, p.errAt(at, "unknown field %q%s; fields: %s", name, hint, strings.Join(names, ", "))
	}
	return f, nil
}

var ops = []string{"!=", "!~", "<=", ">=", "=", "~", "<", ">"}

// value reads a quoted string or a word up to a blank or a comma.
func (p *parser) value() (string, int) {
	p.skip()
	start := p.pos
	if p.pos < len(p.s) && p.s[p.pos] == '"' {
		end := p.pos + 1
		for end < len(p.s) && p.s[end] != '"' {
			if p.s[end] == '\\' {
				end++
			}
			end++
		}
		if end < len(p.s) {
			if v, err := strconv.Unquote(p.s[p.pos : end+1]); err == nil {
				p.pos = end + 1
				return v, start
			}
		}
		return "\x00", start // unterminated: the caller reports it
	}
	for p.pos < len(p.s) && p.s[p.pos] != ',' && p.s[p.pos] != ' ' && p.s[p.pos] != '\t' {
		p.pos++
	}
	return p.s[start:p.pos], start
}

func (p *parser) cond() error {
	name, at := p.word()
	f, err := p.field(name, at)
	if err != nil {
		return err
	}
	p.skip()
	opAt := p.pos
	op := ""
	for _, o := range ops {
		if strings.HasPrefix(p.s[p.pos:], o) {
			op = o
			break
		}
	}
	if op == "" {
		return p.errAt(opAt, "want an operator (= != ~ !~ < <= > >=) after %s%s", name, p.fieldHint())
	}
	p.pos += len(op)
	v, vAt := p.value()
	if v == "\x00" {
		return p.errAt(vAt, "unterminated quoted string")
	}
	if v == "" {
		return p.errAt(vAt, "want a value after %s%s", op, p.fieldHint())
	}
	where, args, err := p.compile(f, name, op, opAt, v, vAt)
	if err != nil {
		return err
	}
	p.q.where = append(p.q.where, where)
	p.q.args = append(p.q.args, args...)
	return nil
}

var sqlOps = map[string]string{"=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

// flipped is the comparison of times for an age: younger means later.
var flipped = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<="}

func (p *parser) compile(f field, name, op string, opAt int, v string, vAt int) (string, []any, error) {
	regex := op == "~" || op == "!~"
	if regex {
		if _, err := regexp.Compile(v); err != nil {
			return "", nil, p.errAt(vAt, "bad regular expression: %v", err)
		}
	}
	not := ""
	if op == "!=" || op == "!~" {
		not = "NOT "
	}
	switch f.kind {
	case kText, kID:
		switch {
		case regex:
			return not + "fgimg_match(?, " + f.expr + ")", []any{v}, nil
		case op == "=" || op == "!=":
			if f.kind == kID {
				hex := strings.TrimPrefix(v, "sha256:")
				return not + "(" + f.expr + " >= ? AND " + f.expr + " < ?)", []any{"sha256:" + hex, "sha256:" + hex + "g"}, nil
			}
			return f.expr + " " + sqlOps[op] + " ?", []any{v}, nil
		}
		return "", nil, p.errAt(opAt, "%s is text: compare it with = != ~ or !~, not %s", name, op)
	case kTag:
		// Uncorrelated IN subqueries run once, by the name index; an
		// EXISTS per entry may be planned on that index and scan every
		// row of a common name once per entry.
		if regex {
			return not + "e.rowid IN (SELECT entry FROM tags WHERE fgimg_match(?, tag))", []any{v}, nil
		}
		if op == "=" || op == "!=" {
			return not + "e.rowid IN (SELECT entry FROM tags WHERE tag = ?)", []any{v}, nil
		}
		return "", nil, p.errAt(opAt, "%s is a set of tags: use = != ~ or !~, not %s", name, op)
	case kPackage:
		if regex {
			return not + "e.rowid IN (SELECT entry FROM packages WHERE name IN (SELECT id FROM pkgnames WHERE fgimg_match(?, name)))", []any{v}, nil
		}
		if op != "=" && op != "!=" {
			return "", nil, p.errAt(opAt, "match a package with = != ~ or !~, not %s", op)
		}
		pkg, ver, hasVer := strings.Cut(v, "@")
		if !hasVer {
			return not + "e.rowid IN (SELECT entry FROM packages WHERE name = (SELECT id FROM pkgnames WHERE name = ?))", []any{pkg}, nil
		}
		if ver == "" {
			return "", nil, p.errAt(vAt+len(pkg)+1, "want a version (a glob such as 4.1*) after @")
		}
		return not + "e.rowid IN (SELECT entry FROM packages WHERE name = (SELECT id FROM pkgnames WHERE name = ?) AND version GLOB ?)", []any{pkg, ver}, nil
	case kNumber, kBytes:
		if regex {
			return "", nil, p.errAt(opAt, "%s is a number: compare it with = != < <= > >=", name)
		}
		var n int64
		var err error
		if f.kind == kBytes {
			n, err = ParseSize(v)
		} else if name == "keep" {
			n, err = parseBool(v)
		} else {
			n, err = strconv.ParseInt(v, 10, 64)
		}
		if err != nil {
			return "", nil, p.errAt(vAt, "%v", err)
		}
		return f.expr + " " + sqlOps[op] + " ?", []any{n}, nil
	case kTime:
		if regex || op == "=" || op == "!=" {
			return "", nil, p.errAt(opAt, "%s is a time: compare it with < <= > >= to an age (30d) or a date (2026-01-31)", name)
		}
		if d, err := ParseAge(v); err == nil {
			// An age: last_access<30d is "within the last 30 days".
			return f.expr + " " + flipped[op] + " ?", []any{p.now.Add(-d).UnixNano()}, nil
		}
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
			if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
				return f.expr + " " + sqlOps[op] + " ?", []any{t.UnixNano()}, nil
			}
		}
		return "", nil, p.errAt(vAt, "want an age such as 30d, 12h or 2w, or a date such as 2026-01-31, not %q", v)
	}
	return "", nil, p.errAt(opAt, "cannot compare %s", name)
}

func parseBool(v string) (int64, error) {
	switch strings.ToLower(v) {
	case "true", "yes", "1":
		return 1, nil
	case "false", "no", "0":
		return 0, nil
	}
	return 0, fmt.Errorf("want true or false, not %q", v)
}

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
}

// ParseSize parses a byte count: 512, 1.5GiB, 300MB (K, M, G, T alone
// are binary, like KiB; KB, MB, ... are decimal).
func ParseSize(v string) (int64, error) {
	i := strings.IndexFunc(v, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	if i < 0 {
		i = len(v)
	}
	unit, ok := sizeUnits[strings.ToLower(v[i:])]
	n, err := strconv.ParseFloat(v[:i], 64)
	if !ok || err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as 512MiB, 1GiB or 300MB, not %q", v)
	}
	return int64(n * float64(unit)), nil
}

var ageUnits = map[string]time.Duration{
	"s": time.Second, "m": time.Minute, "h": time.Hour,
	"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour,
}

// ParseAge parses an age: a number and one of s, m, h, d (days), w
// (weeks), y (365 days), such as 90d; Go durations (1h30m) too.
func ParseAge(v string) (time.Duration, error) {
	if len(v) >= 2 {
		if u, ok := ageUnits[v[len(v)-1:]]; ok {
			if n, err := strconv.ParseFloat(v[:len(v)-1], 64); err == nil && n >= 0 {
				return time.Duration(n * float64(u)), nil
			}
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want an age such as 90d, 12h or 2w, not %q", v)
	}
	return d, nil
}
