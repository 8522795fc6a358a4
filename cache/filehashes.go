package cache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// FileHashes remembers the content digests of template source files by
// path and stat data (size, mtime, ctime, inode), as git's index does, so
// planning does not reread an unchanged multi-GB tarball. A file changed
// less than racyWindow before it was hashed is not remembered: an edit
// within the same timestamp tick could otherwise go unseen.
type FileHashes struct {
	path    string
	mu      sync.Mutex
	entries map[string]fileHash
	dirty   bool
}

const racyWindow = 2 * time.Second

type fileHash struct {
	Size   int64         `json:"size"`
	Mtime  int64         `json:"mtime"`
	Ctime  int64         `json:"ctime"`
	Ino    uint64        `json:"ino"`
	Dev    uint64        `json:"dev"`
	Digest digest.Digest `json:"digest"`
}

// FileHashes loads the store's file digest memo; a missing or unreadable
// one starts empty.
func (s *Store) FileHashes() *FileHashes {
	h := &FileHashes{path: filepath.Join(s.root, "filehashes.json"), entries: map[string]fileHash{}}
	if b, err := os.ReadFile(h.path); err == nil {
		_ = json.Unmarshal(b, &h.entries)
	}
	return h
}

func stamp(fi os.FileInfo) (fileHash, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileHash{}, false
	}
	return fileHash{Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Dev: uint64(st.Dev)}, true
}

// Get returns the remembered digest of the file at path if its stat data
// still match.
func (h *FileHashes) Get(path string, fi os.FileInfo) (digest.Digest, bool) {
	cur, ok := stamp(fi)
	if !ok {
		return "", false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.entries[path]
	if !ok || e.Size != cur.Size || e.Mtime != cur.Mtime || e.Ctime != cur.Ctime || e.Ino != cur.Ino || e.Dev != cur.Dev {
		return "", false
	}
	return e.Digest, true
}

// Put remembers a digest computed from the file described by fi.
func (h *FileHashes) Put(path string, fi os.FileInfo, d digest.Digest) {
	e, ok := stamp(fi)
	if !ok || time.Since(time.Unix(0, max(e.Mtime, e.Ctime))) < racyWindow {
		return
	}
	e.Digest = d
	h.mu.Lock()
	defer h.mu.Unlock()
	h.entries[path] = e
	h.dirty = true
}

// Save writes the memo atomically; concurrent savers lose nothing but
// each other's newest entries.
func (h *FileHashes) Save() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.dirty {
		return nil
	}
	b, err := json.Marshal(h.entries)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(h.path), ".filehashes-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	h.dirty = false
	return os.Rename(tmp.Name(), h.path)
}
