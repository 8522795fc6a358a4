package swstack

import (
	"io/fs"
	"path"
	"strings"
)

// unitPath is systemd's unit search path for the system manager
// (systemd.unit(5)), highest priority first, without the leading slash.
// /run is left out: an image at rest has nothing there that boots.
var unitPath = []string{
	"etc/systemd/system",
	"usr/local/lib/systemd/system",
	"usr/lib/systemd/system",
	"lib/systemd/system",
}

// services lists the units enabled to start at boot, as systemctl
// is-enabled says "enabled": each symlink in a .wants/ or .requires/
// folder of /etc/systemd/system (what systemctl enable writes), whose
// name is a unit name, that is not masked, and whose unit file exists.
// Units only a vendor's /usr/lib/…/*.wants pulls in are "static", not
// enabled, and are left out.
func (img *image) services() ([]string, error) {
	top, err := img.readDir(unitPath[0])
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, d := range top {
		if d.Type != fs.ModeDir || !(strings.HasSuffix(d.Name, ".wants") || strings.HasSuffix(d.Name, ".requires")) {
			continue
		}
		links, err := img.readDir(path.Join(unitPath[0], d.Name))
		if err != nil {
			return nil, err
		}
		for _, l := range links {
			if l.Type != fs.ModeSymlink || !isUnitName(l.Name) || set[l.Name] {
				continue
			}
			ok, err := img.enabled(l)
			if err != nil {
				return nil, err
			}
			if ok {
				set[l.Name] = true
			}
		}
	}
	return sortedKeys(set), nil
}

// enabled says whether the wants-symlink l starts a unit: the unit (or,
// for an instance name@i.type, its template name@.type) is found first
// on the search path as a regular file, or as a symlink that leads to
// one; the first found that is a symlink to /dev/null or an empty file
// masks it. A dangling wants-symlink whose unit exists nowhere does not.
func (img *image) enabled(l entry) (bool, error) {
	names := []string{l.Name}
	if t := templateOf(l.Name); t != "" {
		names = append(names, t)
	}
	for _, name := range names {
		for _, dir := range unitPath {
			found, usable, err := img.unitFile(path.Join(dir, name))
			if err != nil {
				return false, err
			}
			if found {
				return usable, nil
			}
		}
	}
	// systemd also loads a unit from the wants-symlink's own target
	// when that is a file of the right name outside the search path
	// (systemctl link).
	if path.Base(l.Link) == l.Name {
		found, usable, err := img.unitFile(strings.TrimPrefix(path.Clean(l.Link), "/"))
		return found && usable, err
	}
	return false, nil
}

// unitFile says whether the unit file rel exists and, if so, whether it
// is usable (not masked: a symlink to /dev/null, or empty).
func (img *image) unitFile(rel string) (found, usable bool, err error) {
	parent, base := path.Split(rel)
	ents, err := img.readDirCached(parent)
	if err != nil {
		return false, false, err
	}
	e, ok := ents[base]
	if !ok {
		return false, false, nil
	}
	if e.Type == fs.ModeSymlink && path.Clean(e.Link) == "/dev/null" {
		return true, false, nil
	}
	if e.Type == fs.ModeDir {
		return false, false, nil
	}
	f, err := img.open(rel)
	if err != nil {
		return false, false, nil // dangling, or a symlink to a directory or device
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, false, err
	}
	return true, fi.Size() > 0, nil
}

// readDirCached lists a unit folder once per Read.
func (img *image) readDirCached(rel string) (map[string]entry, error) {
	if m, ok := img.dirs[rel]; ok {
		return m, nil
	}
	list, err := img.readDir(strings.TrimSuffix(rel, "/"))
	if err != nil {
		return nil, err
	}
	m := make(map[string]entry, len(list))
	for _, e := range list {
		m[e.Name] = e
	}
	if img.dirs == nil {
		img.dirs = map[string]map[string]entry{}
	}
	img.dirs[rel] = m
	return m, nil
}

// unitTypes are systemd's unit types (systemd.unit(5)).
var unitTypes = []string{".service", ".socket", ".target", ".device", ".mount", ".automount",
	".swap", ".path", ".timer", ".slice", ".scope"}

// isUnitName says whether name is a unit name: a prefix and one of the
// unit types.
func isUnitName(name string) bool {
	for _, t := range unitTypes {
		if p, ok := strings.CutSuffix(name, t); ok && p != "" && !strings.HasPrefix(p, "@") {
			return true
		}
	}
	return false
}

// templateOf returns the template of an instance name, "getty@.service"
// for "getty@tty1.service", or "" when name is no instance.
func templateOf(name string) string {
	at := strings.IndexByte(name, '@')
	dot := strings.LastIndexByte(name, '.')
	if at <= 0 || dot <= at+1 {
		return ""
	}
	return name[:at+1] + name[dot:]
}
