package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The pending journal is how a build records without opening the
// index: Record appends one JSON line to pending.log, and the next
// process to open the index takes every line in, in one transaction.
//
// Appenders hold pending.lock shared, the taker exclusive: it renames
// pending.log to pending.taking, so that no append lands in a file it
// has read, indexes it, commits and removes it. A taker killed before
// the removal leaves pending.taking, which the next taker indexes first;
// indexing a line twice changes nothing (entries are indexed once, and
// usage events are unique in the index).

// pending is one line of the journal: the entries a build made or
// found, and the uses it counted.
type pending struct {
	Keys []string     `json:"keys,omitempty"`
	Uses []pendingUse `json:"uses,omitempty"`
}

type pendingUse struct {
	Key string `json:"key"`
	Event
}

func (f *Files) pendingPath() string { return filepath.Join(f.dir, "pending.log") }
func (f *Files) takingPath() string  { return filepath.Join(f.dir, "pending.taking") }

// appendPending appends p to the journal in one write.
func (f *Files) appendPending(p pending) error {
	if len(p.Keys) == 0 && len(p.Uses) == 0 {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	unlock, err := f.lockPending(unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	w, err := os.OpenFile(f.pendingPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("catalog: recording: %w", err)
	}
	return nil
}

// lockPending takes pending.lock, shared or exclusive (LOCK_SH, LOCK_EX).
func (f *Files) lockPending(how int) (func(), error) {
	l, err := os.OpenFile(filepath.Join(f.dir, "pending.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	for {
		err = unix.Flock(int(l.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("catalog: locking the pending journal: %w", err)
	}
	return func() { l.Close() }, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// ingest takes the pending journal into the index. With nothing pending
// it costs two stats.
func (c *Catalog) ingest() error {
	f := c.files
	if !exists(f.pendingPath()) && !exists(f.takingPath()) {
		return nil
	}
	unlock, err := f.lockPending(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	// A journal a killed taker left first, then the current one.
	for _, renamed := range []bool{false, true} {
		if renamed {
			err := os.Rename(f.pendingPath(), f.takingPath())
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("catalog: %w", err)
			}
		}
		b, err := os.ReadFile(f.takingPath())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		tx, err := c.db.Begin()
		if err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		st := newStmts(tx)
		for _, line := range strings.Split(string(b), "\n") {
			var p pending
			// A torn last line (a build killed mid-write) is skipped:
			// its records and usage logs are whole, and a rebuild reads them.
			if line == "" || json.Unmarshal([]byte(line), &p) != nil {
				continue
			}
			if err = c.indexPending(st, p); err != nil {
				break
			}
		}
		st.close()
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			tx.Rollback()
			return fmt.Errorf("catalog: taking in the pending journal: %w", err)
		}
		if err := os.Remove(f.takingPath()); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
	}
	return nil
}
