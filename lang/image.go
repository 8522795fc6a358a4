package lang

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// DefaultMirror is the Debian mirror debootstrap and mmdebstrap use
// when a template names none.
const DefaultMirror = "http://deb.debian.org/debian"

// Transports are the containers/image transports from accepts, each as
// a reference starts with it. The from stage links in exactly these.
var Transports = []string{"docker://", "oci:", "oci-archive:", "docker-archive:", "dir:"}

var (
	archs          = []string{"amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x"}
	permissionRe   = regexp.MustCompile(`^(private|public|group:[a-z_][a-z0-9_-]*)$`)
	packageRe      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9+.:=~_/-]*$`)
	userRe         = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	principalRe    = regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}|[0-9]+)$`)
	unitSuffixes   = []string{".service", ".socket", ".timer", ".target", ".mount", ".path", ".automount", ".swap", ".slice"}
	bootstrapTools = map[string][]string{
		"debootstrap": {"suite", "mirror", "variant", "components", "include"},
		"mmdebstrap":  {"suite", "mirror", "variant", "components", "include"},
		"tar":         {"source"},
	}
)

var fileBlockSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "content"}, {Name: "source"}, {Name: "mode"}, {Name: "owner"}, {Name: "group"},
}}

var userBlockSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "uid"}, {Name: "groups"}, {Name: "shell"}, {Name: "home"}, {Name: "ssh_authorized_keys"},
}}

var serviceBlockSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "enabled"}}}

func (l *loader) evalImage(raw *rawImage, e *evaluator) *Image {
	before := len(l.diags)
	ctx := e.bodyCtx(raw.Dir, raw.Content)
	s := &scope{l: l, ctx: ctx, attrs: raw.Content.Attributes}
	im := &Image{Name: raw.Name, DeclRange: raw.DeclRange, Dir: raw.Dir}

	l.evalOrigin(raw, s, im)
	l.evalMetadata(s, im)

	im.Packages, _, _ = s.strList("packages")
	if a := s.attrs["packages"]; a != nil {
		for _, p := range im.Packages {
			if !packageRe.MatchString(p) {
				l.errorf(a.Expr.Range().Ptr(), "Invalid package name",
					"%q is not a package name a package manager accepts.", p)
			}
		}
	}
	im.Run, _, _ = s.strList("run")
	im.Network, _, _ = s.boolean("network")

	seenFiles := map[string]hcl.Range{}
	seenUsers := map[string]hcl.Range{}
	seenUnits := map[string]hcl.Range{}
	for _, b := range raw.Content.Blocks {
		switch b.Type {
		case "file":
			if f := l.evalFile(b, ctx); f != nil {
				if prev, dup := seenFiles[f.Path]; dup {
					l.errorf(b.LabelRanges[0].Ptr(), "Duplicate file", "The image already places %s at %s.", f.Path, prev)
					continue
				}
				seenFiles[f.Path] = b.DefRange
				im.Files = append(im.Files, f)
			}
		case "user":
			if u := l.evalUser(b, ctx); u != nil {
				if prev, dup := seenUsers[u.Name]; dup {
					l.errorf(b.LabelRanges[0].Ptr(), "Duplicate user", "The image already creates user %q at %s.", u.Name, prev)
					continue
				}
				seenUsers[u.Name] = b.DefRange
				im.Users = append(im.Users, u)
			}
		case "service":
			if sv := l.evalService(b, ctx); sv != nil {
				if prev, dup := seenUnits[sv.Unit]; dup {
					l.errorf(b.LabelRanges[0].Ptr(), "Duplicate service", "The image already configures %s at %s.", sv.Unit, prev)
					continue
				}
				seenUnits[sv.Unit] = b.DefRange
				im.Services = append(im.Services, sv)
			}
		}
	}
	if l.diags[before:].HasErrors() {
		return nil
	}
	return im
}

// evalOrigin sets exactly one of Parent, From and Bootstrap.
func (l *loader) evalOrigin(raw *rawImage, s *scope, im *Image) {
	var origins []string
	var bootstraps []*hcl.Block
	for _, b := range raw.Content.Blocks {
		if b.Type == "bootstrap" {
			bootstraps = append(bootstraps, b)
		}
	}
	if a, ok := raw.Content.Attributes["parent"]; ok {
		origins = append(origins, "parent")
		im.Parent = l.imageRef(a, "parent")
	}
	if from, a, ok := s.str("from"); ok {
		origins = append(origins, "from")
		im.From = l.checkFrom(from, a, raw.Dir)
	} else if a != nil {
		origins = append(origins, "from")
	}
	if len(bootstraps) > 0 {
		origins = append(origins, "bootstrap")
		if len(bootstraps) > 1 {
			l.errorf(bootstraps[1].DefRange.Ptr(), "Duplicate bootstrap block", "An image has at most one bootstrap block.")
		}
		im.Bootstrap = l.evalBootstrap(bootstraps[0], s.ctx, raw.Dir)
	}
	switch len(origins) {
	case 0:
		l.errorf(raw.DeclRange.Ptr(), "Image has no origin",
			"Image %q needs exactly one origin: parent = image.<name>, from = \"<reference>\", or a bootstrap block.", raw.Name)
	case 1:
	default:
		l.errorf(raw.DeclRange.Ptr(), "Image has several origins",
			"Image %q sets %s; an image has exactly one origin.", raw.Name, strings.Join(origins, " and "))
	}
}

// imageRef resolves an attribute written as image.<name>.
func (l *loader) imageRef(a *hcl.Attribute, what string) *Image {
	tr := imageTraversal(a.Expr)
	if tr == nil || tr.RootName() != "image" || len(tr) != 2 || stepName(tr) == "" {
		l.errorf(a.Expr.Range().Ptr(), "Invalid "+what+" reference",
			"The %q argument names an image as a reference, such as %s = image.base.", what, what)
		return nil
	}
	name := stepName(tr)
	if im := l.cfg.images[name]; im != nil {
		return im
	}
	if l.declared[name] {
		return nil // declared, but invalid or in a cycle: already reported
	}
	names := []string{}
	for _, raw := range l.images {
		names = append(names, raw.Name)
	}
	l.errorf(a.Expr.Range().Ptr(), "Unknown image",
		"There is no image named %q in this configuration.%s", name, didYouMean(name, names))
	return nil
}

// imageTraversal returns the traversal an attribute such as parent is
// written as: image.base in native syntax, "image.base" or
// "${image.base}" in JSON syntax. It returns nil for anything else.
func imageTraversal(expr hcl.Expression) hcl.Traversal {
	if tr, diags := hcl.AbsTraversalForExpr(expr); !diags.HasErrors() {
		return tr
	}
	if vars := expr.Variables(); len(vars) == 1 {
		if _, diags := expr.Value(&hcl.EvalContext{}); diags.HasErrors() {
			return vars[0] // a template that is nothing but the reference
		}
	}
	return nil
}

// checkFrom validates an OCI reference and makes local paths absolute,
// relative to the template's directory.
func (l *loader) checkFrom(ref string, a *hcl.Attribute, dir string) string {
	var transport string
	for _, t := range Transports {
		if strings.HasPrefix(ref, t) {
			transport = t
			break
		}
	}
	if transport == "" {
		guess := ""
		if !strings.Contains(ref, ":/") && !strings.HasPrefix(ref, "/") {
			guess = " For a registry image write \"docker://" + ref + "\"."
		}
		l.errorf(a.Expr.Range().Ptr(), "Unsupported image reference",
			"%q does not start with one of the supported transports %s.%s", ref, strings.Join(Transports, ", "), guess)
		return ""
	}
	rest := strings.TrimPrefix(ref, transport)
	if transport == "docker://" {
		if rest == "" {
			l.errorf(a.Expr.Range().Ptr(), "Invalid image reference", "%q names no image.", ref)
		}
		return ref
	}
	// Local transports: PATH, optionally followed by :TAG for oci and the archives.
	p, tag, _ := strings.Cut(rest, ":")
	if transport == "dir:" {
		p, tag = rest, ""
	}
	p, _, err := l.scope.resolve(dir, p)
	if isOutside(err) {
		l.errorf(a.Expr.Range().Ptr(), "Image source outside the configuration",
			"The %s image cannot be used: %s.", strings.TrimSuffix(transport, ":"), err)
		return ""
	}
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		l.errorf(a.Expr.Range().Ptr(), "Image source not found",
			"The %s image at %s cannot be read: %s.", strings.TrimSuffix(transport, ":"), rest, err)
		return ""
	}
	if tag != "" {
		return transport + p + ":" + tag
	}
	return transport + p
}

func (l *loader) evalBootstrap(b *hcl.Block, ctx *hcl.EvalContext, dir string) *Bootstrap {
	tool := b.Labels[0]
	attrs, ok := bootstrapTools[tool]
	if !ok {
		l.errorf(b.LabelRanges[0].Ptr(), "Unknown bootstrap tool",
			"There is no bootstrap tool %q; fgimg knows debootstrap, mmdebstrap and tar.%s", tool, didYouMean(tool, []string{"debootstrap", "mmdebstrap", "tar"}))
		return nil
	}
	schema := &hcl.BodySchema{}
	for _, a := range attrs {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: a, Required: a == "suite" || a == "source"})
	}
	c, diags := b.Body.Content(schema)
	l.diags = append(l.diags, diags...)
	s := &scope{l: l, ctx: ctx, attrs: c.Attributes}
	bs := &Bootstrap{Tool: tool, DeclRange: b.DefRange}
	if tool == "tar" {
		if src, a, ok := s.str("source"); ok {
			bs.Source = l.checkSource(src, a, dir, false)
		}
		return bs
	}
	bs.Suite, _, _ = s.str("suite")
	bs.Mirror, _, _ = s.str("mirror")
	if bs.Mirror == "" {
		bs.Mirror = DefaultMirror
	}
	bs.Variant, _ = s.enum("variant", "minbase", "buildd", "fakechroot", "required", "important", "standard", "essential", "apt", "custom", "debootstrap", "-")
	if bs.Variant == "" {
		bs.Variant = "minbase"
	}
	bs.Components, _, _ = s.strList("components")
	if len(bs.Components) == 0 {
		bs.Components = []string{"main"}
	}
	bs.Include, _, _ = s.strList("include")
	return bs
}

// checkSource resolves a source path relative to dir, following its
// symlinks, and checks that it lies in what templates may read and is a
// regular file (or, when dirOK, a directory). It returns the real path,
// which holds no symlink: the planner and the build open it refusing any
// symlink on the way, so it cannot be redirected after this check.
func (l *loader) checkSource(src string, a *hcl.Attribute, dir string, dirOK bool) string {
	p, _, err := l.scope.resolve(dir, src)
	if isOutside(err) {
		l.errorf(a.Expr.Range().Ptr(), "Source outside the configuration",
			"The source %q cannot be used: %s.", src, err)
		return ""
	}
	var st os.FileInfo
	if err == nil {
		st, err = os.Stat(p)
	}
	if err != nil {
		l.errorf(a.Expr.Range().Ptr(), "Source not found",
			"The source %q cannot be read: %s. Relative paths start from the directory of the template file.", src, err)
		return ""
	}
	switch {
	case st.IsDir() && !dirOK:
		l.errorf(a.Expr.Range().Ptr(), "Source is a directory", "The source %q must be a file.", src)
		return ""
	case !st.IsDir() && !st.Mode().IsRegular():
		want := "a regular file"
		if dirOK {
			want = "a regular file or a directory"
		}
		l.errorf(a.Expr.Range().Ptr(), "Source is not a regular file",
			"The source %q is %s; a source must be %s.", src, fileKind(st.Mode()), want)
		return ""
	}
	return p
}

func (l *loader) evalMetadata(s *scope, im *Image) {
	m := &im.Meta
	m.Description, _, _ = s.str("description")
	m.OS, _, _ = s.str("os")
	m.Arch, _ = s.enum("arch", archs...)
	m.Tags, _, _ = s.strList("tags")
	m.Owner, _, _ = s.str("owner")
	if p, a, ok := s.str("permission"); ok {
		if permissionRe.MatchString(p) {
			m.Permission = p
		} else {
			l.errorf(a.Expr.Range().Ptr(), "Invalid value for \"permission\"",
				"%q is not a permission: write \"private\", \"public\" or \"group:<name>\".%s", p, didYouMean(p, []string{"private", "public"}))
		}
	}
	m.Labels, _, _ = s.strMap("labels")

	if p := im.Parent; p != nil {
		pm := p.Meta
		if a := s.attrs["arch"]; a != nil && m.Arch != "" && m.Arch != pm.Arch {
			l.errorf(a.Expr.Range().Ptr(), "Architecture differs from the parent's",
				"Image %q sets arch %q but its parent %q is %q; a child builds on its parent's root filesystem and keeps its architecture.", im.Name, m.Arch, p.Name, pm.Arch)
		}
		if m.Description == "" {
			m.Description = pm.Description
		}
		if m.OS == "" {
			m.OS = pm.OS
		}
		if m.Arch == "" {
			m.Arch = pm.Arch
		}
		if m.Owner == "" {
			m.Owner = pm.Owner
		}
		if m.Permission == "" {
			m.Permission = pm.Permission
		}
		m.Tags = unionStrings(pm.Tags, m.Tags)
		labels := map[string]string{}
		for k, v := range pm.Labels {
			labels[k] = v
		}
		for k, v := range m.Labels {
			labels[k] = v
		}
		m.Labels = labels
	}
	if m.Arch == "" {
		m.Arch = "amd64"
	}
	if m.Owner == "" {
		m.Owner = l.opts.User
	}
	if m.Permission == "" {
		m.Permission = "private"
	}
	if m.Tags == nil {
		m.Tags = []string{}
	}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
}

// unionStrings returns a then the elements of b not in a, without duplicates.
func unionStrings(a, b []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, list := range [][]string{a, b} {
		for _, s := range list {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

func (l *loader) evalFile(b *hcl.Block, ctx *hcl.EvalContext) *File {
	c, diags := b.Body.Content(fileBlockSchema)
	l.diags = append(l.diags, diags...)
	s := &scope{l: l, ctx: ctx, attrs: c.Attributes}
	p := b.Labels[0]
	f := &File{Path: p, DeclRange: b.DefRange}
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		l.errorf(b.LabelRanges[0].Ptr(), "Invalid file path",
			"%q is not a clean absolute path in the image, such as \"/etc/motd\".", p)
		return nil
	}
	content, ca, hasContent := s.str("content")
	src, sa, hasSource := s.str("source")
	switch {
	case ca != nil && sa != nil:
		l.errorf(b.DefRange.Ptr(), "File has both content and source", "The file %s takes exactly one of content and source.", p)
		return nil
	case ca == nil && sa == nil:
		l.errorf(b.DefRange.Ptr(), "File has no content", "The file %s needs content = \"…\" or source = \"path\".", p)
		return nil
	case hasContent:
		f.Content = &content
	case hasSource:
		f.Source = l.checkSource(src, sa, dirOf(b.DefRange), true)
	}
	if mode, a, ok := s.str("mode"); ok {
		m, err := ParseMode(mode)
		if err != nil {
			l.errorf(a.Expr.Range().Ptr(), "Invalid file mode", "%s.", err)
		} else {
			f.Mode = &m
			l.warnMode(m, a)
		}
	}
	f.Owner = l.principal(s, "owner")
	f.Group = l.principal(s, "group")
	return f
}

// warnMode warns about modes that are valid but almost surely a
// mistake: a setuid or setgid file anyone may write, and the sticky bit,
// which does nothing on a file.
func (l *loader) warnMode(m uint32, a *hcl.Attribute) {
	var problems []string
	if m&0o6000 != 0 && m&0o002 != 0 {
		problems = append(problems, "it is setuid or setgid and anyone may write to it")
	}
	if m&0o1000 != 0 {
		problems = append(problems, "the sticky bit (1000) has no effect on files")
	}
	if len(problems) > 0 {
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Unsafe file mode",
			Detail:   fmt.Sprintf("The mode %04o is probably a mistake: %s.", m, strings.Join(problems, "; ")),
			Subject:  a.Expr.Range().Ptr(),
		})
	}
}

// principal evaluates an owner or group: a name or a number.
func (l *loader) principal(s *scope, name string) string {
	v, a, ok := s.str(name)
	if !ok {
		return ""
	}
	if !principalRe.MatchString(v) {
		l.errorf(a.Expr.Range().Ptr(), "Invalid "+name, "%q is not a user or group name, nor a number.", v)
		return ""
	}
	return v
}

func (l *loader) evalUser(b *hcl.Block, ctx *hcl.EvalContext) *User {
	c, diags := b.Body.Content(userBlockSchema)
	l.diags = append(l.diags, diags...)
	s := &scope{l: l, ctx: ctx, attrs: c.Attributes}
	u := &User{Name: b.Labels[0], DeclRange: b.DefRange}
	if !userRe.MatchString(u.Name) {
		l.errorf(b.LabelRanges[0].Ptr(), "Invalid user name",
			"%q is not a valid user name: lowercase letters, digits, underscores and dashes, starting with a letter or underscore, at most 32 characters.", u.Name)
	}
	if uid, _, ok := s.integer("uid", 0, 1<<31-1); ok {
		u.UID = &uid
	}
	u.Groups, _, _ = s.strList("groups")
	for _, attr := range []struct {
		name string
		dst  *string
	}{{"shell", &u.Shell}, {"home", &u.Home}} {
		if v, a, ok := s.str(attr.name); ok {
			if !path.IsAbs(v) {
				l.errorf(a.Expr.Range().Ptr(), "Invalid "+attr.name, "%q must be an absolute path.", v)
			}
			*attr.dst = v
		}
	}
	u.SSHAuthorizedKeys, _, _ = s.strList("ssh_authorized_keys")
	return u
}

func (l *loader) evalService(b *hcl.Block, ctx *hcl.EvalContext) *Service {
	c, diags := b.Body.Content(serviceBlockSchema)
	l.diags = append(l.diags, diags...)
	s := &scope{l: l, ctx: ctx, attrs: c.Attributes}
	unit := b.Labels[0]
	if unit == "" || strings.ContainsAny(unit, "/ \t") {
		l.errorf(b.LabelRanges[0].Ptr(), "Invalid service name", "%q is not a systemd unit name.", unit)
		return nil
	}
	hasSuffix := false
	for _, suf := range unitSuffixes {
		hasSuffix = hasSuffix || strings.HasSuffix(unit, suf)
	}
	if !hasSuffix {
		unit += ".service"
	}
	sv := &Service{Unit: unit, Enabled: true, DeclRange: b.DefRange}
	if en, _, ok := s.boolean("enabled"); ok {
		sv.Enabled = en
	}
	return sv
}

// imageValue is what image.<name> evaluates to in expressions.
func imageValue(im *Image) cty.Value {
	strs := func(list []string) cty.Value {
		if len(list) == 0 {
			return cty.ListValEmpty(cty.String)
		}
		vals := make([]cty.Value, len(list))
		for i, s := range list {
			vals[i] = cty.StringVal(s)
		}
		return cty.ListVal(vals)
	}
	labels := map[string]cty.Value{}
	keys := make([]string, 0, len(im.Meta.Labels))
	for k := range im.Meta.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		labels[k] = cty.StringVal(im.Meta.Labels[k])
	}
	lv := cty.MapValEmpty(cty.String)
	if len(labels) > 0 {
		lv = cty.MapVal(labels)
	}
	parent := cty.NullVal(cty.String)
	if im.Parent != nil {
		parent = cty.StringVal(im.Parent.Name)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"name":        cty.StringVal(im.Name),
		"parent":      parent,
		"description": cty.StringVal(im.Meta.Description),
		"os":          cty.StringVal(im.Meta.OS),
		"arch":        cty.StringVal(im.Meta.Arch),
		"tags":        strs(im.Meta.Tags),
		"owner":       cty.StringVal(im.Meta.Owner),
		"permission":  cty.StringVal(im.Meta.Permission),
		"labels":      lv,
		"packages":    strs(im.Packages),
	})
}
