package catalog

import (
	"context"
	"database/sql/driver"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// regexps caches the compiled patterns of fgimg_match.
var regexps sync.Map

func init() {
	// fgimg_match(pattern, text): Go's regexp syntax, unanchored.
	sqlite.MustRegisterDeterministicScalarFunction("fgimg_match", 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		pat, _ := args[0].(string)
		text, _ := args[1].(string)
		re, ok := regexps.Load(pat)
		if !ok {
			c, err := regexp.Compile(pat)
			if err != nil {
				return nil, err
			}
			re, _ = regexps.LoadOrStore(pat, c)
		}
		return re.(*regexp.Regexp).MatchString(text), nil
	})
}

// Row is one entry a query selected: its fields' values by name
// (strings, int64 for sizes and counts, time.Time for times).
type Row struct {
	Key    string
	Values map[string]any
}

// Run runs q.
func (c *Catalog) Run(ctx context.Context, q *Query) ([]Row, error) {
	cols := []string{"e.key"}
	for _, f := range q.Fields {
		cols = append(cols, fields[f].expr)
	}
	stmt := "SELECT " + strings.Join(cols, ", ") + " FROM entries e"
	if len(q.where) > 0 {
		stmt += " WHERE " + strings.Join(q.where, " AND ")
	}
	order := q.order
	if order == "" {
		order = "e.created DESC"
	}
	stmt += " ORDER BY " + order + ", e.key"
	if q.limit > 0 {
		stmt += fmt.Sprintf(" LIMIT %d", q.limit)
	}
	db, err := c.index()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, stmt, q.args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var out []Row
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		key, ok := vals[0].(string)
		if !ok {
			key = fmt.Sprint(vals[0])
		}
		r := Row{Key: key, Values: make(map[string]any, len(q.Fields))}
		for i, f := range q.Fields {
			v := vals[i+1]
			switch fields[f].kind {
			case kTime:
				if n, ok := v.(int64); ok {
					v = time.Unix(0, n).UTC()
				}
			case kTag:
				if s, ok := v.(string); ok {
					v = strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
				}
			case kPackage:
				v = nil
			}
			if f == "keep" {
				v = v == int64(1)
			}
			r.Values[f] = v
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
