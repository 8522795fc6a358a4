package planner

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fgimg/fgimg/internal/fsat"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
	"github.com/hashicorp/hcl/v2"
	"github.com/opencontainers/go-digest"
)

func (c *compiler) errorf(rng hcl.Range, summary, detail string, args ...any) {
	c.diags = append(c.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(detail, args...), Subject: rng.Ptr(),
	})
}

// originSpec is the first stage of an image with no parent.
func (c *compiler) originSpec(im *lang.Image) stages.Spec {
	if b := im.Bootstrap; b != nil {
		spec := &stages.Bootstrap{Tool: b.Tool, Arch: im.Meta.Arch}
		if b.Tool == "tar" {
			d, err := c.hashFile(b.Source)
			if err != nil {
				c.errorf(b.DeclRange, "Cannot read bootstrap tarball", "%s.", err)
				return nil
			}
			spec.Source, spec.SourcePath = d, b.Source
			return spec
		}
		spec.Suite, spec.Mirror, spec.Variant = b.Suite, b.Mirror, b.Variant
		spec.Components = b.Components
		spec.Include = sortedUnique(b.Include)
		return spec
	}
	spec := &stages.From{Ref: im.From, Arch: im.Meta.Arch}
	local, err := c.localImageDigest(im.From)
	if err != nil {
		c.errorf(im.DeclRange, "Cannot read image source", "Image %q: %s.", im.Name, err)
		return nil
	}
	spec.Local = local
	return spec
}

// localImageDigest hashes what identifies a local OCI image: the index
// of an OCI layout, the manifest of a dir: image, or a whole archive.
func (c *compiler) localImageDigest(ref string) (digest.Digest, error) {
	transport, rest, _ := strings.Cut(ref, ":")
	p, _, _ := strings.Cut(rest, ":")
	switch transport {
	case "oci":
		return c.hashFile(filepath.Join(p, "index.json"))
	case "dir":
		return c.hashFile(filepath.Join(rest, "manifest.json"))
	case "oci-archive", "docker-archive":
		return c.hashFile(p)
	}
	return "", nil // a registry: the resolved manifest digest is recorded at build time
}

// phaseSpecs returns the image's non-empty phases in their fixed order:
// packages, files, users, services, run.
func (c *compiler) phaseSpecs(im *lang.Image) ([]stages.Spec, bool) {
	var specs []stages.Spec
	if len(im.Packages) > 0 {
		specs = append(specs, &stages.Packages{Names: sortedUnique(im.Packages)})
	}
	if len(im.Files) > 0 {
		files := &stages.Files{}
		for _, f := range im.Files {
			entries, err := c.fileEntries(f)
			if err != nil {
				c.errorf(f.DeclRange, "Cannot read file source", "File %s: %s.", f.Path, err)
				return nil, false
			}
			files.Entries = append(files.Entries, entries...)
		}
		sort.SliceStable(files.Entries, func(i, j int) bool { return files.Entries[i].Path < files.Entries[j].Path })
		specs = append(specs, files)
	}
	if len(im.Users) > 0 {
		users := &stages.Users{}
		for _, u := range im.Users {
			users.Users = append(users.Users, stages.User{
				Name: u.Name, UID: u.UID, Groups: sortedUnique(u.Groups),
				Shell: u.Shell, Home: u.Home, SSHAuthorizedKeys: u.SSHAuthorizedKeys,
			})
		}
		sort.Slice(users.Users, func(i, j int) bool { return users.Users[i].Name < users.Users[j].Name })
		specs = append(specs, users)
	}
	if len(im.Services) > 0 {
		svcs := &stages.Services{}
		for _, s := range im.Services {
			svcs.Units = append(svcs.Units, stages.Unit{Name: s.Unit, Enabled: s.Enabled})
		}
		sort.Slice(svcs.Units, func(i, j int) bool { return svcs.Units[i].Name < svcs.Units[j].Name })
		specs = append(specs, svcs)
	}
	if len(im.Run) > 0 {
		specs = append(specs, &stages.Script{Commands: im.Run})
	}
	return specs, true
}

// fileEntries expands one file block: inline content, a source file, or
// a source directory walked recursively. In a directory, directories get
// 0755 and files 0644, or 0755 when executable at the source, unless the
// block's mode is set, which then applies to every file.
func (c *compiler) fileEntries(f *lang.File) ([]stages.FileEntry, error) {
	owner, group := f.Owner, f.Group
	if owner == "" {
		owner = "root"
	}
	if group == "" {
		group = "root"
	}
	if f.Content != nil {
		return []stages.FileEntry{{
			Path: f.Path, Type: stages.TypeFile, Mode: modeOr(f.Mode, 0o644), Owner: owner, Group: group,
			Digest: digest.FromString(*f.Content), Content: []byte(*f.Content),
		}}, nil
	}
	st, err := os.Lstat(f.Source)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		d, err := c.hashFile(f.Source)
		if err != nil {
			return nil, err
		}
		return []stages.FileEntry{{
			Path: f.Path, Type: stages.TypeFile, Mode: modeOr(f.Mode, 0o644), Owner: owner, Group: group,
			Digest: d, Source: f.Source,
		}}, nil
	}
	var entries []stages.FileEntry
	err = filepath.WalkDir(f.Source, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.Source, p)
		e := stages.FileEntry{Path: path.Join(f.Path, filepath.ToSlash(rel)), Owner: owner, Group: group, Source: p}
		switch {
		case de.IsDir():
			e.Type, e.Mode = stages.TypeDir, 0o755
		case de.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Type, e.Mode, e.Target = stages.TypeSymlink, 0o777, target
		case de.Type().IsRegular():
			info, err := de.Info()
			if err != nil {
				return err
			}
			def := uint32(0o644)
			if info.Mode()&0o100 != 0 {
				def = 0o755
			}
			if e.Digest, err = c.hashFile(p); err != nil {
				return err
			}
			e.Type, e.Mode = stages.TypeFile, modeOr(f.Mode, def)
		default:
			return fmt.Errorf("%s is neither a file, a directory nor a symlink", p)
		}
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

func modeOr(m *uint32, def uint32) uint32 {
	if m != nil {
		return *m
	}
	return def
}

// hashFile returns the digest of a file's content, once per path per plan.
func (c *compiler) hashFile(p string) (digest.Digest, error) {
	if d, ok := c.hashes[p]; ok {
		return d, nil
	}
	f, err := fsat.OpenRegular(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if c.memo != nil {
		if d, ok := c.memo.Get(p, fi); ok {
			c.hashes[p] = d
			return d, nil
		}
	}
	dg := digest.Canonical.Digester()
	if _, err := io.Copy(dg.Hash(), f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	c.hashes[p] = dg.Digest()
	if c.memo != nil {
		c.memo.Put(p, fi, c.hashes[p])
	}
	return c.hashes[p], nil
}

func sortedUnique(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	out := append([]string(nil), list...)
	sort.Strings(out)
	n := 1
	for _, s := range out[1:] {
		if s != out[n-1] {
			out[n] = s
			n++
		}
	}
	return out[:n]
}
