// Package baremetal holds what the bare-metal registrations (register/xcat,
// register/warewulf) share: the lock that makes them run one at a time on a
// management node, running the site's commands with their output in errors,
// the name an older image is kept under, and fgimg's mark on an image.
package baremetal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/register"
)

// LockEnv names the variable that moves the lock file, for a site whose
// /run/lock is not shared by the hosts that register, and for tests.
const LockEnv = "FGIMG_BAREMETAL_LOCK"

// DefaultLock is the lock file every bare-metal registration takes.
const DefaultLock = "/run/lock/fgimg-baremetal.lock"

// Lock takes the exclusive lock of bare-metal registration: xCAT's
// definitions, Moab's configuration and Warewulf's images are changed by
// one fgimg at a time, on this host, whichever the kind (a flock, dropped
// by the kernel when the holder dies; two Lock calls in one process exclude
// each other too). It waits until ctx is done, saying once on wait that it
// waits.
func Lock(ctx context.Context, wait io.Writer) (unlock func(), err error) {
	path := os.Getenv(LockEnv)
	if path == "" {
		path = DefaultLock
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("bare-metal lock: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bare-metal lock: %w", err)
	}
	said := false
	for sleep := time.Millisecond; ; sleep = min(2*sleep, 100*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("bare-metal lock %s: %w", path, err)
		}
		if !said && wait != nil {
			fmt.Fprintf(wait, "fgimg: waiting for another bare-metal registration (lock %s)\n", path)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the bare-metal lock %s: %w", path, context.Cause(ctx))
		case <-time.After(sleep):
		}
	}
}

// Runner runs a site's commands (mkdef, wwctl, ...): found on PATH, then in
// Dirs (where the products install them: /opt/xcat/bin, ...).
type Runner struct {
	Dirs []string
}

// Run runs name with args and stdin (may be nil) and returns its standard
// output. A failure's error holds the command line and what it printed on
// its standard error, the tool's own words.
func (r Runner) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	path, err := r.find(name)
	if err != nil {
		return nil, err
	}
	cmd, err := hosttool.Command(ctx, path, args...)
	if err != nil {
		return nil, err
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := hosttool.Run(cmd); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if msg != "" {
			return out.Bytes(), fmt.Errorf("%s: %w: %s", shquote.Join(append([]string{name}, args...)), err, msg)
		}
		return out.Bytes(), fmt.Errorf("%s: %w", shquote.Join(append([]string{name}, args...)), err)
	}
	return out.Bytes(), nil
}

func (r Runner) find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range r.Dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not on PATH nor in %s: run fgimg register on the management node", name, strings.Join(r.Dirs, ", "))
}

// KeptName is the name an older image of name, with digest d, is kept
// under when a changed image takes name: the site's references (profiles,
// Moab's OS list) follow the name, and the old image stays usable until it
// is retired.
func KeptName(name string, d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return name + "-" + e
}

// Mark is fgimg's identification of a registered image, as KEY=value
// lines (fgimg-release for Warewulf, an xCAT osimage's description).
type Mark struct {
	Digest digest.Digest // the artifact's
	Target string
	Image  string
	Step   string
	Name   string // the name the template gave it (a kept image's differs)
}

// Mark keys.
const (
	keyDigest = "FGIMG_DIGEST"
	keyTarget = "FGIMG_TARGET"
	keyImage  = "FGIMG_IMAGE"
	keyStep   = "FGIMG_STEP"
	keyName   = "FGIMG_NAME"
)

// Fields are m's KEY=value pairs in a fixed order.
func (m Mark) Fields() []string {
	return []string{
		keyDigest + "=" + string(m.Digest),
		keyImage + "=" + m.Image,
		keyName + "=" + m.Name,
		keyStep + "=" + m.Step,
		keyTarget + "=" + m.Target,
	}
}

// ParseMark reads a mark from whitespace-separated KEY=value fields
// (values hold no blanks: digests and names); ok is false when there is
// no FGIMG_TARGET, that is the image is not one fgimg registered.
func ParseMark(s string) (m Mark, ok bool) {
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case keyDigest:
			m.Digest = digest.Digest(v)
		case keyTarget:
			m.Target = v
		case keyImage:
			m.Image = v
		case keyStep:
			m.Step = v
		case keyName:
			m.Name = v
		}
	}
	return m, m.Target != ""
}

// Properties are the mark as register's image properties.
func (m Mark) Properties() map[string]string {
	return map[string]string{"fgimg_target": m.Target, "fgimg_step": m.Step, "fgimg_digest": string(m.Digest), "fgimg_image": m.Image}
}

// Holds reports whether the image called name, with mark m, is where
// register's image im now is: im itself, or im kept under KeptName since
// a changed image took its name.
func Holds(im register.Image, name string, m Mark) bool {
	return m.Digest == im.Digest && (name == im.ID || name == KeptName(im.Name, im.Digest))
}

// RetireName is the name under which a retire or delete of im will find
// it: a changed image of step s's name (being registered in the same run)
// has kept it under KeptName.
func RetireName(im register.Image, s *register.Step) string {
	if s != nil && im.ID == s.Name {
		return KeptName(im.Name, im.Digest)
	}
	return im.ID
}
