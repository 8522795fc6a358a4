package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/qemu"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages/sandbox"
	"github.com/fgimg/fgimg/targets"
	"github.com/fgimg/fgimg/vet"
)

func cmdVet(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg vet", flag.ContinueOnError)
	var cf configFlags
	cf.register(fs, false)
	cf.registerCacheDir(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	boot := fs.Bool("boot", false, "also boot the target in QEMU without a network, on a throwaway overlay, and list what listens and which units failed")
	consoleLog := fs.String("log", "", "with -boot, write the serial console to `FILE`")
	outDir := fs.String("o", "out", "with -boot, the targets' artifacts are in `DIR`/<target>/, as fgimg build wrote them")
	vulns := fs.String("vulns", "", "match the software stack against the OSV vulnerability database in `FILE` (a JSON file, a directory of them or a zip; default: the operator's vuln_db)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg vet [flags] IMAGE|TARGET [PATH]

Checks a built image (or the root a target is written from) before it is
registered: accounts, SSH, files (world-writable, setuid, packaged files
modified, secrets left behind), package sources, known vulnerabilities
(-vulns) and, with -boot, a boot in isolation. Each finding has an ID, a
severity, the path or package and what to change in the template. The
policy (the target kind's default, the template's vet block, the
operator's configuration in $FGIMG_VET_CONFIG or /etc/fgimg/vet.json,
which a template cannot loosen) says which findings block: exit 1 when
one does. A passing image is approved by tools in the catalog; otherwise
fgimg approve records a review.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) == 0 || (len(pos) == 1 && strings.ContainsRune(pos[0], '/')) {
		return flagResult(usageError{"vet needs an image or target name: fgimg vet IMAGE|TARGET [PATH]"}, errw)
	}
	store, done, err := cf.readCache(errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer done()
	_, plan := cf.load(pos[1:], errw)
	if plan == nil {
		return exitFailed
	}
	subj, err := vetSubjectOf(plan, pos[0])
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	if store == nil {
		fmt.Fprintf(errw, "fgimg: %s is not built (fgimg build -only %s builds it)\n", pos[0], pos[0])
		return exitFailed
	}
	v, err := newVetter(store, *vulns, *boot)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	v.out, v.log, v.consoleLog = *outDir, errw, *consoleLog
	if *boot && subj.target == nil {
		return flagResult(usageError{"-boot boots a target: name a netboot, xcat or warewulf target, not the image " + subj.name}, errw)
	}
	r, err := v.vet(ctx, subj)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: vetting %s: %s\n", subj.name, err)
		return exitFailed
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
	} else {
		writeReport(out, r)
	}
	if !r.Passed {
		return exitFailed
	}
	return exitOK
}

// vetSubject is what vet checks: an image, or the root a target is
// written from (the image after the target's adaptation).
type vetSubject struct {
	target *planner.Target // nil for an image
	name   string
	kind   string // the target's kind; "" for an image
	top    *planner.Stage
	over   *vet.Override
}

func vetSubjectOf(plan *planner.Plan, name string) (*vetSubject, error) {
	for _, t := range plan.Targets {
		if t.Target.Name == name {
			return targetSubject(t)
		}
	}
	if im := plan.Image(name); im != nil {
		return &vetSubject{name: name, top: im.Stages[len(im.Stages)-1]}, nil
	}
	var names []string
	for _, im := range plan.Images {
		names = append(names, im.Image.Name)
	}
	for _, t := range plan.Targets {
		names = append(names, t.Target.Name)
	}
	return nil, fmt.Errorf("there is no image or target %q; there are %s", name, strings.Join(names, ", "))
}

func targetSubject(t *planner.Target) (*vetSubject, error) {
	chain := t.Chain()
	s := &vetSubject{target: t, name: t.Target.Name, kind: t.Target.Kind, top: chain[len(chain)-1]}
	if v := t.Target.Vet; v != nil {
		s.over = &vet.Override{BlockIDs: v.BlockIDs, Allow: v.Allow, Boot: v.Boot}
		if v.Block != "" {
			sev, err := vet.ParseSeverity(v.Block)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.DeclRange, err)
			}
			s.over.Block = &sev
		}
	}
	return s, nil
}

// vetter vets images against the cache, the operator's configuration
// and a vulnerability database, and records the outcome in the catalog.
type vetter struct {
	store *cache.Store
	cfg   *vet.Config
	db    *vet.DB
	// boot boots targets (from their artifacts in out) even when the
	// policy does not require it; log gets QEMU's notes.
	boot bool
	out  string
	log  io.Writer
	// consoleLog, when set, gets the boot's serial console.
	consoleLog string
}

func newVetter(store *cache.Store, vulns string, boot bool) (*vetter, error) {
	cfg, err := vet.LoadConfig(vet.ConfigPath())
	if err != nil {
		return nil, err
	}
	v := &vetter{store: store, cfg: cfg, boot: boot}
	if vulns == "" {
		vulns = cfg.VulnDB
	}
	if vulns != "" {
		if v.db, err = vet.LoadDB(vulns); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// vet returns s's report under its policy: the cached one, or checked
// now from a scratch mount of the image and cached. The catalog records
// the outcome (approved by tools when it passed).
func (v *vetter) vet(ctx context.Context, s *vetSubject) (*vet.Report, error) {
	pol := v.cfg.Effective(s.kind, s.over)
	dbDigest := ""
	if v.db != nil {
		dbDigest = v.db.Digest
	}
	boot := (v.boot || pol.Boot) && s.target != nil
	key := vet.Key(s.top.Digest, pol, dbDigest, boot)
	r, ok, err := vet.Cached(v.store, key)
	if err != nil {
		return nil, err
	}
	if !ok {
		if r, err = v.check(ctx, s, boot); err != nil {
			return nil, err
		}
		r.Apply(pol)
		// A boot that could not run (artifacts not built yet) is not
		// kept: the next vet tries again.
		if r.BootNote == "" {
			if err := vet.Save(v.store, key, s.top.Digest, r); err != nil {
				return nil, err
			}
		}
	}
	files, err := catalog.NewFiles(v.store)
	if err != nil {
		return nil, err
	}
	var blocking []string
	for _, f := range r.BlockingFindings() {
		blocking = append(blocking, f.ID)
	}
	if _, err := files.Vetted(s.top.Digest, s.name, r.Passed, r.Digest(), blocking, time.Now().UTC()); err != nil {
		return nil, err
	}
	return r, nil
}

// check runs the checks on a scratch mount of s's root.
func (v *vetter) check(ctx context.Context, s *vetSubject, boot bool) (*vet.Report, error) {
	if !v.store.Has(s.top.Digest) {
		return nil, fmt.Errorf("%s is not built (fgimg build -only %s builds it)", s.name, s.name)
	}
	// Mounting needs a private mount namespace; in the calling process
	// Isolate runs fgimg again inside one and does not return.
	if err := sandbox.Isolate(); err != nil {
		return nil, err
	}
	ov := &engine.Overlay{Store: v.store}
	st, err := (&engine.Engine{Store: v.store, Runner: ov}).Stack(ctx, s.top)
	if err != nil {
		return nil, err
	}
	work, err := v.store.TempDir("vet-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	root, release, err := ov.Mount(ctx, s.top, work)
	if err != nil {
		return nil, err
	}
	r, err := vet.Check(root, vet.Options{Stack: st, Vulns: v.db})
	// What boots is found (or packed from the root) while it is mounted.
	var opts qemu.Options
	var bootErr error
	if err == nil && boot {
		opts, bootErr = v.bootMedia(ctx, s.target, root, work)
	}
	if rerr := release(); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	r.Image, r.Name = s.top.Digest.String(), s.name
	if boot {
		// A boot asked for with -boot must run; one the policy asks
		// for, when it cannot, leaves the report without it (a finding
		// that blocks, saying why).
		b, err := v.bootProbe(ctx, s.target, opts, bootErr)
		switch {
		case err == nil:
			r.Boot = b
			r.Findings = append(r.Findings, b.Findings()...)
			vet.SortFindings(r.Findings)
		case v.boot || ctx.Err() != nil:
			return nil, fmt.Errorf("the boot in isolation: %w", err)
		default:
			r.BootNote = err.Error()
		}
	}
	return r, nil
}

// bootMedia returns the QEMU options that boot t: its built artifacts
// in OUT/<target>, or for a kind that boots the image's root (warewulf)
// a kernel and an initramfs packed from root into work as a netboot of
// the image is (targets.WriteRootBoot), never into the artifact folder.
func (v *vetter) bootMedia(ctx context.Context, t *planner.Target, root, work string) (qemu.Options, error) {
	boot, err := t.Kind.Boot(t.Write.Spec.(targets.Spec))
	if err != nil {
		return qemu.Options{}, fmt.Errorf("a %s target does not boot: %w", t.Kind.Name(), err)
	}
	opts, err := bootOptions(t, boot, false)
	if err != nil {
		return opts, err
	}
	if boot.Root {
		im := t.Image
		in := &targets.Input{Image: targets.ImageInfo{Name: im.Image.Name, ID: im.ID(), Arch: im.Image.Meta.Arch}, Root: root}
		dir := filepath.Join(work, "boot")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return opts, err
		}
		// Compressed as Warewulf serves it (image.img.gz): uncompressed,
		// the archive and the tree it unpacks to both sit in the guest's
		// memory, and the kernel's rootfs may fill only half of it.
		opts.Kernel, opts.Initrd, err = targets.WriteRootBoot(ctx, in, "gzip", dir)
		return opts, err
	}
	dir := filepath.Join(v.out, t.Target.Name)
	m, err := readManifest(dir)
	if err != nil || m.Kind != t.Kind.Name() || stale(plan1(t), m) {
		return opts, fmt.Errorf("%s does not hold the built target (fgimg build -o %s -only %s builds it)", dir, v.out, t.Target.Name)
	}
	err = m.attach(&opts, boot, dir)
	return opts, err
}

// bootProbe boots t from opts (bootMedia's, or its error) without a
// network and probes what runs.
func (v *vetter) bootProbe(ctx context.Context, t *planner.Target, opts qemu.Options, mediaErr error) (*vet.Boot, error) {
	if mediaErr != nil {
		return nil, mediaErr
	}
	// The initramfs holds the whole image, unpacked into memory.
	opts.Log, opts.Memory, opts.Timeout = v.log, 3072, 8*time.Minute
	tmp, err := v.store.TempDir("vet-boot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	opts.TempDir = tmp
	if v.consoleLog != "" {
		lf, err := os.Create(v.consoleLog)
		if err != nil {
			return nil, err
		}
		defer lf.Close()
		opts.Console = lf
	}
	if opts.Kernel != "" {
		fmt.Fprintf(v.log, "fgimg: booting %s without a network\n", t.Target.Name)
	}
	return vet.BootNetboot(ctx, opts, tmp)
}

// plan1 is a plan of the one target t, for stale.
func plan1(t *planner.Target) *planner.Plan { return &planner.Plan{Targets: []*planner.Target{t}} }

// writeReport prints a report for people: what blocks first.
func writeReport(w io.Writer, r *vet.Report) {
	pol := "block " + r.Policy.Block.String() + " and above"
	if len(r.Policy.BlockIDs) > 0 {
		pol += ", and " + strings.Join(r.Policy.BlockIDs, ", ")
	}
	if len(r.Policy.Allow) > 0 {
		pol += "; allow " + strings.Join(r.Policy.Allow, ", ")
	}
	if r.Policy.Boot {
		pol += "; boot required"
	}
	fmt.Fprintf(w, "vet %s  image %s  policy: %s\n", r.Name, shortDigest(r.Image), pol)
	if r.VulnDB != "" {
		fmt.Fprintf(w, "vulnerabilities from %s\n", shortDigest(r.VulnDB))
	}
	if b := r.Boot; b != nil {
		fmt.Fprintf(w, "boot without a network: login prompt %t after %.1f s (probe %.1f s)\n", b.Login, b.Seconds, b.ProbeSeconds)
	}
	counts := map[vet.Severity]int{}
	shown := map[string]int{}
	for _, blocks := range []bool{true, false} {
		for _, f := range r.Findings {
			if f.Blocks != blocks {
				continue
			}
			counts[f.Severity]++
			if shown[f.ID]++; shown[f.ID] > 10 && !f.Blocks {
				continue // the rest are counted below
			}
			mark := "      "
			if f.Blocks {
				mark = "BLOCKS"
			}
			where := strings.TrimSpace(f.Path + " " + f.Package)
			fmt.Fprintf(w, "%s  %-8s  %-28s %s\n", mark, f.Severity, f.ID, where)
			fmt.Fprintf(w, "        %s\n        fix: %s\n", f.Detail, f.Fix)
		}
	}
	for id, n := range shown {
		if n > 10 {
			fmt.Fprintf(w, "        … and %d more %s\n", n-10, id)
		}
	}
	var parts []string
	for s := vet.Critical; s >= vet.Info; s-- {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	summary := "no findings"
	if len(parts) > 0 {
		summary = strings.Join(parts, ", ")
	}
	if r.Passed {
		fmt.Fprintf(w, "passed: nothing blocks (%s); approved by tools (checks: %.1f s)\n", summary, r.Seconds)
		return
	}
	fmt.Fprintf(w, "%d finding(s) block (%s).\nFix the template, or after review: fgimg approve %s -by NAME -note TEXT\n", r.Blocking, summary, shortDigest(r.Image))
}

func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) < 12 {
		return d
	}
	return hex[:12]
}

func cmdApprove(_ context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg approve", flag.ContinueOnError)
	var cacheDir, by, note string
	var reject bool
	fs.StringVar(&cacheDir, "cache-dir", "", "the cache `directory` (default $FGIMG_CACHE, else $XDG_CACHE_HOME/fgimg, else ~/.cache/fgimg)")
	fs.StringVar(&by, "by", "", "who reviewed the image (`NAME`; required)")
	fs.StringVar(&note, "note", "", "why it is approved (or rejected): `TEXT` (required)")
	fs.BoolVar(&reject, "reject", false, "record that the image is rejected: register refuses it whatever vetting says")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg approve [-reject] -by NAME -note TEXT ID

Records a review of a vetted image in the catalog: approved (register
then accepts it despite findings that block), or rejected with -reject
(register refuses it). ID is the image digest fgimg vet printed (a
unique prefix of it), or the image or target name vetted last. A new
build with another digest needs a new approval.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	switch {
	case len(pos) != 1:
		return flagResult(usageError{"approve needs one image: fgimg approve -by NAME -note TEXT ID"}, errw)
	case by == "" || note == "":
		return flagResult(usageError{"approve needs who reviewed and why: -by NAME -note TEXT"}, errw)
	}
	store, err := openCache(cacheDir, false, errw)
	if err == nil && store == nil {
		err = errors.New("there is no cache: nothing is vetted")
	}
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer store.Close()
	files, err := catalog.NewFiles(store)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	a, err := files.FindApproval(pos[0])
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	status := catalog.StatusApproved
	if reject {
		status = catalog.StatusRejected
	}
	next := catalog.Approval{Image: a.Image, Name: a.Name, Status: status, By: catalog.ByReview, Who: by,
		When: time.Now().UTC(), Note: note, Report: a.Report, Blocking: a.Blocking}
	if err := files.SetApproval(next); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	fmt.Fprintf(out, "%s %s (%s) by review: %s, %q\n", status, shortDigest(a.Image.String()), a.Name, by, note)
	return exitOK
}

// vetGate vets each target before it is registered and returns those
// that may be: an image whose vetting passes its policy is approved by
// tools; one with findings that block goes only when a review approved
// it (fgimg approve); a rejected one never. Up to jobs images are vetted
// at once. For each refused target it
// says on w what blocks and how to approve.
func vetGate(subjects []*vetSubject, jobs int, vetOne func(*vetSubject) (*vet.Report, error), files *catalog.Files, w io.Writer) (allowed []string, refused int) {
	reports, errs := vetAll(subjects, jobs, vetOne)
	for i, s := range subjects {
		refuse := func(format string, args ...any) {
			refused++
			fmt.Fprintf(w, "fgimg: register refuses %s (image %s): %s\n", s.name, shortDigest(s.top.Digest.String()), fmt.Sprintf(format, args...))
		}
		r, err := reports[i], errs[i]
		if err != nil {
			refuse("vetting failed: %s", err)
			continue
		}
		a, err := files.Approval(s.top.Digest)
		if err != nil {
			refuse("%s", err)
			continue
		}
		switch {
		case a != nil && a.Status == catalog.StatusRejected:
			refuse("rejected by %s on %s: %s", a.Who, a.When.Format(time.DateOnly), a.Note)
		case r.Passed:
			allowed = append(allowed, s.name)
		case a != nil && a.Status == catalog.StatusApproved && a.By == catalog.ByReview:
			fmt.Fprintf(w, "%s: %d finding(s) block, approved by review (%s, %s: %s)\n", s.name, r.Blocking, a.Who, a.When.Format(time.DateOnly), a.Note)
			allowed = append(allowed, s.name)
		default:
			var lines []string
			for _, f := range r.BlockingFindings() {
				where := strings.TrimSpace(f.Path + " " + f.Package)
				if where == "" {
					where = f.Detail
				}
				lines = append(lines, fmt.Sprintf("  %-8s %s %s", f.Severity, f.ID, where))
			}
			refuse("not approved, %d finding(s) block under its policy (%s):\n%s\nfix the template and build again, or after review: fgimg approve %s -by NAME -note TEXT",
				r.Blocking, policyKind(s.kind), strings.Join(lines, "\n"), shortDigest(s.top.Digest.String()))
		}
	}
	return allowed, refused
}

// vetAll vets the subjects, up to jobs images at once (a boot in
// isolation takes minutes, and bare-metal kinds each boot). Targets of
// one image are vetted in turn, so that the first one's report, cached,
// serves the next instead of a second boot of the same image.
func vetAll(subjects []*vetSubject, jobs int, vetOne func(*vetSubject) (*vet.Report, error)) ([]*vet.Report, []error) {
	reports, errs := make([]*vet.Report, len(subjects)), make([]error, len(subjects))
	var groups [][]int
	byImage := map[digest.Digest]int{}
	for i, s := range subjects {
		g, ok := byImage[s.top.Digest]
		if !ok {
			g = len(groups)
			byImage[s.top.Digest] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	sem := make(chan struct{}, max(jobs, 1))
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, i := range g {
				reports[i], errs[i] = vetOne(subjects[i])
			}
		}()
	}
	wg.Wait()
	return reports, errs
}

func policyKind(kind string) string {
	if vet.IsBareMetal(kind) {
		return kind + ", bare metal"
	}
	return kind
}

// vetBeforeRegister is register's gate over the selected targets names.
func vetBeforeRegister(ctx context.Context, store *cache.Store, plan *planner.Plan, names []string, out string, jobs int, errw io.Writer) (allowed []string, refused int, err error) {
	v, err := newVetter(store, "", false)
	if err != nil {
		return nil, 0, err
	}
	errw = &lockedWriter{w: errw} // the vets run at once
	v.out, v.log = out, errw
	files, err := catalog.NewFiles(store)
	if err != nil {
		return nil, 0, err
	}
	var subjects []*vetSubject
	for _, n := range names {
		s, err := vetSubjectOf(plan, n)
		if err != nil {
			return nil, 0, err
		}
		subjects = append(subjects, s)
	}
	allowed, refused = vetGate(subjects, jobs, func(s *vetSubject) (*vet.Report, error) { return v.vet(ctx, s) }, files, errw)
	return allowed, refused, nil
}

// lockedWriter serialises writes to w from goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
