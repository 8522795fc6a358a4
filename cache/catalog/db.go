package catalog

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/opencontainers/go-digest"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, "sqlite"
)

// schemaVersion is the index's PRAGMA user_version; an index with another
// is rebuilt from the records.
const schemaVersion = 4

const schema = `
CREATE TABLE entries (
	rid INTEGER PRIMARY KEY, -- a rowid alias, so that VACUUM keeps it
	key TEXT NOT NULL UNIQUE,
	id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
	owner TEXT, os TEXT, arch TEXT, description TEXT, tags TEXT, permission TEXT,
	kind TEXT, aim TEXT, status TEXT, location TEXT,
	created INTEGER NOT NULL, size INTEGER NOT NULL,
	keep INTEGER NOT NULL DEFAULT 0,
	access_count INTEGER NOT NULL DEFAULT 0, last_access INTEGER
);
-- The full records apart, so that a scan of entries reads small rows.
CREATE TABLE records (key TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE INDEX entries_name ON entries(name);
CREATE INDEX entries_id ON entries(id);
CREATE INDEX entries_created ON entries(created);
-- Tags and packages refer to entries by rowid and their names by
-- number: the tables stay small, and the covering indexes answer
-- tag=, package= and package~ without reading a table row.
CREATE TABLE tags (entry INTEGER NOT NULL, tag TEXT NOT NULL);
CREATE INDEX tags_tag ON tags(tag, entry);
CREATE INDEX tags_entry ON tags(entry);
CREATE TABLE pkgnames (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE packages (entry INTEGER NOT NULL, name INTEGER NOT NULL, version TEXT, arch TEXT, source TEXT);
CREATE INDEX packages_name ON packages(name, version, entry);
CREATE INDEX packages_entry ON packages(entry);
-- An event is unique: the pending journal may be read twice (see ingest).
CREATE TABLE usage (key TEXT NOT NULL, who TEXT NOT NULL, at INTEGER NOT NULL, what TEXT NOT NULL);
CREATE UNIQUE INDEX usage_event ON usage(key, at, who, what);
`

// Catalog is the record files and their index.
type Catalog struct {
	files *Files
	db    *sql.DB // nil until a method needs the index
	// Rebuilt says the index was rebuilt (it was missing or old).
	Rebuilt bool
}

// Open opens the catalog of store. The index is opened when first
// needed (a build that only records never opens it): then it is built
// from the records when missing or of an older schema, and takes in
// the pending journal.
func Open(store *cache.Store) (*Catalog, error) {
	files, err := NewFiles(store)
	if err != nil {
		return nil, err
	}
	return &Catalog{files: files}, nil
}

// index opens the index if it is not open, and takes in what builds
// recorded since it was last read.
func (c *Catalog) index() (*sql.DB, error) {
	if c.db == nil {
		if err := c.openIndex(); err != nil {
			return nil, err
		}
	}
	if err := c.ingest(); err != nil {
		return nil, err
	}
	return c.db, nil
}

func (c *Catalog) openIndex() error {
	path := filepath.Join(c.files.dir, "index.db")
	// mmap: a query's scan reads pages without a pread(2) each.
	// busy_timeout first, so that switching to WAL waits for a
	// concurrent opener too; _txlock=immediate takes the write lock at
	// BEGIN, so two writers never deadlock upgrading read locks.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() +
		"?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=mmap_size(1073741824)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	db.SetMaxOpenConns(1)
	c.db = db
	if err := c.migrate(); err != nil {
		db.Close()
		c.db = nil
		return err
	}
	return nil
}

// Close closes the index, if it was opened.
func (c *Catalog) Close() error {
	if c.db == nil {
		return nil
	}
	return c.db.Close()
}

// Files returns the record files.
func (c *Catalog) Files() *Files { return c.files }

func (c *Catalog) migrate() error {
	var v int
	if err := c.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("catalog: reading the index: %w", err)
	}
	if v == schemaVersion {
		return nil
	}
	return c.rebuild(schemaVersion)
}

// Rebuild rebuilds the index from the record files, unless opening it
// just did.
func (c *Catalog) Rebuild() error {
	if c.db == nil {
		if err := c.openIndex(); err != nil {
			return err
		}
	}
	if !c.Rebuilt {
		if err := c.rebuild(-1); err != nil {
			return err
		}
	}
	return c.ingest()
}

// rebuild recreates the index in one transaction. With onlyFrom ≥ 0 it
// does nothing when another process has brought the index to that
// version meanwhile.
func (c *Catalog) rebuild(onlyFrom int) error {
	tx, err := c.db.Begin()
	if err != nil {
		return fmt.Errorf("catalog: rebuilding the index: %w", err)
	}
	defer tx.Rollback()
	if onlyFrom >= 0 {
		var v int
		if err := tx.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			return fmt.Errorf("catalog: rebuilding the index: %w", err)
		}
		if v == onlyFrom {
			return nil
		}
	}
	for _, t := range []string{"entries", "records", "tags", "pkgnames", "packages", "usage"} {
		if _, err := tx.Exec("DROP TABLE IF EXISTS " + t); err != nil {
			return fmt.Errorf("catalog: rebuilding the index: %w", err)
		}
	}
	if _, err := tx.Exec(schema); err != nil {
		return fmt.Errorf("catalog: rebuilding the index: %w", err)
	}
	keys, err := c.files.Keys()
	if err != nil {
		return err
	}
	st := newStmts(tx)
	defer st.close()
	var errs []error
	for _, k := range keys {
		e, err := c.files.Get(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := insert(st, e, c.files.kept(k)); err != nil {
			return err
		}
		evs, err := c.files.readUsage(k)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := addUse(st, k, ev); err != nil {
				return err
			}
		}
	}
	if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return fmt.Errorf("catalog: rebuilding the index: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: rebuilding the index: %w", err)
	}
	c.Rebuilt = true
	if len(errs) > 0 {
		return fmt.Errorf("catalog: records left out of the index: %w", errors.Join(errs...))
	}
	return nil
}

// insert adds e to the index, replacing any row of the same key; its
// usage counts stay.
func insert(tx *stmts, e *Entry, keep bool) error {
	rec, err := json.Marshal(e)
	if err != nil {
		return err
	}
	k := e.Key()
	var count int64
	var last sql.NullInt64
	err = tx.QueryRow("SELECT access_count, last_access FROM entries WHERE key = ?", k).Scan(&count, &last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("catalog: %w", err)
	}
	for _, q := range []string{
		"DELETE FROM tags WHERE entry = (SELECT rowid FROM entries WHERE key = ?)",
		"DELETE FROM packages WHERE entry = (SELECT rowid FROM entries WHERE key = ?)",
		"DELETE FROM entries WHERE key = ?",
		"DELETE FROM records WHERE key = ?",
	} {
		if _, err := tx.Exec(q, k); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	res, err := tx.Exec(`INSERT INTO entries (key, id, name, type, owner, os, arch, description, tags, permission,
		kind, aim, status, location, created, size, keep, access_count, last_access)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k, string(e.ID), e.Name, e.Type, e.Owner, e.OS, e.Arch, e.Description, strings.Join(e.Tags, ","), e.Permission,
		e.Kind, e.Aim, e.Status, strings.Join(e.Locations, " "), e.Created.UnixNano(), e.Size, keep, count, last)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	row, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if _, err := tx.Exec("INSERT INTO records (key, record) VALUES (?, ?)", k, string(rec)); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	for _, t := range e.Tags {
		if _, err := tx.Exec("INSERT INTO tags (entry, tag) VALUES (?, ?)", row, t); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	if e.Stack == nil {
		return nil
	}
	for _, p := range e.Stack.Packages {
		if _, err := tx.Exec("INSERT OR IGNORE INTO pkgnames (name) VALUES (?)", p.Name); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		_, err := tx.Exec(`INSERT INTO packages (entry, name, version, arch, source)
			VALUES (?, (SELECT id FROM pkgnames WHERE name = ?), ?, ?, ?)`, row, p.Name, p.Version, p.Arch, p.Source)
		if err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	return nil
}

// addUse records one use of k in the index, once.
func addUse(tx *stmts, k string, ev Event) error {
	at := ev.When.UnixNano()
	res, err := tx.Exec("INSERT OR IGNORE INTO usage (key, who, at, what) VALUES (?, ?, ?, ?)", k, ev.Who, at, ev.What)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // counted already
	}
	_, err = tx.Exec(`UPDATE entries SET access_count = access_count + 1,
		last_access = max(coalesce(last_access, 0), ?) WHERE key = ?`, at, k)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// stmts runs statements in a transaction, each prepared once: a
// rebuild runs the same few statements for every entry and package.
type stmts struct {
	tx *sql.Tx
	m  map[string]*sql.Stmt
}

func newStmts(tx *sql.Tx) *stmts { return &stmts{tx: tx, m: map[string]*sql.Stmt{}} }

func (s *stmts) prepare(q string) (*sql.Stmt, error) {
	if st, ok := s.m[q]; ok {
		return st, nil
	}
	st, err := s.tx.Prepare(q)
	if err != nil {
		return nil, err
	}
	s.m[q] = st
	return st, nil
}

func (s *stmts) Exec(q string, args ...any) (sql.Result, error) {
	st, err := s.prepare(q)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

func (s *stmts) QueryRow(q string, args ...any) interface{ Scan(...any) error } {
	st, err := s.prepare(q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRow(args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (s *stmts) close() {
	for _, st := range s.m {
		st.Close()
	}
}

// Use is one use of one entry, for Record.
type Use struct {
	ID   digest.Digest
	Name string
	Event
}

// Record adds what a build made and how it was used: the record of
// every entry new to the catalog is written, every use is appended to
// its entry's usage log, and one line naming them all to the pending
// journal, which the index takes in when next opened (see ingest). A
// no-op build so writes two small appends and never opens the index.
func (c *Catalog) Record(entries []*Entry, uses []Use) error {
	var p pending
	for _, e := range entries {
		if !c.files.Exists(e.ID, e.Name) {
			if err := c.files.Put(e); err != nil {
				return err
			}
		}
		p.Keys = append(p.Keys, e.Key())
	}
	for _, u := range uses {
		k := key(u.ID, u.Name)
		if err := c.files.appendUsage(k, u.Event); err != nil {
			return err
		}
		p.Uses = append(p.Uses, pendingUse{Key: k, Event: u.Event})
	}
	return c.files.appendPending(p)
}

// index takes in one pending line: every entry is indexed if the index
// lacks it (a new build, or a crash between record and index), a purged
// entry becomes built again (the build has stored its bytes), and every
// use is counted once.
func (c *Catalog) indexPending(st *stmts, p pending) error {
	for _, k := range p.Keys {
		var status string
		err := st.QueryRow("SELECT status FROM entries WHERE key = ?", k).Scan(&status)
		if err == nil && status != StatusPurged {
			continue
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("catalog: %w", err)
		}
		rec, err := c.files.Get(k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // its record was removed since
		}
		if err != nil {
			return err
		}
		if rec.Status == StatusPurged {
			rec.Status, rec.Purged = StatusBuilt, nil
			if err := c.files.Put(rec); err != nil {
				return err
			}
		}
		if err := insert(st, rec, c.files.kept(k)); err != nil {
			return err
		}
	}
	for _, u := range p.Uses {
		if c.files.has(u.Key) {
			if err := addUse(st, u.Key, u.Event); err != nil {
				return err
			}
		}
	}
	return nil
}

// inTx runs fn in a write transaction and commits what it did, unless
// it failed.
func (c *Catalog) inTx(fn func(st *stmts) error) error {
	db, err := c.index()
	if err != nil {
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer tx.Rollback()
	st := newStmts(tx)
	defer st.close()
	if err := fn(st); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// Use records one use (what: UseBoot, UseRegister, UseFetch, ...) by
// the current user of the entry ref names (see Find), now.
func (c *Catalog) Use(ref, what string) error {
	e, err := c.Find(ref)
	if err != nil {
		return err
	}
	return c.UseEntry(e.ID, e.Name, what)
}

// UseEntry records one use (what: UseBoot, UseRegister, UseFetch, ...)
// of the entry (id, name), such as a target's write digest and name
// from its manifest.json or register.json, by the current user, now.
// An entry the catalog lacks (built before it) is not recorded.
func (c *Catalog) UseEntry(id digest.Digest, name, what string) error {
	if !c.files.Exists(id, name) {
		return nil
	}
	return c.Record(nil, []Use{{ID: id, Name: name, Event: Event{Who: User(), When: time.Now().UTC(), What: what}}})
}

// SetRegistrations records where the target (id, name) is registered:
// raw is the register command's registrations.json. `fgimg build` also
// indexes OUT/<target>/registrations.json when it finds one.
func (c *Catalog) SetRegistrations(id digest.Digest, name string, raw json.RawMessage) error {
	e, err := c.files.Get(key(id, name))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("catalog: registrations of %s: %w", name, err)
	}
	e.Registrations = buf.Bytes()
	return c.Update(e)
}

// User names the user fgimg runs as, for usage events and owners.
func User() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprint(os.Getuid())
}

// Find returns the entry ref names: a name (its newest build), a digest
// or a unique prefix of one (with or without "sha256:"), optionally
// followed by "/NAME" when several entries share the digest.
func (c *Catalog) Find(ref string) (*Entry, error) {
	db, err := c.index()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query("SELECT key FROM entries WHERE name = ? ORDER BY created DESC, key LIMIT 1", ref)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	keys, err := scanKeys(rows)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		hex, name, _ := strings.Cut(strings.TrimPrefix(ref, "sha256:"), "/")
		if hex == "" || strings.Trim(hex, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("no image or target %q in the catalog", ref)
		}
		q := "SELECT key FROM entries WHERE id >= ? AND id < ?"
		args := []any{"sha256:" + hex, "sha256:" + hex + "g"}
		if name != "" {
			q += " AND name = ?"
			args = append(args, name)
		}
		rows, err := db.Query(q+" ORDER BY key LIMIT 10", args...)
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		if keys, err = scanKeys(rows); err != nil {
			return nil, err
		}
	}
	switch {
	case len(keys) == 0:
		return nil, fmt.Errorf("no image or target %q in the catalog", ref)
	case len(keys) > 1:
		return nil, fmt.Errorf("%q is ambiguous: it names %s", ref, strings.Join(keys, ", "))
	}
	return c.files.Get(keys[0])
}

// Latest returns the newest entry of type typ (TypeImage, TypeTarget)
// named name, or nil when there is none.
func (c *Catalog) Latest(name, typ string) (*Entry, error) {
	db, err := c.index()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query("SELECT key FROM entries WHERE name = ? AND type = ? ORDER BY created DESC, key LIMIT 1", name, typ)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	keys, err := scanKeys(rows)
	if err != nil || len(keys) == 0 {
		return nil, err
	}
	return c.files.Get(keys[0])
}

func scanKeys(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// Usage returns e's usage events, oldest first.
func (c *Catalog) Usage(e *Entry) ([]Event, error) {
	db, err := c.index()
	if err != nil {
		return nil, err
	}
	rows, err := db.Query("SELECT who, at, what FROM usage WHERE key = ? ORDER BY at", e.Key())
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var ev Event
		var at int64
		if err := rows.Scan(&ev.Who, &at, &ev.What); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		ev.When = time.Unix(0, at).UTC()
		evs = append(evs, ev)
	}
	return evs, rows.Err()
}

// SetKeep marks e as never to be purged, or lifts that.
func (c *Catalog) SetKeep(e *Entry, keep bool) error {
	if err := c.files.setKeep(e.Key(), keep); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	db, err := c.index()
	if err != nil {
		return err
	}
	if _, err := db.Exec("UPDATE entries SET keep = ? WHERE key = ?", keep, e.Key()); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	return nil
}

// Update rewrites e's record (after purge changed its status) and its row.
func (c *Catalog) Update(e *Entry) error {
	if err := c.files.Put(e); err != nil {
		return err
	}
	return c.inTx(func(st *stmts) error { return insert(st, e, c.files.kept(e.Key())) })
}

// Summary is what purge weighs of an entry.
type Summary struct {
	Entry       *Entry
	Keep        bool
	AccessCount int64
	// LastAccess is the last use, or the creation when never used.
	LastAccess time.Time
}

// All returns a summary of every entry, oldest first.
func (c *Catalog) All(ctx context.Context) ([]Summary, error) {
	db, err := c.index()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, "SELECT r.record, e.keep, e.access_count, coalesce(e.last_access, e.created) FROM entries e JOIN records r ON r.key = e.key ORDER BY e.created, e.key")
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	defer rows.Close()
	var out []Summary
	for rows.Next() {
		var rec string
		var s Summary
		var last int64
		if err := rows.Scan(&rec, &s.Keep, &s.AccessCount, &last); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		s.Entry = new(Entry)
		if err := json.Unmarshal([]byte(rec), s.Entry); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		s.LastAccess = time.Unix(0, last).UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}
