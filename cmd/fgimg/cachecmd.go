package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/fgimg/fgimg/internal/bytesize"
	"github.com/fgimg/fgimg/planner"
)

const cacheUsage = `Usage: fgimg cache <ls|du|verify> [--cache-dir DIR]

  ls       list stored stages and targets: digest, kind, size, when built
  du       how much the cache holds
  verify   rehash every blob; report corrupt or missing ones; compare every
           snapshot with its layer and remove those that differ (exit 1 if any)
`

func cmdCache(_ context.Context, args []string, out, errw io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(errw, cacheUsage)
		return exitUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("fgimg cache "+sub, flag.ContinueOnError)
	dirFlag := fs.String("cache-dir", "", "the cache `directory`")
	fs.Usage = func() { fmt.Fprint(fs.Output(), cacheUsage); fs.PrintDefaults() }
	if pos, err := parseFlags(fs, args[1:], out, errw); err != nil {
		return flagResult(err, errw)
	} else if len(pos) > 0 {
		return flagResult(usageError{"fgimg cache " + sub + " takes no arguments"}, errw)
	}
	switch sub {
	case "ls", "du", "verify":
	case "-h", "--help", "help":
		fmt.Fprint(out, cacheUsage)
		return exitOK
	default:
		fmt.Fprintf(errw, "fgimg: unknown cache command %q\n\n%s", sub, cacheUsage)
		return exitUsage
	}
	store, err := openCache(*dirFlag, false, errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	if store == nil {
		dir, _ := cacheDir(*dirFlag)
		fmt.Fprintf(out, "The cache %s is empty.\n", dir)
		return exitOK
	}
	defer store.Close()
	switch sub {
	case "ls":
		recs, err := store.Records()
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DIGEST\tKIND\tSIZE\tBUILT\tTOOK")
		for _, r := range recs {
			var size int64
			for _, o := range r.Outputs {
				size += o.Size
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", planner.Short(r.Digest), r.Kind, bytesize.Format(size),
				r.Created.Local().Format("2006-01-02 15:04"), r.Duration.Round(100*time.Millisecond))
		}
		tw.Flush()
		if err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
	case "du":
		u, err := store.Usage()
		if err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
		fmt.Fprintf(out, "%s in %s\n", bytesize.Format(u.Blobs.Bytes+u.Records.Bytes+u.Snapshots.Bytes), store.Dir())
		fmt.Fprintf(out, "  blobs      %8s  %d\n", bytesize.Format(u.Blobs.Bytes), u.Blobs.Count)
		fmt.Fprintf(out, "  records    %8s  %d\n", bytesize.Format(u.Records.Bytes), u.Records.Count)
		fmt.Fprintf(out, "  snapshots  %8s  %d (unpacked layers, derived)\n", bytesize.Format(u.Snapshots.Bytes), u.Snapshots.Count)
	case "verify":
		problems, err := store.Verify()
		if err != nil {
			fmt.Fprintf(errw, "fgimg: verifying the cache: %s\n", err)
			return exitFailed
		}
		for _, p := range problems {
			fmt.Fprintln(out, p.String())
		}
		if len(problems) > 0 {
			fmt.Fprintf(out, "%d problems in %s.\n", len(problems), store.Dir())
			return exitFailed
		}
		fmt.Fprintf(out, "The cache %s is sound.\n", store.Dir())
	}
	return exitOK
}
