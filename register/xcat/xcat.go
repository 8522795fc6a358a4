// Package xcat registers xcat targets on an xCAT management node, and
// tells Moab: the osimage's files are copied into its rootimgdir, the
// definition made with `mkdef -z` from the target's osimage.stanza (or
// changed with `chdef`), and the osimage added to the provisioning OS list
// (OSLIST) of the NODECFG entries the target names in moab.cfg, after which
// the scheduler is recycled (`mschedctl -R`).
//
// It runs xCAT's and Moab's own commands, found on PATH or in /opt/xcat and
// /opt/moab, on the host it runs on (the management node), one bare-metal
// registration at a time (baremetal.Lock). An osimage is fgimg's when its
// description carries fgimg's mark (FGIMG_TARGET=..., FGIMG_DIGEST=...):
// those with the same digest are kept as they are; a changed image takes
// the osimage's name (what nodes and Moab refer to) and the older one is
// kept as NAME-<digest prefix> until it is retired (replace), which removes
// its definition, its files and its place in Moab's lists. An osimage
// fgimg did not register is never changed.
package xcat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/baremetal"
)

// Cloud is xCAT (and Moab) on this management node.
type Cloud struct {
	xcat, moab baremetal.Runner
	// Wait receives the note that register waits for the bare-metal lock.
	Wait io.Writer

	mu     sync.Mutex
	listed map[string]*osimage // by name, as Find last saw them (for Explain)
}

var (
	_ register.Cloud     = (*Cloud)(nil)
	_ register.Explainer = (*Cloud)(nil)
)

// Open returns the xCAT of this host; f is not needed (every xcat target
// registers on the management node fgimg runs on).
func Open(*register.File) (*Cloud, error) {
	return &Cloud{
		xcat: baremetal.Runner{Dirs: []string{"/opt/xcat/bin", "/opt/xcat/sbin"}},
		moab: baremetal.Runner{Dirs: []string{"/opt/moab/bin", "/opt/moab/sbin"}},
		Wait: os.Stderr,
	}, nil
}

// String implements register.Cloud.
func (c *Cloud) String() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("xCAT on %s", h)
}

// osimage is one osimage definition as lsdef -z prints it.
type osimage struct {
	name  string
	attrs map[string]string
	order []string // attribute names as read
}

func (o *osimage) mark() (baremetal.Mark, bool) {
	d, ok := strings.CutPrefix(o.attrs["description"], "fgimg ")
	if !ok {
		return baremetal.Mark{}, false
	}
	return baremetal.ParseMark(d)
}

// parseStanzas reads xCAT's stanza format: "name:" lines, each followed by
// indented attr=value lines; comments and other lines (lsdef's notes) are
// skipped.
func parseStanzas(b []byte) []*osimage {
	var out []*osimage
	var cur *osimage
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
		case line[0] != ' ' && line[0] != '\t' && strings.HasSuffix(t, ":") && !strings.Contains(t, "="):
			cur = &osimage{name: strings.TrimSuffix(t, ":"), attrs: map[string]string{}}
			out = append(out, cur)
		case cur != nil && (line[0] == ' ' || line[0] == '\t'):
			if k, v, ok := strings.Cut(t, "="); ok {
				cur.attrs[k] = v
				cur.order = append(cur.order, k)
			}
		}
	}
	return out
}

// stanza writes o back in the stanza format, objtype first.
func (o *osimage) stanza() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s:\n    objtype=osimage\n", o.name)
	for _, k := range slices.Sorted(maps.Keys(o.attrs)) {
		if k != "objtype" {
			fmt.Fprintf(&b, "    %s=%s\n", k, o.attrs[k])
		}
	}
	return b.Bytes()
}

// chdefArgs are the attributes as chdef takes them.
func (o *osimage) chdefArgs() []string {
	args := []string{"-t", "osimage", "-o", o.name}
	for _, k := range slices.Sorted(maps.Keys(o.attrs)) {
		if k != "objtype" {
			args = append(args, k+"="+o.attrs[k])
		}
	}
	return args
}

func (c *Cloud) list(ctx context.Context) ([]*osimage, error) {
	out, err := c.xcat.Run(ctx, nil, "lsdef", "-t", "osimage", "-l", "-z")
	if err != nil {
		return nil, err
	}
	return parseStanzas(out), nil
}

// lookup returns the osimage called name, nil when there is none.
func (c *Cloud) lookup(ctx context.Context, name string) (*osimage, error) {
	all, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range all {
		if o.name == name {
			return o, nil
		}
	}
	return nil, nil
}

func image(o *osimage, m baremetal.Mark) register.Image {
	props := m.Properties()
	props["rootimgdir"] = o.attrs["rootimgdir"]
	// Its name is the osimage's, not the one the template asked for: an
	// older image kept as NAME-<digest> is never what the name holds.
	return register.Image{ID: o.name, Name: o.name, State: register.StateReady, Status: "defined",
		Digest: m.Digest, Step: m.Step, Properties: props}
}

// Find implements register.Cloud: the osimages whose description carries
// fgimg's mark for target (any target when "").
func (c *Cloud) Find(ctx context.Context, target string) ([]register.Image, error) {
	all, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.listed = map[string]*osimage{}
	for _, o := range all {
		c.listed[o.name] = o
	}
	c.mu.Unlock()
	var out []register.Image
	for _, o := range all {
		if m, ok := o.mark(); ok && (target == "" || m.Target == target) {
			out = append(out, image(o, m))
		}
	}
	return out, nil
}

// step is what Upload reads of a step and the target's folder.
type step struct {
	register.Step
	dir        string // the target's folder
	rootimgdir string
	stanza     *osimage
	moabNodes  []string
}

func readStep(s register.Step, artifact string) (*step, error) {
	st := &step{Step: s, dir: strings.TrimSuffix(artifact, filepath.FromSlash(s.Artifact)), rootimgdir: s.Options["rootimgdir"]}
	if st.rootimgdir == "" || !path.IsAbs(st.rootimgdir) || path.Base(st.rootimgdir) != s.Name {
		return nil, fmt.Errorf("step %q: rootimgdir %q is not an absolute path ending in the osimage's name %q", s.ID, st.rootimgdir, s.Name)
	}
	for _, n := range strings.Split(s.Options["moab_nodes"], ",") {
		if n != "" {
			st.moabNodes = append(st.moabNodes, n)
		}
	}
	k := filepath.Join(st.dir, filepath.FromSlash(s.Options["kernel"]))
	if err := checkDigest(k, digest.Digest(s.Options["kernel_digest"])); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(st.dir, filepath.FromSlash(s.Options["stanza"])))
	if err != nil {
		return nil, err
	}
	defs := parseStanzas(b)
	if len(defs) != 1 || defs[0].name != s.Name {
		return nil, fmt.Errorf("%s does not define the one osimage %q", s.Options["stanza"], s.Name)
	}
	if m, ok := defs[0].mark(); !ok || m.Digest != s.Digest {
		return nil, fmt.Errorf("%s: its description does not carry the digest %s of %s", s.Options["stanza"], s.Digest, s.Artifact)
	}
	st.stanza = defs[0]
	return st, nil
}

func checkDigest(path string, want digest.Digest) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := digest.SHA256.FromReader(f)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("%s has digest %s, not the %s it was built with; rebuild it with fgimg build", path, got, want)
	}
	return nil
}

// Upload implements register.Cloud: under the bare-metal lock, it keeps an
// older osimage of the same name, copies the files into place, tells Moab
// and defines the osimage last (the definition, with its digest, says the
// rest is done).
func (c *Cloud) Upload(ctx context.Context, s register.Step, props map[string]string, artifact string) (register.Image, error) {
	st, err := readStep(s, artifact)
	if err != nil {
		return register.Image{}, err
	}
	unlock, err := baremetal.Lock(ctx, c.Wait)
	if err != nil {
		return register.Image{}, err
	}
	defer unlock()
	old, err := c.lookup(ctx, s.Name)
	if err != nil {
		return register.Image{}, err
	}
	names := []string{s.Name}
	if old != nil {
		m, ours := old.mark()
		switch {
		case !ours:
			return register.Image{}, fmt.Errorf("osimage %q exists and fgimg did not register it (its description has no fgimg mark): give the target another name", s.Name)
		case m.Target != props[register.PropTarget]:
			return register.Image{}, fmt.Errorf("osimage %q is target %q's: give the target another name", s.Name, m.Target)
		case m.Digest == s.Digest:
			// Registered while this register waited for the lock.
			return image(old, m), nil
		}
		kept, err := c.keep(ctx, old, m)
		if err != nil {
			return register.Image{}, err
		}
		names = append(names, kept)
	}
	if err := install(st); err != nil {
		return register.Image{}, err
	}
	if len(st.moabNodes) > 0 {
		if err := c.moabChange(ctx, func(cfg *moabConfig) bool { return cfg.add(st.moabNodes, names...) }); err != nil {
			return register.Image{}, err
		}
	}
	if old != nil {
		_, err = c.xcat.Run(ctx, nil, "chdef", st.stanza.chdefArgs()...)
	} else {
		_, err = c.xcat.Run(ctx, st.stanza.stanza(), "mkdef", "-z")
	}
	if err != nil {
		return register.Image{}, err
	}
	m, _ := st.stanza.mark()
	return image(st.stanza, m), nil
}

// keep defines the osimage old as NAME-<digest prefix>, its files moved to
// a rootimgdir of that name beside, and returns the new name.
func (c *Cloud) keep(ctx context.Context, old *osimage, m baremetal.Mark) (string, error) {
	kept := baremetal.KeptName(old.name, m.Digest)
	k, err := c.lookup(ctx, kept)
	if err != nil {
		return "", err
	}
	if k != nil {
		if km, ours := k.mark(); ours && km.Digest == m.Digest {
			return kept, nil // kept already, when this image held the name before
		}
		return "", fmt.Errorf("keeping osimage %q: %q exists and is another image", old.name, kept)
	}
	dir := old.attrs["rootimgdir"]
	k = &osimage{name: kept, attrs: map[string]string{}}
	for a, v := range old.attrs {
		k.attrs[a] = v
	}
	if dir != "" && path.Base(dir) == old.name {
		kdir := path.Join(path.Dir(dir), kept)
		if err := os.RemoveAll(kdir); err != nil {
			return "", err
		}
		if err := os.Rename(dir, kdir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("keeping osimage %q: %w", old.name, err)
		}
		k.attrs["rootimgdir"] = kdir
	}
	if _, err := c.xcat.Run(ctx, k.stanza(), "mkdef", "-z"); err != nil {
		return "", fmt.Errorf("keeping osimage %q as %q: %w", old.name, kept, err)
	}
	return kept, nil
}

// install copies the kernel and the packed image into the rootimgdir, each
// through a temporary name, and links initrd-stateless.gz to the packed
// image: the node's initrd is the whole image.
func install(st *step) error {
	if err := os.MkdirAll(st.rootimgdir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct{ src, dst string }{
		{st.Options["kernel"], "kernel"},
		{st.Artifact, "rootimg.cpio.gz"},
	} {
		if err := copyFile(filepath.Join(st.dir, filepath.FromSlash(f.src)), filepath.Join(st.rootimgdir, f.dst)); err != nil {
			return err
		}
	}
	initrd := filepath.Join(st.rootimgdir, "initrd-stateless.gz")
	tmp := initrd + ".fgimg-tmp"
	os.Remove(tmp)
	if err := os.Link(filepath.Join(st.rootimgdir, "rootimg.cpio.gz"), tmp); err != nil {
		return err
	}
	return os.Rename(tmp, initrd)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".fgimg-tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copying %s into place: %w", filepath.Base(dst), err)
	}
	return nil
}

// Retire implements register.Cloud: the osimage im was (under its own name,
// or kept under NAME-<digest prefix> since) is taken out of Moab's lists,
// its definition removed (rmdef) and its rootimgdir deleted. One already
// gone is left alone.
func (c *Cloud) Retire(ctx context.Context, im register.Image) error {
	unlock, err := baremetal.Lock(ctx, c.Wait)
	if err != nil {
		return err
	}
	defer unlock()
	all, err := c.list(ctx)
	if err != nil {
		return err
	}
	var victim *osimage
	for _, o := range all {
		if m, ok := o.mark(); ok && baremetal.Holds(im, o.name, m) {
			victim = o
			if o.name == im.ID {
				break
			}
		}
	}
	if victim == nil {
		return nil
	}
	if err := c.moabChange(ctx, func(cfg *moabConfig) bool { return cfg.remove(victim.name) }); err != nil {
		return err
	}
	if _, err := c.xcat.Run(ctx, nil, "rmdef", "-t", "osimage", "-o", victim.name); err != nil {
		return err
	}
	if dir := victim.attrs["rootimgdir"]; dir != "" && path.IsAbs(dir) && path.Base(dir) == victim.name {
		return os.RemoveAll(dir)
	}
	return nil
}

// Delete implements register.Cloud as Retire: xCAT has no disabled state.
func (c *Cloud) Delete(ctx context.Context, im register.Image) error { return c.Retire(ctx, im) }

// moabChange applies change to moab.cfg and, when it changed something,
// writes it and recycles the scheduler. A host without moab.cfg has no
// Moab to tell: removals are then nothing to do, additions an error.
func (c *Cloud) moabChange(ctx context.Context, change func(*moabConfig) bool) error {
	p := MoabConfigPath()
	cfg, err := readMoabConfig(p)
	if err != nil {
		return err
	}
	if !change(cfg) {
		return nil
	}
	if err := cfg.write(p); err != nil {
		return err
	}
	_, err = c.moab.Run(ctx, nil, "mschedctl", "-R")
	return err
}

// Explain implements register.Explainer: the files and commands of each
// action, as Upload and Retire will do them given what Find saw.
func (c *Cloud) Explain(a register.Action, s *register.Step) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch a.Op {
	case register.OpUpload:
		if s == nil {
			return nil
		}
		dir := s.Options["rootimgdir"]
		lines := []string{}
		if old := c.listed[s.Name]; old != nil {
			if m, ours := old.mark(); !ours {
				lines = append(lines, fmt.Sprintf("osimage %q exists and is not fgimg's: register will stop here", s.Name))
			} else if m.Digest != s.Digest {
				kept := baremetal.KeptName(s.Name, m.Digest)
				lines = append(lines, fmt.Sprintf("keep the older osimage: mkdef -z %s (rootimgdir %s, moved there)", kept, path.Join(path.Dir(dir), kept)))
			}
		}
		lines = append(lines, fmt.Sprintf("copy %s and %s into %s; initrd-stateless.gz: a hard link of rootimg.cpio.gz", s.Options["kernel"], s.Artifact, dir))
		if n := s.Options["moab_nodes"]; n != "" {
			var sets []string
			for _, node := range strings.Split(n, ",") {
				sets = append(sets, fmt.Sprintf("NODECFG[%s] OSLIST+=%s", node, s.Name))
			}
			lines = append(lines, fmt.Sprintf("%s: %s; mschedctl -R", MoabConfigPath(), strings.Join(sets, ", ")))
		}
		if old := c.listed[s.Name]; old != nil {
			lines = append(lines, fmt.Sprintf("chdef -t osimage -o %s with %s's attributes", s.Name, s.Options["stanza"]))
		} else {
			lines = append(lines, "mkdef -z <"+s.Options["stanza"])
		}
		return lines
	case register.OpRetire, register.OpDelete:
		name := baremetal.RetireName(*a.Image, s)
		dir := a.Image.Properties["rootimgdir"]
		if dir != "" {
			dir = path.Join(path.Dir(dir), name)
		}
		return []string{
			fmt.Sprintf("%s: %s out of every OSLIST; mschedctl -R", MoabConfigPath(), name),
			fmt.Sprintf("rmdef -t osimage -o %s; rm -r %s", name, dir),
		}
	}
	return nil
}
