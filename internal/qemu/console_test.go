package qemu

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// feedAll feeds chunks one by one and collects the events.
func feedAll(w *watcher, chunks ...string) []event {
	var evs []event
	for _, c := range chunks {
		evs = append(evs, w.feed([]byte(c))...)
	}
	return evs
}

func TestWatcherLoginPrompt(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		want   []event
	}{
		{"debian getty, no newline after the prompt",
			[]string{"[  OK  ] Started serial-getty@ttyS0.service\r\n\r\nDebian GNU/Linux 12 localhost ttyS0\r\n\r\nlocal", "host login: "},
			[]event{{evLogin, "localhost login:"}}},
		{"agetty clears the screen first",
			[]string{"\x1b[H\x1b[2J\x1b[01;01Hweb-1.example.org login: "},
			[]event{{evLogin, "web-1.example.org login:"}}},
		{"a kernel message lands on the prompt's line",
			[]string{"\r\nnode7 login: [   31.337] random: crng init done\r\n"},
			[]event{{evLogin, "node7 login: [   31.337] random: crng init done"}}},
		{"colored systemd status lines are not prompts",
			[]string{"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39msystemd-logind.service\x1b[0m - User Login Management.\r\n", "Starting login: service\r\n"},
			nil},
		{"login: in the middle of a line is not a prompt",
			[]string{"pam_unix(login:session): session opened\r\n", "  no login: here\r\n"},
			nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWatcher(nil, true)
			if got := feedAll(w, c.chunks...); !reflect.DeepEqual(got, c.want) {
				t.Errorf("events %+v, want %+v", got, c.want)
			}
		})
	}
	// With markers to expect, a login prompt is not reported.
	w := newWatcher([]string{"READY"}, false)
	if got := feedAll(w, "localhost login: "); len(got) != 0 {
		t.Errorf("login reported although not watched: %+v", got)
	}
}

func TestWatcherExpectedMarker(t *testing.T) {
	w := newWatcher([]string{"never", "SMOKE-OK"}, false)
	// The marker arrives in pieces, with an escape sequence cut in two.
	evs := feedAll(w, "booting\r\nresult: SMO", "KE\x1b[0", ";32m-O", "K\x1b[0m\r\n", "SMOKE-OK again\r\n")
	want := []event{{evExpect, "SMOKE-OK"}, {evExpect, "SMOKE-OK"}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events %+v, want %+v (once per line)", evs, want)
	}
	// Reported once per line, however many chunks the line comes in.
	w = newWatcher([]string{"up"}, false)
	if evs := feedAll(w, "it is up", " and", " running\n"); len(evs) != 1 {
		t.Errorf("events %+v, want one", evs)
	}
}

func TestWatcherPanic(t *testing.T) {
	w := newWatcher(nil, true)
	evs := feedAll(w, "[    1.5] Kernel panic - not sync")
	if len(evs) != 0 {
		t.Fatalf("a panic line is reported once complete, got %+v", evs)
	}
	evs = feedAll(w, "ing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n",
		"[    1.6] CPU: 0 PID: 1 Comm: swapper/0\r\n")
	want := []event{{evPanic, "[    1.5] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events %+v, want %+v", evs, want)
	}
	evs = feedAll(w, "[    1.7] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs ]---\r\n")
	if len(evs) != 1 || evs[0].kind != evPanicEnd {
		t.Errorf("end of the panic report: %+v", evs)
	}
	tail := w.lastLines()
	if len(tail) != 3 || !strings.Contains(tail[2], "end Kernel panic") {
		t.Errorf("tail %q", tail)
	}
}

func TestWatcherCleansLines(t *testing.T) {
	w := newWatcher(nil, false)
	feedAll(w,
		"\x1b]0;title\x07plain \x1b(Bcharset\r\n",
		"progress 10%\rprogress 100%\r\n",
		"bell\x07 and tab\there\n",
		"unfinished")
	want := []string{"plain charset", "progress 100%", "bell and tab\there", "unfinished"}
	if got := w.lastLines(); !reflect.DeepEqual(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

func TestWatcherKeepsTheLastLines(t *testing.T) {
	w := newWatcher(nil, false)
	for i := range 100 {
		w.feed([]byte(fmt.Sprintf("line %d\r\n", i)))
	}
	got := w.lastLines()
	if len(got) != tailLines || got[0] != "line 80" || got[tailLines-1] != "line 99" {
		t.Errorf("tail %q", got)
	}
	// A guest printing without newlines cannot make the watcher hold it all.
	w.feed([]byte(strings.Repeat("x", 10*maxLine)))
	for _, l := range w.lastLines() {
		if len(l) > maxLine {
			t.Fatalf("a line of %d bytes kept", len(l))
		}
	}
	if evs := w.finish(); len(evs) != 0 || w.lastLines()[tailLines-1] != strings.Repeat("x", maxLine) {
		t.Errorf("finish: %+v", evs)
	}
}
