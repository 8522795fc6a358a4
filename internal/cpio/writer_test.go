package cpio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/testkit"
)

// entryOf is a parsed entry with its data.
type entryOf struct {
	Header
	data string
}

func readAll(t testing.TB, b []byte) []entryOf {
	t.Helper()
	r := NewReader(bytes.NewReader(b))
	var out []entryOf
	for {
		h, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading archive: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		out = append(out, entryOf{*h, string(data)})
	}
}

func TestWriterRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w := NewWriterSize(&b, 4096) // small, so that entries straddle flushes
	big := strings.Repeat("0123456789abcdef", 1000)
	in := []entryOf{
		{Header{Name: ".", Mode: TypeDir | 0o755, Nlink: 3, Mtime: 1_600_000_000, Ino: 1}, ""},
		{Header{Name: "etc", Mode: TypeDir | 0o755, Nlink: 2, Ino: 2}, ""},
		{Header{Name: "etc/a", Mode: TypeReg | 0o640, Uid: 7, Gid: 42, Nlink: 1, Size: 5, Ino: 3, Mtime: 12345}, "hello"},
		{Header{Name: "etc/big", Mode: TypeReg | 0o644, Nlink: 1, Size: int64(len(big)), Ino: 4}, big},
		{Header{Name: "etc/link", Mode: TypeSymlink | 0o777, Nlink: 1, Ino: 5, Linkname: "a"}, ""},
		{Header{Name: "null", Mode: TypeChar | 0o666, Nlink: 1, Ino: 6, RdevMajor: 1, RdevMinor: 3}, ""},
		{Header{Name: "sda", Mode: TypeBlock | 0o660, Gid: 6, Nlink: 1, Ino: 7, RdevMajor: 8, RdevMinor: 0}, ""},
		{Header{Name: "fifo", Mode: TypeFifo | 0o600, Nlink: 1, Ino: 8}, ""},
		{Header{Name: "setuid", Mode: TypeReg | 0o4755, Nlink: 1, Size: 1, Ino: 9}, "x"},
	}
	for _, e := range in {
		if err := w.WriteHeader(&e.Header); err != nil {
			t.Fatalf("WriteHeader(%s): %v", e.Name, err)
		}
		if _, err := io.WriteString(w, e.data); err != nil {
			t.Fatalf("writing %s: %v", e.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b.Len()%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", b.Len())
	}
	if !bytes.HasSuffix(b.Bytes(), []byte(Trailer+"\x00\x00\x00\x00")) {
		t.Errorf("archive does not end with the padded trailer: %q", b.Bytes()[b.Len()-20:])
	}
	out := readAll(t, b.Bytes())
	if len(out) != len(in) {
		t.Fatalf("read %d entries, wrote %d", len(out), len(in))
	}
	for i := range in {
		want := in[i]
		if want.Mode&TypeMask == TypeSymlink {
			want.Size = int64(len(want.Linkname))
		}
		if out[i] != want {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, out[i], want)
		}
	}
}

// TestWriterLayout checks the bytes of one entry against the newc format:
// the header fields in order, the name with its NUL padded so that the
// data starts on a 4-byte boundary, the data padded to 4 bytes.
func TestWriterLayout(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	h := &Header{Name: "ab", Mode: TypeReg | 0o644, Uid: 1000, Gid: 100, Nlink: 1, Mtime: 0x5e0be100, Size: 3, Ino: 1,
		RdevMajor: 0, RdevMinor: 0}
	if err := w.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "xyz")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "070701" + "00000001" + "000081a4" + "000003e8" + "00000064" + "00000001" + "5e0be100" +
		"00000003" + "00000000" + "00000000" + "00000000" + "00000000" + "00000003" + "00000000" +
		"ab\x00" + "\x00\x00\x00" + // 110 + 3 = 113, padded to 116
		"xyz\x00" +
		"070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "0000000b" + "00000000" +
		"TRAILER!!!\x00" + "\x00\x00\x00" // 110 + 11 = 121, padded to 124
	if got := b.String(); got != want {
		t.Errorf("archive bytes:\n got %q\nwant %q", got, want)
	}
}

func TestWriterMtimeRange(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, e := range []struct {
		name  string
		mtime int64
	}{{"old", -100}, {"far", 1 << 40}} {
		if err := w.WriteHeader(&Header{Name: e.name, Mode: TypeDir | 0o755, Mtime: e.mtime}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	out := readAll(t, b.Bytes())
	if out[0].Mtime != 0 || out[1].Mtime != 1<<32-1 {
		t.Errorf("mtimes out of range written as %d and %d, want 0 and 2^32-1", out[0].Mtime, out[1].Mtime)
	}
}

func TestWriterErrors(t *testing.T) {
	reg := func(name string, size int64) *Header {
		return &Header{Name: name, Mode: TypeReg | 0o644, Size: size, Nlink: 1}
	}
	tests := []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"too long", func(w *Writer) error {
			w.WriteHeader(reg("a", 2))
			_, err := w.Write([]byte("abc"))
			return err
		}, "write too long"},
		{"short", func(w *Writer) error {
			w.WriteHeader(reg("a", 2))
			w.Write([]byte("a"))
			return w.WriteHeader(reg("b", 0))
		}, "1 bytes missing"},
		{"short at close", func(w *Writer) error {
			w.WriteHeader(reg("a", 2))
			return w.Close()
		}, "2 bytes missing"},
		{"nul", func(w *Writer) error { return w.WriteHeader(reg("a\x00b", 0)) }, "NUL"},
		{"empty name", func(w *Writer) error { return w.WriteHeader(reg("", 0)) }, "empty name"},
		{"long name", func(w *Writer) error { return w.WriteHeader(reg(strings.Repeat("x", 4096), 0)) }, "longer than 4095"},
		{"trailer", func(w *Writer) error { return w.WriteHeader(reg(Trailer, 0)) }, "ends an archive"},
		{"dir data", func(w *Writer) error {
			return w.WriteHeader(&Header{Name: "d", Mode: TypeDir | 0o755, Size: 1})
		}, "only regular files"},
		{"no type", func(w *Writer) error { return w.WriteHeader(&Header{Name: "d", Mode: 0o755}) }, "unknown file type"},
		{"huge", func(w *Writer) error { return w.WriteHeader(reg("a", 1<<32)) }, "4 GiB"},
		{"empty symlink", func(w *Writer) error {
			return w.WriteHeader(&Header{Name: "l", Mode: TypeSymlink | 0o777})
		}, "symlink target"},
		{"after close", func(w *Writer) error {
			w.Close()
			return w.WriteHeader(reg("a", 0))
		}, "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(NewWriter(io.Discard))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriterReportsWriteErrors(t *testing.T) {
	w := NewWriterSize(&failWriter{after: 8192}, 4096)
	w.WriteHeader(&Header{Name: "a", Mode: TypeReg | 0o644, Size: 1 << 20})
	_, err := w.Write(make([]byte, 1<<20))
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write: got %v, want the writer's error", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a failed write succeeded")
	}
}

// TestReaderReadsGNUCpio reads an archive GNU cpio wrote, so the reader
// the other tests rely on is checked against the reference.
func TestReaderReadsGNUCpio(t *testing.T) {
	testkit.Need(t, "cpio")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "d/f"), []byte("contents"), 0o600)
	os.Symlink("d/f", filepath.Join(dir, "l"))
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -o -H newc")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -o: %v", err)
	}
	var got []string
	for _, e := range readAll(t, out) {
		got = append(got, e.Name+" "+e.Linkname+e.data)
	}
	want := []string{". ", "d ", "d/f contents", "l d/f"} // GNU cpio drops the "./"
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("entries %q, want %q", got, want)
	}
}
