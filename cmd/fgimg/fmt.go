package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fgimg/fgimg/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/pmezard/go-difflib/difflib"
)

func cmdFmt(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg fmt", flag.ContinueOnError)
	check := fs.Bool("check", false, "write nothing; exit 3 if any file needs formatting")
	diff := fs.Bool("diff", false, "print the changes as a unified diff")
	recursive := fs.Bool("recursive", false, "also format templates in subdirectories")
	fs.Usage = func() {
		fmt.Fprintln(errw, "Usage: fgimg fmt [flags] [PATH...]\n\nRewrites *.fg.hcl and *.auto.fgvars.hcl files in canonical format and\nlists the files it changed.\n\nFlags:")
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	files, err := formatTargets(paths, *recursive)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	failed, unformatted := false, false
	for _, f := range files {
		if ctx.Err() != nil {
			fmt.Fprintf(errw, "fgimg: %s: stopped before %s.\n", context.Cause(ctx), f)
			return interruptedCode(ctx)
		}
		src, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			failed = true
			continue
		}
		formatted, diags := lang.Format(src, f)
		if diags.HasErrors() {
			printDiags(errw, map[string]*hcl.File{f: {Bytes: src}}, diags)
			failed = true
			continue
		}
		if bytes.Equal(src, formatted) {
			continue
		}
		unformatted = true
		fmt.Fprintln(out, f)
		if *diff {
			d, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
				A: difflib.SplitLines(string(src)), B: difflib.SplitLines(string(formatted)),
				FromFile: "old/" + f, ToFile: "new/" + f, Context: 3,
			})
			fmt.Fprint(out, d)
		}
		if !*check {
			if err := writeFileKeepMode(f, formatted); err != nil {
				fmt.Fprintf(errw, "fgimg: %s\n", err)
				failed = true
			}
		}
	}
	switch {
	case failed:
		return exitFailed
	case *check && unformatted:
		return exitUnformatted
	}
	return exitOK
}

func isTemplate(name string) bool {
	return strings.HasSuffix(name, lang.SuffixHCL) || strings.HasSuffix(name, lang.AutoVarsSuffix)
}

// formatTargets expands paths into the HCL template files to format.
func formatTargets(paths []string, recursive bool) ([]string, error) {
	if len(paths) == 0 {
		paths = []string{"."}
	}
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && q != p && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if !d.IsDir() && isTemplate(d.Name()) {
				files = append(files, q)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return files, nil
}

// writeFileKeepMode replaces a file's content atomically, keeping its mode.
func writeFileKeepMode(path string, data []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fgimg-fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(st.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
