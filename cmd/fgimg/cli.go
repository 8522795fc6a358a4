package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/targets"
	"github.com/hashicorp/hcl/v2"
	"golang.org/x/term"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnformatted = 3
	exitCrash       = 70 // a bug: fgimg panicked (EX_SOFTWARE)
	// A signal ends a command with 128+n: 130 for SIGINT, 143 for SIGTERM.
)

const usage = `fgimg builds OS images for clouds and bare metal from declarative templates.

Usage: fgimg <command> [flags] [PATH]

Commands:
  validate   check templates and report every problem
  plan       show the stage graph, with digests and cache status
  build      build images and write targets' artifacts
  boot       boot a built disk or netboot target in QEMU (smoke test)
  register   upload built cloud targets into OpenStack or OpenNebula, once
  vet        check a built image before it is registered (security findings, policy)
  approve    record a review of a vetted image: approved or rejected
  inspect    show one image: pedigree, metadata, stages
  diff       compare two images: which stages differ and why, and their software stacks
  fmt        rewrite templates in canonical format
  cache      list, measure or verify the local cache (ls, du, verify)
  images     list the catalog's images and targets, with a query
  show       show one catalog entry: metadata, stages, software stack, usage
  keep       mark catalog entries that purge never removes
  purge      remove rarely used images' stored bytes, by policy
  regenerate rebuild a catalog entry from its recorded templates and verify its digests
  push       store built stages and targets in the shared repository (--remote)
  pull       copy stages and targets from the shared repository into the cache
  catalog    rebuild the catalog's index from its records
  version    print the version

PATH is a directory of *.fg.hcl / *.fg.json files, or template files;
default ".". Run 'fgimg <command> -h' for a command's flags.
`

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type command struct {
	name string
	run  func(ctx context.Context, args []string, out, errw io.Writer) int
	// readOnly commands leave nothing to clean up: a signal ends them at
	// once. The others stop when their context is cancelled.
	readOnly bool
}

func commands() []command {
	return []command{
		{"validate", cmdValidate, true},
		{"build", cmdBuild, false},
		{"boot", cmdBoot, false},
		{"register", cmdRegister, false},
		{"vet", cmdVet, false},
		{"approve", cmdApprove, true},
		{"plan", cmdPlan, true},
		{"inspect", cmdInspect, true},
		{"diff", cmdDiff, false},
		{"fmt", cmdFmt, false},
		{"cache", cmdCache, true},
		{"images", cmdImages, true},
		{"show", cmdShow, true},
		{"keep", cmdKeep, true},
		{"purge", cmdPurge, false},
		{"regenerate", cmdRegenerate, false},
		{"push", cmdPush, false},
		{"pull", cmdPull, false},
		{"catalog", cmdCatalog, false},
		{"version", cmdVersion, true},
	}
}

// endsAtOnce says whether a signal may end the command line args at
// once: anything but a command that cleans up after itself.
func endsAtOnce(args []string) bool {
	if len(args) == 0 {
		return true
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.readOnly
		}
	}
	return true
}

func run(ctx context.Context, args []string, out, errw io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(errw, usage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(out, usage)
		return exitOK
	case "-v", "-version", "--version":
		return cmdVersion(ctx, nil, out, errw)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out, errw)
		}
	}
	fmt.Fprintf(errw, "fgimg: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// configFlags are the flags every command that reads a configuration takes.
type configFlags struct {
	vars         []lang.VarArg
	allowRead    []string // directories templates may read besides their own tree
	only, except []string
	cacheDir     string
	store        planner.Store    // what the planner asks about cached stages; nil: nothing is cached
	memo         planner.HashMemo // remembered source file digests; nil: none
}

func (c *configFlags) register(fs *flag.FlagSet, selection bool) {
	fs.Func("var", "set a variable to a value, as `name=value` (repeatable)", func(s string) error {
		name, value, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return fmt.Errorf("want name=value, got %q", s)
		}
		c.vars = append(c.vars, lang.VarArg{Name: name, Value: value})
		return nil
	})
	fs.Func("var-file", "read variable values from an HCL or JSON `file` (repeatable)", func(s string) error {
		c.vars = append(c.vars, lang.VarArg{File: s})
		return nil
	})
	fs.Func("allow-read", "let templates read files below `dir` too, besides the git work tree (or directory) that holds them (repeatable)", func(s string) error {
		c.allowRead = append(c.allowRead, s)
		return nil
	})
	if selection {
		c.registerCacheDir(fs)
		fs.Func("only", "only these comma-separated image or target `names` (globs allowed)", func(s string) error {
			c.only = append(c.only, splitNames(s)...)
			return nil
		})
		fs.Func("except", "all but these comma-separated image or target `names` (globs allowed)", func(s string) error {
			c.except = append(c.except, splitNames(s)...)
			return nil
		})
	}
}

// registerCacheDir adds -cache-dir, for commands that read the cache.
func (c *configFlags) registerCacheDir(fs *flag.FlagSet) {
	fs.StringVar(&c.cacheDir, "cache-dir", "", "the cache `directory` (default $FGIMG_CACHE, else $XDG_CACHE_HOME/fgimg, else ~/.cache/fgimg)")
}

func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// parseFlags parses flags and positional arguments in any order. Help
// asked for with -h or --help goes to out; a mistake and the usage that
// follows it go to errw.
func parseFlags(fs *flag.FlagSet, args []string, out, errw io.Writer) ([]string, error) {
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	defer fs.SetOutput(errw)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				out.Write(msg.Bytes())
				return nil, err
			}
			errw.Write(msg.Bytes())
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagResult turns a parse error into an exit code.
func flagResult(err error, errw io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(errw, "fgimg: %s\n", err)
	return exitUsage
}

// load reads and plans a configuration, printing diagnostics; it returns
// nil when there were errors.
func (c *configFlags) load(paths []string, errw io.Writer) (*lang.Config, *planner.Plan) {
	cfg, diags := lang.Load(lang.LoadOptions{Paths: paths, Vars: c.vars, AllowRead: c.allowRead, TargetKinds: targets.Schemas()})
	if diags.HasErrors() {
		printDiags(errw, cfg.Files, diags)
		return nil, nil
	}
	plan, pdiags := planner.New(cfg, planner.Options{Store: c.store, Memo: c.memo, Only: c.only, Except: c.except})
	diags = append(diags, pdiags...)
	printDiags(errw, cfg.Files, diags)
	if diags.HasErrors() {
		return nil, nil
	}
	return cfg, plan
}

// snippetBudget is how many bytes of source printDiags scans for snippets.
const snippetBudget = 8 << 20

func printDiags(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) {
	if len(diags) == 0 {
		return
	}
	width, color := uint(0), false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		color = os.Getenv("NO_COLOR") == ""
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil {
			width = uint(wd)
		}
	}
	// HCL finds a snippet by scanning its file from the start, so many
	// errors in a huge file would take hours to print: past a budget of
	// scanned bytes, diagnostics are printed with their position only.
	withSource := hcl.NewDiagnosticTextWriter(w, files, width, color)
	bare := hcl.NewDiagnosticTextWriter(w, nil, width, color)
	budget := snippetBudget
	for _, d := range diags {
		tw := withSource
		if d.Subject != nil {
			if f := files[d.Subject.Filename]; f != nil {
				budget -= len(f.Bytes)
				if budget < 0 {
					tw = bare
				}
			}
		}
		tw.WriteDiagnostic(d)
	}
	errs := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		}
	}
	if errs > 1 {
		fmt.Fprintf(w, "%d errors.\n", errs)
	}
}
