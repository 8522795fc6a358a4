package qemu

import (
	"regexp"
	"strings"
)

// eventKind is what the console watcher saw.
type eventKind int

const (
	evExpect   eventKind = iota // one of the expected markers
	evLogin                     // a login prompt
	evPanic                     // "Kernel panic"
	evPanicEnd                  // "---[ end Kernel panic ...": the panic report is complete
)

type event struct {
	kind eventKind
	text string // the marker, or the console line
}

// loginPrompt is getty's prompt: a host name and "login: " making a whole
// line (after escape sequences are removed), as the guest waits for input
// there; or followed by a kernel message that landed on the same line.
var loginPrompt = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]* login: (\[ *[0-9]+\.[0-9]+\].*)?$`)

const (
	tailLines = 20
	maxLine   = 4096 // longer lines are cut, so a guest cannot make the watcher hold much
)

// watcher reads the serial console as it comes and reports the lines
// that end a boot. Lines are cleaned first: carriage returns, escape
// sequences and other control characters are removed.
type watcher struct {
	expect []string
	login  bool // report login prompts

	line  []byte // the current line so far, cleaned
	esc   int    // escape-sequence state carried across chunks
	cr    bool   // the last byte was a carriage return
	tail  []string
	bytes int64 // bytes seen in all

	reported map[eventKind]bool
}

func newWatcher(expect []string, login bool) *watcher {
	return &watcher{expect: expect, login: login, reported: map[eventKind]bool{}}
}

// Escape-sequence states.
const (
	escNone   = iota
	escStart  // after ESC
	escCSI    // inside ESC [ ... final byte
	escOSC    // inside ESC ] ... BEL or ESC \
	escOSCEsc // ESC seen inside an OSC
	escOne    // one more byte to skip (ESC ( B and the like)
)

// feed takes the next chunk of console output and returns what it saw.
func (w *watcher) feed(p []byte) []event {
	var evs []event
	w.bytes += int64(len(p))
	for _, c := range p {
		switch w.esc {
		case escStart:
			switch c {
			case '[':
				w.esc = escCSI
			case ']':
				w.esc = escOSC
			case '(', ')', '*', '+', '#', '%':
				w.esc = escOne
			default:
				w.esc = escNone
			}
			continue
		case escCSI:
			if c >= 0x40 && c <= 0x7e {
				w.esc = escNone
			}
			continue
		case escOSC:
			if c == 0x07 {
				w.esc = escNone
			} else if c == 0x1b {
				w.esc = escOSCEsc
			}
			continue
		case escOSCEsc:
			w.esc = escNone
			continue
		case escOne:
			w.esc = escNone
			continue
		}
		cr := w.cr
		w.cr = false
		switch {
		case c == 0x1b:
			w.esc = escStart
		case c == '\n':
			evs = w.endLine(evs)
		case c == '\r':
			w.cr = true
		case c < 0x20 && c != '\t', c == 0x7f:
			// other control characters: bell, backspace, NUL...
		default:
			if cr {
				// A bare carriage return: what follows overwrites the line.
				w.line = w.line[:0]
			}
			if len(w.line) >= maxLine {
				evs = w.endLine(evs)
			}
			w.line = append(w.line, c)
		}
	}
	// A prompt is not followed by a newline: look at the line so far.
	return w.check(string(w.line), false, evs)
}

// endLine completes the current line.
func (w *watcher) endLine(evs []event) []event {
	s := string(w.line)
	evs = w.check(s, true, evs)
	w.line = w.line[:0]
	if len(w.tail) == tailLines {
		copy(w.tail, w.tail[1:])
		w.tail = w.tail[:tailLines-1]
	}
	w.tail = append(w.tail, s)
	// A new line may report again what the previous one did.
	for _, k := range []eventKind{evExpect, evLogin} {
		delete(w.reported, k)
	}
	return evs
}

// check looks for the markers in one line, reporting each kind of event
// once per line (panics once in all). Panics are reported from complete
// lines only, so that the message is whole.
func (w *watcher) check(s string, complete bool, evs []event) []event {
	add := func(k eventKind, text string) {
		if !w.reported[k] {
			w.reported[k] = true
			evs = append(evs, event{k, text})
		}
	}
	for _, m := range w.expect {
		if m != "" && strings.Contains(s, m) {
			add(evExpect, m)
			break
		}
	}
	if w.login && loginPrompt.MatchString(s) {
		add(evLogin, strings.TrimSpace(s))
	}
	if !complete {
		return evs
	}
	if strings.Contains(s, "end Kernel panic") {
		add(evPanic, strings.TrimSpace(s))
		add(evPanicEnd, strings.TrimSpace(s))
	} else if strings.Contains(s, "Kernel panic") {
		add(evPanic, strings.TrimSpace(s))
	}
	return evs
}

// lastLines returns the last lines of the console, the unfinished one
// included.
func (w *watcher) lastLines() []string {
	out := append([]string(nil), w.tail...)
	if len(w.line) > 0 {
		out = append(out, string(w.line))
	}
	if len(out) > tailLines {
		out = out[len(out)-tailLines:]
	}
	return out
}

// finish completes an unfinished last line, at the end of the output.
func (w *watcher) finish() []event {
	if len(w.line) == 0 {
		return nil
	}
	return w.endLine(nil)
}
