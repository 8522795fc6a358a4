package swstack

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // pure Go: go build needs no cgo
)

// readRpmSqlite reads rpm's SQLite database (rpm 4.16 on: Fedora 33+,
// RHEL 9): a table Packages of header blobs. rpm's older Berkeley DB
// (Packages) and SUSE's ndb (Packages.db) are not read.
//
// The file is opened inside the root first (so a planted symlink cannot
// point it elsewhere) and SQLite reads that very descriptor through
// /proc/self/fd, read-only and immutable (no journal, no lock files
// written into the image).
func (img *image) readRpmSqlite(rel string) ([]Package, error) {
	f, _, err := img.openBounded(rel, maxDatabase)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dsn := fmt.Sprintf("file:/proc/self/fd/%d?mode=ro&immutable=1", f.Fd())
	if wal, err := img.open(rel + "-wal"); err == nil && walSize(wal) > 0 {
		// Writes not yet checkpointed (rpm was killed): immutable would
		// miss them, so read a copy of the database and its log.
		defer wal.Close()
		tmp, err := os.MkdirTemp("", "fgimg-rpmdb-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		if err := copyTo(filepath.Join(tmp, "rpmdb.sqlite"), f); err != nil {
			return nil, err
		}
		if err := copyTo(filepath.Join(tmp, "rpmdb.sqlite-wal"), wal); err != nil {
			return nil, err
		}
		dsn = "file:" + filepath.Join(tmp, "rpmdb.sqlite")
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query("SELECT hnum, blob FROM Packages ORDER BY hnum")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Package
	for rows.Next() {
		var hnum int64
		var blob []byte
		if err := rows.Scan(&hnum, &blob); err != nil {
			return nil, err
		}
		p, err := parseRpmHeader(blob)
		if err != nil {
			return nil, fmt.Errorf("package %d: %w", hnum, err)
		}
		if p.Name == "gpg-pubkey" { // an imported signing key, not software
			continue
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func walSize(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// copyTo copies f, at most maxDatabase bytes, to the new file dst.
func copyTo(dst string, f *os.File) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(f, maxDatabase+1))
	if err == nil && n > maxDatabase {
		err = fmt.Errorf("%s is more than the %d bytes read from an image", f.Name(), maxDatabase)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// rpm header tags and types (rpm's include/rpm/rpmtag.h).
const (
	tagName      = 1000
	tagVersion   = 1001
	tagRelease   = 1002
	tagEpoch     = 1003
	tagArch      = 1022
	tagSourceRPM = 1044

	typeInt32  = 4
	typeString = 6
)

// parseRpmHeader reads the package's name, [epoch:]version-release,
// architecture and source package from an rpm header as the database
// stores it: index length and data length (big-endian int32), the index
// entries (tag, type, offset, count), then the data.
func parseRpmHeader(b []byte) (Package, error) {
	var p Package
	if len(b) < 8 {
		return p, errors.New("short rpm header")
	}
	il, dl := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	if il > 1<<16 || dl > 1<<28 || uint64(8+16*il)+uint64(dl) > uint64(len(b)) {
		return p, errors.New("malformed rpm header: its sizes exceed the blob")
	}
	index, data := b[8:8+16*il], b[8+16*il:8+16*il+dl]
	var version, release, epoch, source string
	for i := range il {
		e := index[16*i:]
		tag, typ, off := binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:]), binary.BigEndian.Uint32(e[8:])
		if off >= dl {
			continue
		}
		var dst *string
		switch tag {
		case tagName:
			dst = &p.Name
		case tagVersion:
			dst = &version
		case tagRelease:
			dst = &release
		case tagArch:
			dst = &p.Arch
		case tagSourceRPM:
			dst = &source
		case tagEpoch:
			if typ == typeInt32 && off+4 <= dl {
				epoch = strconv.FormatUint(uint64(binary.BigEndian.Uint32(data[off:])), 10)
			}
			continue
		default:
			continue
		}
		if typ != typeString {
			return p, fmt.Errorf("malformed rpm header: tag %d has type %d, not a string", tag, typ)
		}
		s := data[off:]
		end := 0
		for end < len(s) && s[end] != 0 {
			end++
		}
		*dst = string(s[:end])
	}
	if p.Name == "" || version == "" {
		return p, errors.New("an rpm header without a name or version")
	}
	p.Version = version
	if release != "" {
		p.Version += "-" + release
	}
	if epoch != "" {
		p.Version = epoch + ":" + p.Version
	}
	if src := sourceName(source); src != "" && src != p.Name {
		p.Source = src
	}
	return p, nil
}

// sourceName is the name in a source rpm's file name,
// NAME-VERSION-RELEASE.src.rpm.
func sourceName(file string) string {
	s, ok := strings.CutSuffix(file, ".src.rpm")
	if !ok {
		s, ok = strings.CutSuffix(file, ".nosrc.rpm")
	}
	if !ok {
		return ""
	}
	for range 2 {
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return ""
		}
		s = s[:i]
	}
	return s
}
