package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRunMemoryLimit(t *testing.T) {
	l := newLayout(t)
	// busybox dd holds one block of bs bytes in memory.
	const script = `dd if=/dev/zero of=/dev/null bs=64M count=1 && echo done`
	s := l.spec(script)
	s.MaxMemory = 32 << 20
	out, errOut, err := run(t, context.Background(), s)
	var me *MemoryLimitError
	if !errors.As(err, &me) {
		t.Fatalf("a command using more than its 32 MiB: err = %v (want a *MemoryLimitError); stdout %q; stderr %q", err, out, errOut)
	}
	if me.Limit != 32<<20 || !strings.Contains(err.Error(), "32 MiB") || !strings.Contains(err.Error(), "--stage-memory") {
		t.Errorf("error %q does not name the limit and the flag", err)
	}
	// The default bound is generous.
	if out, errOut, err := run(t, context.Background(), l.spec(script)); err != nil || !strings.Contains(out, "done") {
		t.Errorf("with the default limit: %v; stdout %q; stderr %q", err, out, errOut)
	}
}
