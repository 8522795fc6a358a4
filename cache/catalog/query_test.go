package catalog

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseQueryGood(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		q      string
		fields []string
		where  string
		args   []any
	}{
		{"", DefaultFields, "", nil},
		{"* where os=debian-12, tag=hpc", AllFields, "e.os = ? AND e.rowid IN (SELECT entry FROM tags WHERE tag = ?)", []any{"debian-12", "hpc"}},
		{"name,size,last_access where owner=alice", []string{"name", "size", "last_access"}, "e.owner = ?", []any{"alice"}},
		{"where name~^hpc", DefaultFields, "fgimg_match(?, e.name)", []any{"^hpc"}},
		{"name where size>1GiB", []string{"name"}, "e.size > ?", []any{int64(1 << 30)}},
		{"name where size<=300MB", []string{"name"}, "e.size <= ?", []any{int64(300_000_000)}},
		// An age: within the last 30 days is a later time than 30 days ago.
		{"name where last_access<30d", []string{"name"}, "coalesce(e.last_access, e.created) > ?", []any{now.Add(-30 * 24 * time.Hour).UnixNano()}},
		{"name where last_access>90d", []string{"name"}, "coalesce(e.last_access, e.created) < ?", []any{now.Add(-90 * 24 * time.Hour).UnixNano()}},
		{"name where package=openmpi-bin@4.1*", []string{"name"}, "e.rowid IN (SELECT entry FROM packages WHERE name = (SELECT id FROM pkgnames WHERE name = ?) AND version GLOB ?)", []any{"openmpi-bin", "4.1*"}},
		{`name where description="a b, c"`, []string{"name"}, "e.description = ?", []any{"a b, c"}},
		{"name order by access_count desc limit 5", []string{"name"}, "", nil},
	} {
		q, err := ParseQuery(tc.q, now)
		if err != nil {
			t.Errorf("%q: %v", tc.q, err)
			continue
		}
		if strings.Join(q.Fields, ",") != strings.Join(tc.fields, ",") {
			t.Errorf("%q: fields %v, want %v", tc.q, q.Fields, tc.fields)
		}
		if got := strings.Join(q.where, " AND "); got != tc.where {
			t.Errorf("%q: where %q, want %q", tc.q, got, tc.where)
		}
		if len(q.args) != len(tc.args) {
			t.Errorf("%q: args %v, want %v", tc.q, q.args, tc.args)
			continue
		}
		for i := range q.args {
			if q.args[i] != tc.args[i] {
				t.Errorf("%q: arg %d = %v, want %v", tc.q, i, q.args[i], tc.args[i])
			}
		}
	}
}

func TestParseQueryBad(t *testing.T) {
	for _, tc := range []struct {
		q    string
		col  int
		want string
	}{
		{"name,sise where os=x", 6, `unknown field "sise" (did you mean "size"?)`},
		{"* where os", 11, "want an operator"},
		{"* where os=", 12, "want a value"},
		{"* where size>lots", 14, "want a size"},
		{"* where name~(", 14, "bad regular expression"},
		{"* where os<debian", 11, "os is text"},
		{"* where last_access=3d", 20, "is a time"},
		{"* where last_access<soon", 21, "want an age"},
		{"* where os=a os=b", 14, "conditions are separated by"},
		{"name size", 6, "unexpected"},
		{"* order name", 9, `want "by"`},
		{"name, package", 7, "package is for conditions only"},
		{`* where description="open`, 21, "unterminated"},
		{"* where package=openmpi@", 25, "want a version"},
	} {
		_, err := ParseQuery(tc.q, time.Now())
		var qe *QueryError
		if !errors.As(err, &qe) {
			t.Errorf("%q: error %v, want a QueryError", tc.q, err)
			continue
		}
		if qe.Col != tc.col || !strings.Contains(qe.Msg, tc.want) {
			t.Errorf("%q: column %d %q, want column %d %q", tc.q, qe.Col, qe.Msg, tc.col, tc.want)
		}
		// The caret stands under the column.
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != 3 || strings.Index(lines[2], "^")-2 != qe.Col-1 {
			t.Errorf("%q: caret misplaced:\n%s", tc.q, err)
		}
	}
}

func TestParseSizeAndAge(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "1GiB": 1 << 30, "1.5K": 1536, "2MB": 2_000_000, "1g": 1 << 30} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
