package hosttool

import (
	"io"
	"strings"
	"sync"
)

// DefaultTailSize is how much of a tool's output a Tail keeps by default.
const DefaultTailSize = 64 << 10

// Tail passes a tool's output on to W and keeps its end, from which an
// error quotes the tool's own words. Its methods may be called at once
// from the goroutines copying stdout and stderr and from the caller.
type Tail struct {
	W    io.Writer // where the output goes on to; nil: nowhere
	Size int       // how many bytes to keep; 0: DefaultTailSize

	mu  sync.Mutex
	buf []byte
	cut bool // the start of the output was dropped
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.buf = append(t.buf, p...)
	size := t.Size
	if size <= 0 {
		size = DefaultTailSize
	}
	if over := len(t.buf) - size; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	t.mu.Unlock()
	if t.W == nil {
		return len(p), nil
	}
	return t.W.Write(p)
}

// Lines returns the kept output's complete, non-blank lines, trimmed on
// the right, with carriage-return progress reduced to its last state.
func (t *Tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := strings.Split(string(t.buf), "\n")
	if t.cut {
		all = all[1:] // a partial line
	}
	var out []string
	for _, l := range all {
		if i := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); i >= 0 {
			l = l[i+1:]
		}
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// String returns the kept lines, one per line.
func (t *Tail) String() string { return strings.Join(t.Lines(), "\n") }

// Last returns the last n lines joined with "; ", or "no message".
func (t *Tail) Last(n int) string {
	lines := t.Lines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	if len(lines) == 0 {
		return "no message"
	}
	return strings.Join(lines, "; ")
}
