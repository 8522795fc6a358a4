package xcat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/fgimg/fgimg/internal/atomicfile"
)

// MoabConfigPath is moab.cfg: $MOABHOMEDIR/etc/moab.cfg (Moab 7 and later),
// else $MOABHOMEDIR/moab.cfg, with MOABHOMEDIR /opt/moab by default.
func MoabConfigPath() string {
	home := os.Getenv("MOABHOMEDIR")
	if home == "" {
		home = "/opt/moab"
	}
	p := filepath.Join(home, "etc", "moab.cfg")
	if _, err := os.Stat(p); err != nil {
		if alt := filepath.Join(home, "moab.cfg"); fileExists(alt) {
			return alt
		}
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// moabConfig is moab.cfg as lines; add and remove change the OSLIST
// attribute of NODECFG lines and keep every other line as it is.
type moabConfig struct {
	path    string
	lines   []string
	missing bool
	mode    os.FileMode
}

func readMoabConfig(p string) (*moabConfig, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &moabConfig{path: p, missing: true}, nil
	}
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSuffix(string(b), "\n")
	var lines []string
	if s != "" {
		lines = strings.Split(s, "\n")
	}
	return &moabConfig{path: p, lines: lines, mode: fi.Mode().Perm()}, nil
}

// nodecfg matches a NODECFG[name] line: the name, then the attributes.
var nodecfg = regexp.MustCompile(`^\s*NODECFG\[([^\]]+)\]\s+(.*)$`)

// oslist finds the OSLIST=... word of line i for node (any node when
// ""): its node, its value and where the word is.
func (c *moabConfig) oslist(i int) (node string, list []string, start, end int, ok bool) {
	m := nodecfg.FindStringSubmatchIndex(c.lines[i])
	if m == nil {
		return "", nil, 0, 0, false
	}
	line := c.lines[i]
	node = line[m[2]:m[3]]
	rest := m[4]
	for off := rest; off < len(line); {
		j := strings.IndexAny(line[off:], " \t")
		w := line[off:]
		if j >= 0 {
			w = line[off : off+j]
		}
		if v, found := strings.CutPrefix(w, "OSLIST="); found {
			for _, e := range strings.Split(v, ",") {
				if e != "" {
					list = append(list, e)
				}
			}
			return node, list, off, off + len(w), true
		}
		if j < 0 {
			break
		}
		off += j + 1
	}
	return node, nil, 0, 0, false
}

// add puts names into the OSLIST of each node's NODECFG (the first of its
// lines with an OSLIST, else a new line at the end) and reports whether
// anything changed. A missing moab.cfg is an error, kept for write.
func (c *moabConfig) add(nodes []string, names ...string) bool {
	changed := false
	for _, n := range nodes {
		done := false
		for i := range c.lines {
			node, list, start, end, ok := c.oslist(i)
			if !ok || node != n {
				continue
			}
			grown := list
			for _, name := range names {
				if !slices.Contains(grown, name) {
					grown = append(grown, name)
				}
			}
			if len(grown) != len(list) {
				c.lines[i] = c.lines[i][:start] + "OSLIST=" + strings.Join(grown, ",") + c.lines[i][end:]
				changed = true
			}
			done = true
			break
		}
		if !done {
			c.lines = append(c.lines, fmt.Sprintf("NODECFG[%s] OSLIST=%s", n, strings.Join(names, ",")))
			changed = true
		}
	}
	return changed
}

// remove takes name out of every NODECFG's OSLIST (a line left with no
// attribute goes) and reports whether anything changed.
func (c *moabConfig) remove(name string) bool {
	changed := false
	var out []string
	for i := range c.lines {
		_, list, start, end, ok := c.oslist(i)
		if !ok || !slices.Contains(list, name) {
			out = append(out, c.lines[i])
			continue
		}
		changed = true
		list = slices.DeleteFunc(list, func(e string) bool { return e == name })
		line := c.lines[i][:start] + "OSLIST=" + strings.Join(list, ",") + c.lines[i][end:]
		if len(list) == 0 {
			line = strings.TrimRight(c.lines[i][:start]+c.lines[i][end:], " \t")
			if m := nodecfg.FindStringSubmatch(line + " "); m != nil && strings.TrimSpace(m[2]) == "" {
				continue // nothing left on the line
			}
		}
		out = append(out, line)
	}
	c.lines = out
	return changed
}

func (c *moabConfig) write(p string) error {
	if c.missing {
		return fmt.Errorf("the target names Moab nodes, but there is no %s (set MOABHOMEDIR to Moab's home)", p)
	}
	return atomicfile.Write(filepath.Dir(p), p, []byte(strings.Join(c.lines, "\n")+"\n"), c.mode)
}
