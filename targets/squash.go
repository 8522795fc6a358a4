package targets

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh." // aufs bookkeeping; ".wh..wh..opq" is the one that matters
	opaqueWhiteout = ".wh..wh..opq"

	copyBufferSize  = 1 << 20
	indexBufferSize = 256 << 10
)

// implicitTime is the modification time of directories no layer has an
// entry for (the root, and parents a layer left out).
var implicitTime = time.Unix(0, 0).UTC()

// Squash writes the root filesystem that the layers (bottom first) make,
// as one uncompressed tar, to w.
//
// Layers are applied the way an OCI runtime unpacks them: an upper entry
// replaces a lower one of the same name (a directory over a directory
// keeps its contents and takes the new metadata), ".wh.<name>" deletes
// <name> from the layers below, ".wh..wh..opq" empties its directory of
// what the layers below put there, and entries beneath a symlinked
// directory land where the symlink leads. The result has no whiteouts.
//
// Entries come in canonical order (depth first, each directory's names
// sorted byte-wise, as layer.WriteTree writes them), without an entry for
// the root itself, with numeric owners, modes, extended attributes
// (SCHILY.xattr), device numbers and modification times kept; times later
// than epoch, when it is set, are clamped to it. Hard links stay hard
// links: the first surviving name of a file (in output order) carries its
// contents and the others link to it, even when the name the layers
// linked to was deleted. The same layers always give the same bytes.
//
// Each layer is read once for its headers; file contents are then copied
// straight from the layer files in output order, so memory holds only
// metadata.
func Squash(ctx context.Context, w io.Writer, layers []Layer, epoch *time.Time) error {
	s := &squasher{ctx: ctx, epoch: epoch}
	defer s.close()
	s.root = &node{ino: &inode{typ: tar.TypeDir, mode: 0o755, mtime: implicitTime}, children: map[string]*node{}}
	for i, l := range layers {
		if err := s.addLayer(i, l); err != nil {
			return fmt.Errorf("squashing layer %d (%s): %w", i, l.Digest, err)
		}
	}
	if err := s.write(w); err != nil {
		return fmt.Errorf("writing squashed root filesystem: %w", err)
	}
	return nil
}

// inode is one file's metadata and where its contents are. Hard links
// share one inode.
type inode struct {
	typ      byte
	mode     int64
	uid, gid int
	mtime    time.Time
	linkname string // symlink target
	devmajor int64
	devminor int64
	xattrs   map[string]string // PAX records, SCHILY.xattr.* only

	size    int64
	layer   int   // which layer file holds the contents
	offset  int64 // of the contents in the layer file; -1 for a sparse entry
	ordinal int   // the entry's number in its layer, to find a sparse entry again

	linked bool   // some name was added as a hard link to this inode
	first  string // set while writing: the name that carries the contents
}

type node struct {
	name     string
	children map[string]*node // directories only
	ino      *inode
}

func (n *node) isDir() bool { return n.ino.typ == tar.TypeDir }

type squasher struct {
	ctx   context.Context
	epoch *time.Time
	root  *node
	files []*os.File // the layer files, by layer index
	buf   []byte
	out   io.Writer // what the tar writer writes to, for sparse headers
}

func (s *squasher) close() {
	for _, f := range s.files {
		f.Close()
	}
}

// pending is a layer entry waiting for the layer's whiteouts to be applied.
type pending struct {
	name string // cleaned
	ino  *inode
	link string // cleaned hard link target, for TypeLink
}

func (s *squasher) addLayer(idx int, l Layer) error {
	f, err := os.Open(l.Path)
	if err != nil {
		return err
	}
	s.files = append(s.files, f)

	// Whiteouts hide only what the layers below made, so all of a
	// layer's whiteouts are applied before any of its entries.
	var entries []pending
	var whiteouts []string
	pr := &posReader{f: f, buf: make([]byte, indexBufferSize)}
	tr := tar.NewReader(pr)
	for ordinal := 0; ; ordinal++ {
		if ordinal%256 == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := rootpath.CleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the root itself has no entry in the output
		}
		if base := path.Base(name); strings.HasPrefix(base, whiteoutPrefix) {
			if base == opaqueWhiteout || !strings.HasPrefix(base, whiteoutMeta) {
				whiteouts = append(whiteouts, name)
			}
			continue
		}
		ino, err := s.inode(hdr, idx, pr.pos, ordinal)
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		p := pending{name: name, ino: ino}
		if hdr.Typeflag == tar.TypeLink {
			if p.link, err = rootpath.CleanName(hdr.Linkname); err != nil {
				return fmt.Errorf("entry %q: hard link target: %w", hdr.Name, err)
			}
			if p.link == "" {
				return fmt.Errorf("entry %q: hard link to the root", hdr.Name)
			}
		}
		entries = append(entries, p)
	}
	for _, name := range whiteouts {
		s.whiteout(name)
	}
	for _, e := range entries {
		if err := s.add(e); err != nil {
			return fmt.Errorf("entry %q: %w", e.name, err)
		}
	}
	return nil
}

// inode turns a header into an inode; offset is where the reader stands,
// which for a regular file is the start of its contents.
func (s *squasher) inode(hdr *tar.Header, layer int, offset int64, ordinal int) (*inode, error) {
	ino := &inode{
		typ:      hdr.Typeflag,
		mode:     hdr.Mode & 0o7777,
		uid:      hdr.Uid,
		gid:      hdr.Gid,
		mtime:    hdr.ModTime,
		devmajor: hdr.Devmajor,
		devminor: hdr.Devminor,
		layer:    layer,
		offset:   -1,
		ordinal:  ordinal,
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && !isOverlayXattr(name) {
			if ino.xattrs == nil {
				ino.xattrs = map[string]string{}
			}
			ino.xattrs[k] = v
		}
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		ino.typ = tar.TypeReg
		ino.size = hdr.Size
		if !isSparse(hdr) {
			ino.offset = offset
		}
	case tar.TypeSymlink:
		ino.linkname = hdr.Linkname
	case tar.TypeDir, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil, fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if hdr.Typeflag != tar.TypeChar && hdr.Typeflag != tar.TypeBlock {
		ino.devmajor, ino.devminor = 0, 0
	}
	return ino, nil
}

// isSparse reports whether archive/tar reads hdr's contents through a
// sparse map, so that they are not simply hdr.Size bytes at the data
// offset.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	major, minor := hdr.PAXRecords["GNU.sparse.major"], hdr.PAXRecords["GNU.sparse.minor"]
	switch {
	case major == "0" && (minor == "0" || minor == "1"), major == "1" && minor == "0":
		return true
	case major != "" || minor != "":
		return false
	}
	return hdr.PAXRecords["GNU.sparse.map"] != ""
}

func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

func splitName(name string) (dir, base string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// whiteout applies ".wh.<x>" or ".wh..wh..opq" at name. Nothing there to
// hide is no error.
func (s *squasher) whiteout(name string) {
	dirName, base := splitName(name)
	dir, err := s.dir(dirName, false)
	if err != nil {
		return
	}
	if base == opaqueWhiteout {
		clear(dir.children)
		return
	}
	delete(dir.children, strings.TrimPrefix(base, whiteoutPrefix))
}

// add puts one entry of the current layer into the tree.
func (s *squasher) add(e pending) error {
	dirName, base := splitName(e.name)
	dir, err := s.dir(dirName, true)
	if err != nil {
		return err
	}
	old := dir.children[base]
	if old != nil && old.isDir() && e.ino.typ == tar.TypeDir {
		old.ino = e.ino // a directory over a directory keeps its contents
		return nil
	}
	// Replace first, then resolve a hard link, as extracting does.
	delete(dir.children, base)
	ino := e.ino
	if ino.typ == tar.TypeLink {
		tdirName, tbase := splitName(e.link)
		tdir, err := s.dir(tdirName, false)
		if err != nil {
			return fmt.Errorf("hard link to %q: %w", e.link, err)
		}
		target := tdir.children[tbase]
		switch {
		case target == nil:
			return fmt.Errorf("hard link to %q: no such file", e.link)
		case target.isDir():
			return fmt.Errorf("hard link to %q: it is a directory", e.link)
		}
		ino = target.ino
		ino.linked = true
	}
	n := &node{name: base, ino: ino}
	if ino.typ == tar.TypeDir {
		n.children = map[string]*node{}
	}
	dir.children[base] = n
	return nil
}

// dir resolves the directory rel, strictly beneath the root as layer
// Apply does (a symlink leading out is an error, not followed), making
// missing directories when create is set.
func (s *squasher) dir(rel string, create bool) (*node, error) {
	res, err := rootpath.Walk[*node](squashTree{}, s.root, rel+"/.", rootpath.Beneath, rootpath.Options{FollowFinal: true, Create: create})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	return res.Dir, nil
}

// squashTree lets rootpath.Walk step through the tree in memory.
type squashTree struct{}

func (squashTree) Lstat(dir *node, name string) (rootpath.Kind, error) {
	switch c := dir.children[name]; {
	case c == nil:
		return 0, unix.ENOENT
	case c.isDir():
		return rootpath.KindDir, nil
	case c.ino.typ == tar.TypeSymlink:
		return rootpath.KindSymlink, nil
	}
	return rootpath.KindOther, nil
}

func (squashTree) Readlink(dir *node, name string) (string, error) {
	return dir.children[name].ino.linkname, nil
}

func (squashTree) Enter(dir *node, name string) (*node, error) { return dir.children[name], nil }

func (squashTree) Mkdir(dir *node, name string) error {
	dir.children[name] = &node{name: name, children: map[string]*node{}, ino: &inode{typ: tar.TypeDir, mode: 0o755, mtime: implicitTime}}
	return nil
}

func (squashTree) Dup(dir *node) (*node, error) { return dir, nil }
func (squashTree) Release(*node)                {}

// write writes the tree in canonical order.
func (s *squasher) write(w io.Writer) error {
	s.buf = make([]byte, copyBufferSize)
	s.out = w
	tw := tar.NewWriter(w)
	count := 0
	var walk func(dir *node, prefix string) error
	walk = func(dir *node, prefix string) error {
		names := make([]string, 0, len(dir.children))
		for name := range dir.children {
			names = append(names, name)
		}
		slices.Sort(names) // byte-wise
		for _, name := range names {
			if count++; count%256 == 0 {
				if err := s.ctx.Err(); err != nil {
					return err
				}
			}
			n := dir.children[name]
			full := prefix + name
			if err := s.entry(tw, n, full); err != nil {
				return fmt.Errorf("%s: %w", full, err)
			}
			if n.isDir() {
				if err := walk(n, full+"/"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(s.root, ""); err != nil {
		return err
	}
	return tw.Close()
}

func (s *squasher) entry(tw *tar.Writer, n *node, name string) error {
	ino := n.ino
	hdr := &tar.Header{
		Typeflag: ino.typ,
		Name:     name,
		Mode:     ino.mode,
		Uid:      ino.uid,
		Gid:      ino.gid,
		ModTime:  ino.mtime,
		Format:   tar.FormatPAX,
	}
	if s.epoch != nil && hdr.ModTime.After(*s.epoch) {
		hdr.ModTime = *s.epoch
	}
	if len(ino.xattrs) > 0 {
		hdr.PAXRecords = ino.xattrs
	}
	if ino.linked {
		if ino.first != "" {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = ino.first
			return tw.WriteHeader(hdr)
		}
		ino.first = name
	}
	switch ino.typ {
	case tar.TypeDir:
		hdr.Name += "/"
	case tar.TypeSymlink:
		hdr.Linkname = ino.linkname
	case tar.TypeChar, tar.TypeBlock:
		hdr.Devmajor, hdr.Devminor = ino.devmajor, ino.devminor
	case tar.TypeReg:
		hdr.Size = ino.size
		if ino.size >= minHole {
			data, err := s.dataSegments(ino)
			if err != nil {
				return err
			}
			if data != nil {
				return s.writeSparse(tw, hdr, ino, data)
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		return s.contents(tw, ino)
	}
	return tw.WriteHeader(hdr)
}

// open returns a reader of a regular file's contents in its layer; for
// a file stored dense it is also an io.Seeker.
func (s *squasher) open(ino *inode) (io.Reader, error) {
	f := s.files[ino.layer]
	if ino.offset >= 0 {
		sec := io.NewSectionReader(f, ino.offset, ino.size)
		return &ctxSection{ctxReader{ctx: s.ctx, r: sec}, sec}, nil
	}
	// A sparse entry: let archive/tar expand it, skipping (seeking)
	// over the entries before it.
	tr := tar.NewReader(io.NewSectionReader(f, 0, 1<<62))
	for i := 0; i <= ino.ordinal; i++ {
		if _, err := tr.Next(); err != nil {
			return nil, fmt.Errorf("finding sparse entry again in layer %d: %w", ino.layer, err)
		}
	}
	return &ctxReader{ctx: s.ctx, r: io.LimitReader(tr, ino.size)}, nil
}

// contents copies a regular file's contents from its layer.
func (s *squasher) contents(w io.Writer, ino *inode) error {
	r, err := s.open(ino)
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(w, r, s.buf)
	if err != nil {
		return err
	}
	if n != ino.size {
		return fmt.Errorf("layer %d ends within the file's contents", ino.layer)
	}
	return nil
}

// ctxReader stops a long copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ctxSection is a ctxReader over a file's section that seeks in it.
type ctxSection struct {
	ctxReader
	sec *io.SectionReader
}

func (c *ctxSection) Seek(off int64, whence int) (int64, error) { return c.sec.Seek(off, whence) }

// posReader is a buffered io.ReadSeeker over a file that knows its
// position, so that after tar.Reader.Next the offset of the entry's
// contents is known. archive/tar skips contents with Seek, which within
// the buffer costs nothing.
type posReader struct {
	f      *os.File
	buf    []byte
	bufOff int64 // file offset of buf[0]
	r, w   int   // buf[r:w] is unread
	pos    int64 // = bufOff + r
}

func (p *posReader) Read(b []byte) (int, error) {
	if p.r == p.w {
		if len(b) >= len(p.buf) {
			n, err := p.f.ReadAt(b, p.pos)
			p.pos += int64(n)
			p.bufOff, p.r, p.w = p.pos, 0, 0
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		n, err := p.f.ReadAt(p.buf, p.pos)
		p.bufOff, p.r, p.w = p.pos, 0, n
		if n == 0 {
			return 0, err
		}
	}
	n := copy(b, p.buf[p.r:p.w])
	p.r += n
	p.pos += int64(n)
	return n, nil
}

func (p *posReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = p.pos + offset
	default:
		return p.pos, errors.New("posReader: unsupported whence")
	}
	if abs < 0 {
		return p.pos, errors.New("posReader: negative position")
	}
	if abs >= p.bufOff && abs <= p.bufOff+int64(p.w) {
		p.r = int(abs - p.bufOff)
	} else {
		p.bufOff, p.r, p.w = abs, 0, 0
	}
	p.pos = abs
	return abs, nil
}
