package shquote

import (
	"os/exec"
	"strings"
	"testing"
)

// TestQuoteReadsBack has sh print each quoted word: it must come back
// unchanged, and nothing in it may run.
func TestQuoteReadsBack(t *testing.T) {
	words := []string{"", "plain", "a b", "it's", `"dq"`, "$(touch /x)", "`id`", "$HOME", "a\nb", "*", "~root", "x;y", `back\slash`, "tab\there", "-flag", "k=v"}
	script := "printf '%s\\0' " + Join(words)
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(words) {
		t.Fatalf("got %d words back, want %d: %q", len(got), len(words), got)
	}
	for i, w := range words {
		if got[i] != w {
			t.Errorf("word %d: got %q, want %q", i, got[i], w)
		}
	}
	if Quote("plain-word_1.2:3") != "plain-word_1.2:3" {
		t.Error("a plain word is quoted")
	}
}
