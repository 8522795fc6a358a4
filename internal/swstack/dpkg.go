package swstack

import (
	"bytes"
	"fmt"
	"strings"
)

// parseDpkg parses dpkg's status file (deb822 paragraphs, dpkg(1)'s
// /var/lib/dpkg/status) and returns the installed packages: those whose
// Status is "… installed" (not config-files, half-installed, …).
func parseDpkg(b []byte) ([]Package, error) {
	var out []Package
	err := paragraphs(b, ':', func(line int, fields map[string]string) error {
		status := strings.Fields(fields["status"])
		if len(status) != 3 || status[2] != "installed" {
			return nil
		}
		p := Package{Name: fields["package"], Version: fields["version"], Arch: fields["architecture"]}
		if p.Name == "" || p.Version == "" {
			return fmt.Errorf("line %d: an installed package without Package or Version", line)
		}
		// Source is "name" or "name (version)" when the source's version
		// differs from the binary's.
		if src, _, _ := strings.Cut(fields["source"], " "); src != "" && src != p.Name {
			p.Source = src
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// parseApk parses apk's installed database (/lib/apk/db/installed: one
// paragraph of "K:value" lines per package, apk-tools' doc/apk-package(5)).
func parseApk(b []byte) ([]Package, error) {
	var out []Package
	err := paragraphs(b, 0, func(line int, fields map[string]string) error {
		p := Package{Name: fields["P"], Version: fields["V"], Arch: fields["A"]}
		if p.Name == "" || p.Version == "" {
			return fmt.Errorf("line %d: a package without P: or V:", line)
		}
		if o := fields["o"]; o != "" && o != p.Name {
			p.Source = o
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// The only fields paragraphs keeps, so that a status file is read
// without an allocation per description line.
var (
	dpkgFields = []string{"package", "version", "architecture", "source", "status"}
	apkFields  = []string{"P", "V", "A", "o"}
)

// field returns the wanted field k names ("" for none): a deb822 name
// matched without case, or an apk letter.
func field(k []byte, sep byte) string {
	if sep == ':' {
		for _, f := range dpkgFields {
			if len(k) == len(f) && strings.EqualFold(string(k), f) {
				return f
			}
		}
		return ""
	}
	for _, f := range apkFields {
		if string(k) == f {
			return f
		}
	}
	return ""
}

// paragraphs calls fn with the wanted fields of each blank-line-separated
// paragraph of b. With sep ':' the lines are deb822 ("Field: value",
// field names case-insensitive, continuation lines start with a space or
// tab); with sep 0 they are apk's ("K:value", one letter, case-sensitive).
func paragraphs(b []byte, sep byte, fn func(line int, fields map[string]string) error) error {
	fields := map[string]string{}
	start, n := 0, 0
	flush := func() error {
		if len(fields) == 0 {
			return nil
		}
		err := fn(start, fields)
		clear(fields)
		return err
	}
	for len(b) > 0 {
		n++
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if len(fields) == 0 {
			start = n
		}
		if line[0] == ' ' || line[0] == '\t' {
			if sep == 0 {
				return fmt.Errorf("line %d: not a K:value line", n)
			}
			continue // a continuation: none of the wanted fields has one
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("line %d: no field name", n)
		}
		if sep == ':' {
			v = bytes.TrimSpace(v)
		} else if len(k) != 1 {
			return fmt.Errorf("line %d: not a K:value line", n)
		}
		if key := field(k, sep); key != "" {
			fields[key] = string(v)
		}
	}
	return flush()
}
