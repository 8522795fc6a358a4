package lang

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty/function"
)

// Template file suffixes: native and JSON syntax.
const (
	SuffixHCL  = ".fg.hcl"
	SuffixJSON = ".fg.json"
)

// LoadOptions says what to read and which values to give variables.
type LoadOptions struct {
	// Paths is one directory or any number of template files; empty
	// means the current directory.
	Paths []string
	// Vars are the -var and -var-file flags, in command-line order.
	Vars []VarArg
	// Environ is searched for FGIMG_VAR_<name>; nil means os.Environ().
	Environ []string
	// User is the default image owner; empty means the user running fgimg.
	User string
	// TargetKinds are the target kinds templates may use, by name: their
	// attributes come from here alone (package targets has them).
	TargetKinds map[string]*TargetSchema
	// AllowRead widens what templates may read (file sources, file
	// functions, local images) beyond their directory trees: the
	// operator's --allow-read directories.
	AllowRead []string
}

// VarArg is one -var name=value (Name set) or -var-file FILE (File set).
type VarArg struct {
	Name, Value string
	File        string
}

// Load reads, evaluates and checks a configuration. It always returns a
// Config whose Files can print the diagnostics; the Config is usable
// only when the diagnostics hold no error.
func Load(opts LoadOptions) (*Config, hcl.Diagnostics) {
	l := &loader{
		parser: hclparse.NewParser(),
		opts:   opts,
		cfg:    &Config{images: map[string]*Image{}},
		funcs:  map[string]map[string]function.Function{},
	}
	if l.opts.Environ == nil {
		l.opts.Environ = os.Environ()
	}
	if l.opts.User == "" {
		l.opts.User = currentUser()
	}
	l.load()
	l.cfg.Files = l.parser.Files()
	sortDiagnostics(l.diags)
	return l.cfg, l.diags
}

// sortDiagnostics orders diagnostics by file and position, those with no
// source first, so they read top to bottom.
func sortDiagnostics(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
}

type loader struct {
	parser *hclparse.Parser
	opts   LoadOptions
	cfg    *Config
	diags  hcl.Diagnostics
	scope  *readScope                              // what templates may read
	read   int64                                   // bytes of template and variable files read so far
	funcs  map[string]map[string]function.Function // by directory

	files []*hcl.File
	// blocks collected by phase 1
	variables []*rawVariable
	locals    []*hcl.Attribute
	images    []*rawImage
	declared  map[string]bool // image names
	targets   []*rawTarget
}

// functions returns the functions of expressions written in dir, made
// once per directory.
func (l *loader) functions(dir string) map[string]function.Function {
	fs, ok := l.funcs[dir]
	if !ok {
		fs = functions(dir, l.scope)
		l.funcs[dir] = fs
	}
	return fs
}

func (l *loader) errorf(rng *hcl.Range, summary, detail string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, args...),
		Subject:  rng,
	})
}

func (l *loader) load() {
	paths, dir, named, err := templatePaths(l.opts.Paths)
	if err != nil {
		l.errorf(nil, "Cannot read templates", "%s", err)
		return
	}
	l.cfg.Dir = dir
	dirs := make([]string, len(paths))
	for i, p := range paths {
		dirs[i] = filepath.Dir(p)
	}
	if l.scope, err = newReadScope(dirs, l.opts.AllowRead); err != nil {
		l.errorf(nil, "Cannot read templates", "%s", err)
		return
	}
	for _, p := range paths {
		f, diags := l.parseFile(p, named)
		l.diags = append(l.diags, diags...)
		if f != nil && !diags.HasErrors() {
			l.files = append(l.files, f)
		}
	}
	for _, f := range l.files {
		l.decodeFile(f)
	}
	l.checkNames()
	vars := l.evalVariables(dir)
	if l.diags.HasErrors() && vars == nil {
		return
	}
	l.evaluate(vars)
}

// parseFile reads and parses one template or variable file (JSON syntax
// if its name ends in .json) within the size and nesting limits, which
// are checked before the parser, whose recursion they bound, runs.
// Only files the operator named (named templates, -var-file) may be
// other than regular files, such as a pipe; a FIFO or device found in
// the configuration's directory is refused rather than waited on.
func (l *loader) parseFile(p string, named bool) (*hcl.File, hcl.Diagnostics) {
	cannot := func(err error) (*hcl.File, hcl.Diagnostics) {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read file", Detail: fmt.Sprintf("%s.", err)}}
	}
	flags := os.O_RDONLY
	if !named {
		flags |= syscall.O_NONBLOCK
	}
	f, err := os.OpenFile(p, flags, 0)
	if err != nil {
		return cannot(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return cannot(err)
	} else if !named && !st.Mode().IsRegular() {
		return cannot(fmt.Errorf("%s is not a regular file (%s)", p, fileKind(st.Mode())))
	}
	src, err := io.ReadAll(io.LimitReader(f, MaxTemplateSize+1))
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read file", Detail: fmt.Sprintf("%s: %s.", p, err)}}
	}
	if len(src) > MaxTemplateSize {
		st, _ := f.Stat()
		size := int64(len(src))
		if st != nil && st.Size() > size {
			size = st.Size()
		}
		return nil, hcl.Diagnostics{sizeDiag(p, size, MaxTemplateSize, "a template file")}
	}
	l.read += int64(len(src))
	if l.read > MaxConfigSize {
		return nil, hcl.Diagnostics{sizeDiag(p, int64(len(src)), MaxConfigSize, fmt.Sprintf("with the files read before it (%d bytes in all), a configuration", l.read))}
	}
	if strings.HasSuffix(p, ".json") {
		if diags := checkJSONNesting(src, p); diags.HasErrors() {
			return nil, diags
		}
		return l.parser.ParseJSON(src, p)
	}
	if diags := checkNesting(src, p, false); diags.HasErrors() {
		return nil, diags
	}
	return l.parser.ParseHCL(src, p)
}

// templatePaths expands the command-line paths into template files and
// the configuration directory; named says the files were named, not
// found in a directory.
func templatePaths(args []string) (files []string, dir string, named bool, err error) {
	if len(args) == 0 {
		args = []string{"."}
	}
	if len(args) == 1 {
		st, err := os.Stat(args[0])
		if err != nil {
			return nil, "", false, err
		}
		if st.IsDir() {
			dir = args[0]
			entries, err := os.ReadDir(dir)
			if err != nil {
				return nil, "", false, err
			}
			for _, e := range entries {
				n := e.Name()
				if !e.IsDir() && (strings.HasSuffix(n, SuffixHCL) || strings.HasSuffix(n, SuffixJSON)) {
					files = append(files, filepath.Join(dir, n))
				}
			}
			if len(files) == 0 {
				return nil, "", false, fmt.Errorf("no *%s or *%s files in %s", SuffixHCL, SuffixJSON, dir)
			}
			return files, dir, false, nil
		}
	}
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, "", false, err
		}
		if st.IsDir() {
			return nil, "", false, fmt.Errorf("%s is a directory: give one directory or any number of files", a)
		}
		files = append(files, a)
	}
	sort.Strings(files)
	return files, filepath.Dir(files[0]), true, nil
}

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
