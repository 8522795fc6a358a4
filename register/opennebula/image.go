package opennebula

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/register"
)

// fgimg's own template attributes on the images it registers.
const (
	attrDigest = "FGIMG_DIGEST"
	attrStep   = "FGIMG_STEP"
	attrTarget = "FGIMG_TARGET"
	attrImage  = "FGIMG_IMAGE"
	// attrName is the name fgimg was asked to give the image, which
	// OpenNebula's may differ from (see Upload).
	attrName = "FGIMG_NAME"
)

// Image states (include/Image.h) by number, with register's normalised
// state. An image in use (USED, USED_PERS, LOCKED_USED,
// LOCKED_USED_PERS) or being cloned from (CLONE) holds all its bytes;
// LOCKED is a copy into the datastore under way; DELETE is on its way
// out.
var states = []struct{ name, state string }{
	{"INIT", register.StateIncomplete},
	{"READY", register.StateReady},
	{"USED", register.StateReady},
	{"DISABLED", register.StateRetired},
	{"LOCKED", register.StateIncomplete},
	{"ERROR", register.StateFailed},
	{"CLONE", register.StateReady},
	{"DELETE", register.StateRetired},
	{"USED_PERS", register.StateReady},
	{"LOCKED_USED", register.StateReady},
	{"LOCKED_USED_PERS", register.StateReady},
}

// imageXML is the part of oned's IMAGE document (image.xsd) fgimg reads.
type imageXML struct {
	ID       int    `xml:"ID"`
	Name     string `xml:"NAME"`
	State    int    `xml:"STATE"`
	SizeMB   int64  `xml:"SIZE"`
	Template struct {
		Attrs []struct {
			XMLName xml.Name
			Value   string     `xml:",chardata"`
			Inner   []xml.Name `xml:",any"` // a vector attribute's elements
		} `xml:",any"`
	} `xml:"TEMPLATE"`
}

func (im *imageXML) attr(name string) string {
	for _, a := range im.Template.Attrs {
		if a.XMLName.Local == name && a.Inner == nil {
			return a.Value
		}
	}
	return ""
}

func (im *imageXML) image() register.Image {
	out := register.Image{
		ID:     strconv.Itoa(im.ID),
		Name:   im.Name,
		Status: strconv.Itoa(im.State),
		State:  register.StateFailed,
		Digest: digest.Digest(im.attr(attrDigest)),
		Step:   im.attr(attrStep),
		Size:   im.SizeMB << 20, // oned counts whole MiB
	}
	if n := im.attr(attrName); n != "" {
		out.Name = n
	}
	if im.State >= 0 && im.State < len(states) {
		out.Status, out.State = states[im.State].name, states[im.State].state
	}
	for _, a := range im.Template.Attrs {
		if a.Inner == nil {
			if out.Properties == nil {
				out.Properties = map[string]string{}
			}
			// oned upper-cases attribute names; register's properties
			// are fgimg_digest, kernel_id, ...
			out.Properties[strings.ToLower(a.XMLName.Local)] = a.Value
		}
	}
	return out
}

// Find lists this user's images whose FGIMG_TARGET is target
// (one.imagepool.info with filter -3: images fgimg registered are the
// registering user's, and only those can it retire or delete).
func (c *Cloud) Find(ctx context.Context, target string) ([]register.Image, error) {
	v, err := c.call(ctx, "one.imagepool.info", -3, -1, -1)
	if err != nil {
		return nil, err
	}
	var pool struct {
		Images []imageXML `xml:"IMAGE"`
	}
	if err := unmarshal(v, &pool); err != nil {
		return nil, fmt.Errorf("opennebula %s: one.imagepool.info: %w", c.endpoint.Redacted(), err)
	}
	var out []register.Image
	for i := range pool.Images {
		if t := pool.Images[i].attr(attrTarget); t != "" && (target == "" || t == target) {
			out = append(out, pool.Images[i].image())
		}
	}
	return out, nil
}

func unmarshal(v any, into any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("the result is a %T, not an XML document", v)
	}
	return xml.Unmarshal([]byte(s), into)
}

func (c *Cloud) info(ctx context.Context, id int) (*imageXML, error) {
	v, err := c.call(ctx, "one.image.info", id)
	if err != nil {
		return nil, err
	}
	var im imageXML
	if err := unmarshal(v, &im); err != nil {
		return nil, fmt.Errorf("opennebula %s: one.image.info: %w", c.endpoint.Redacted(), err)
	}
	return &im, nil
}

// Upload allocates the image from the artifact's absolute path (which
// the front-end reads, see the package comment), sets its permissions
// from step.Visibility and waits until the datastore has copied it.
// OpenNebula names are unique per user: when an older image fgimg
// registered for this target holds step.Name, the new one is named
// "NAME-<first 12 hex digits of its digest>" in OpenNebula; a name held
// by an image fgimg did not register is an error. The Image's Name is
// always step.Name, which FGIMG_NAME records, so that register matches
// it to its step. On an error after the image was
// allocated, the returned Image is that image.
func (c *Cloud) Upload(ctx context.Context, step register.Step, props map[string]string, path string) (register.Image, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return register.Image{}, err
	}
	typ := "OS"
	switch step.ID {
	case "kernel":
		typ = "KERNEL"
	case "ramdisk":
		typ = "RAMDISK"
	}
	ds, err := c.datastore(ctx, step.Options["datastore"], typ)
	if err != nil {
		return register.Image{}, err
	}
	id, err := c.allocate(ctx, step, props, path, typ, ds)
	if err != nil {
		return register.Image{}, err
	}
	failed := func(err error) (register.Image, error) {
		return register.Image{ID: strconv.Itoa(id), Name: step.Name, Digest: step.Digest, Step: step.ID,
			State: register.StateIncomplete, Status: "LOCKED"}, err
	}
	if step.Visibility != "" {
		bits, err := chmodBits(step.Visibility)
		if err != nil {
			return failed(fmt.Errorf("step %s: %w", step.ID, err))
		}
		if _, err := c.call(ctx, "one.image.chmod", append([]any{id}, bits...)...); err != nil {
			return failed(err)
		}
	}
	im, err := c.waitReady(ctx, id)
	if im == nil {
		return failed(err)
	}
	return im.image(), err
}

// allocate calls one.image.allocate, handling a name already taken.
func (c *Cloud) allocate(ctx context.Context, step register.Step, props map[string]string, path, typ string, ds int) (int, error) {
	name := step.Name
	for try := 0; ; try++ {
		tmpl, err := c.template(step, props, name, path, typ)
		if err != nil {
			return 0, err
		}
		v, err := c.call(ctx, "one.image.allocate", tmpl, ds)
		if err == nil {
			id, ok := v.(int)
			if !ok {
				return 0, fmt.Errorf("opennebula %s: one.image.allocate returned a %T, not an image ID", c.endpoint.Redacted(), v)
			}
			return id, nil
		}
		taken := takenBy(err)
		if taken < 0 {
			return 0, err
		}
		other, ierr := c.info(ctx, taken)
		if ierr != nil {
			return 0, fmt.Errorf("%w; and reading that image: %v", err, ierr)
		}
		switch {
		case other.attr(attrTarget) == c.target && other.attr(attrDigest) == string(step.Digest) &&
			other.attr(attrStep) == step.ID && other.attr(attrName) == step.Name:
			// This very artifact, from an earlier attempt whose answer
			// was lost: take it.
			return taken, nil
		case other.attr(attrTarget) == c.target && try == 0:
			name = step.Name + "-" + step.Digest.Encoded()[:min(12, len(step.Digest.Encoded()))]
		default:
			return 0, fmt.Errorf("opennebula: the name %q is taken by image %d, which fgimg did not register for target %q; OpenNebula names are unique per user: choose another name for the target: %w", name, taken, c.target, err)
		}
	}
}

var takenRE = regexp.MustCompile(`NAME is already taken by IMAGE (\d+)`)

// takenBy returns the image whose name an allocate failure says is
// taken, or -1.
func takenBy(err error) int {
	var e *Error
	if !errors.As(err, &e) || e.Code != codeAllocate {
		return -1
	}
	m := takenRE.FindStringSubmatch(e.Message)
	if m == nil {
		return -1
	}
	id, _ := strconv.Atoi(m[1])
	return id
}

// core are the attributes fgimg sets from the step itself, which a
// property must not set.
var core = []string{"NAME", "PATH", "SOURCE", "SIZE", "TYPE", "FORMAT", "DEV_PREFIX", "PERSISTENT"}

var attrNameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// template writes the image template in OpenNebula's attribute = value
// syntax.
func (c *Cloud) template(step register.Step, props map[string]string, name, path, typ string) (string, error) {
	attrs := map[string]string{}
	for k, v := range props {
		if !attrNameRE.MatchString(k) {
			return "", fmt.Errorf("step %s: property %q is not a valid OpenNebula attribute name (letters, digits and _)", step.ID, k)
		}
		k = strings.ToUpper(k)
		for _, a := range core {
			if k == a {
				return "", fmt.Errorf("step %s: property %q would set the image's %s, which fgimg sets from the target", step.ID, k, a)
			}
		}
		attrs[k] = v
	}
	attrs[attrDigest] = string(step.Digest)
	attrs[attrStep] = step.ID
	attrs[attrTarget] = c.target
	attrs[attrName] = step.Name
	if c.image != "" {
		attrs[attrImage] = c.image
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	head := [][2]string{{"NAME", name}, {"PATH", path}, {"TYPE", typ}}
	if step.Format != "" {
		head = append(head, [2]string{"FORMAT", step.Format})
	}
	if typ == "OS" {
		prefix := step.Options["dev_prefix"]
		if prefix == "" {
			prefix = "vd"
		}
		persistent := "NO"
		switch strings.ToLower(step.Options["persistent"]) {
		case "", "false", "no":
		case "true", "yes":
			persistent = "YES"
		default:
			return "", fmt.Errorf("step %s: option persistent=%q is neither true nor false", step.ID, step.Options["persistent"])
		}
		head = append(head, [2]string{"DEV_PREFIX", prefix}, [2]string{"PERSISTENT", persistent})
	}
	var b strings.Builder
	for _, kv := range head {
		if err := writeAttr(&b, kv[0], kv[1]); err != nil {
			return "", fmt.Errorf("step %s: %w", step.ID, err)
		}
	}
	for _, k := range keys {
		if err := writeAttr(&b, k, attrs[k]); err != nil {
			return "", fmt.Errorf("step %s: %w", step.ID, err)
		}
	}
	return b.String(), nil
}

// writeAttr writes NAME = "value". In oned's template grammar a quoted
// value ends at a quote not preceded by a backslash, and \" is a quote;
// a backslash is otherwise itself, so it needs no escape, but a value
// ending in one cannot be written (its closing quote would read as
// escaped). "]]>" anywhere on a value's line makes oned abort the parse.
func writeAttr(b *strings.Builder, name, value string) error {
	if strings.HasSuffix(value, `\`) {
		return fmt.Errorf("attribute %s: OpenNebula's template syntax cannot hold a value ending in a backslash", name)
	}
	if i := strings.IndexFunc(value, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' || r == utf8.RuneError }); i >= 0 {
		return fmt.Errorf("attribute %s: holds the character %U, which an OpenNebula template cannot carry", name, []rune(value[i:])[0])
	}
	if strings.Contains(value, "]]>") {
		return fmt.Errorf(`attribute %s: OpenNebula's template parser refuses a value holding "]]>"`, name)
	}
	b.WriteString(name + " = \"" + strings.ReplaceAll(value, `"`, `\"`) + "\"\n")
	return nil
}

// chmodBits turns an octal permission such as "640" into one.image.chmod's
// nine bits (owner, group, other; each use, manage, admin).
func chmodBits(octal string) ([]any, error) {
	if len(octal) != 3 || strings.Trim(octal, "01234567") != "" {
		return nil, fmt.Errorf("visibility %q is not an OpenNebula permission in octal, such as 600, 640 or 644", octal)
	}
	var bits []any
	for _, d := range octal {
		n := int(d - '0')
		bits = append(bits, n>>2&1, n>>1&1, n&1)
	}
	return bits, nil
}

// datastore resolves the datastore option (an ID or a name; by default
// "default" for disks and "files" for kernels and ramdisks).
func (c *Cloud) datastore(ctx context.Context, opt, typ string) (int, error) {
	if opt == "" {
		opt = "default"
		if typ != "OS" {
			opt = "files"
		}
	}
	if id, err := strconv.Atoi(opt); err == nil {
		return id, nil
	}
	v, err := c.call(ctx, "one.datastorepool.info")
	if err != nil {
		return 0, err
	}
	var pool struct {
		DS []struct {
			ID   int    `xml:"ID"`
			Name string `xml:"NAME"`
		} `xml:"DATASTORE"`
	}
	if err := unmarshal(v, &pool); err != nil {
		return 0, fmt.Errorf("opennebula %s: one.datastorepool.info: %w", c.endpoint.Redacted(), err)
	}
	var names []string
	for _, d := range pool.DS {
		if d.Name == opt {
			return d.ID, nil
		}
		names = append(names, fmt.Sprintf("%s (%d)", d.Name, d.ID))
	}
	return 0, fmt.Errorf("opennebula %s: no datastore is named %q; there are: %s", c.endpoint.Redacted(), opt, strings.Join(names, ", "))
}

// waitReady polls image id until the datastore has its bytes. It returns
// the image as last seen (nil if it could not be read) with an error
// when the image failed, vanished or did not get ready within c.Wait.
func (c *Cloud) waitReady(ctx context.Context, id int) (*imageXML, error) {
	deadline := time.Now().Add(c.Wait)
	wait := c.Poll
	for {
		im, err := c.info(ctx, id)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Code == codeNoExists {
				return nil, fmt.Errorf("opennebula: image %d was deleted while its datastore copied it: %w", id, err)
			}
			return nil, err
		}
		switch st := im.image(); st.State {
		case register.StateReady:
			return im, nil
		case register.StateFailed:
			msg := im.attr("ERROR")
			if msg == "" {
				msg = "no message"
			}
			return im, fmt.Errorf("opennebula: image %d (%s) is in state %s: %s", id, im.Name, st.Status, msg)
		case register.StateRetired:
			return im, fmt.Errorf("opennebula: image %d (%s) went to state %s while its datastore copied it", id, im.Name, st.Status)
		}
		if time.Now().After(deadline) {
			return im, fmt.Errorf("opennebula: image %d (%s) is still %s after %s: its datastore has not finished copying it; it stays, and the next register cleans it up",
				id, im.Name, im.image().Status, c.Wait)
		}
		select {
		case <-ctx.Done():
			return im, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// Retire disables the image (one.image.enable false): VMs can no longer
// be made from it, and it stays for those that were.
func (c *Cloud) Retire(ctx context.Context, im register.Image) error {
	id, err := imageID(im)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "one.image.enable", id, false)
	return err
}

// Delete deletes the image (one.image.delete); the datastore removes its
// bytes after the call returns.
func (c *Cloud) Delete(ctx context.Context, im register.Image) error {
	id, err := imageID(im)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "one.image.delete", id)
	return err
}

func imageID(im register.Image) (int, error) {
	id, err := strconv.Atoi(im.ID)
	if err != nil {
		return 0, fmt.Errorf("opennebula: %q is not an OpenNebula image ID", im.ID)
	}
	return id, nil
}
