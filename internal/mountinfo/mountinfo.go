// Package mountinfo reads a process's mount table, /proc/PID/mountinfo.
package mountinfo

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo.
type Mount struct {
	Root   string // the mounted directory within its file system
	Point  string // where it is mounted
	FSType string // e.g. "ext4", "cgroup2"
	Source string
	Super  string // the super block's options, e.g. "rw,pids" for a cgroup v1 hierarchy
}

// Self reads the mounts of the calling process's mount namespace.
func Self() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, err := parse(sc.Text())
		if err != nil {
			return nil, err
		}
		mounts = append(mounts, m)
	}
	return mounts, sc.Err()
}

// parse reads "ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER".
func parse(line string) (Mount, error) {
	pre, post, ok := strings.Cut(line, " - ")
	a, b := strings.Fields(pre), strings.Fields(post)
	if !ok || len(a) < 6 || len(b) < 2 {
		return Mount{}, fmt.Errorf("mountinfo: malformed line %q", line)
	}
	m := Mount{Root: Unescape(a[3]), Point: Unescape(a[4]), FSType: b[0], Source: Unescape(b[1])}
	if len(b) > 2 {
		m.Super = b[2]
	}
	return m, nil
}

// Unescape decodes mountinfo's octal escapes (\040 for a space).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
