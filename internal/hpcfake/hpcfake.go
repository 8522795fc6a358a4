// Package hpcfake is a stand-in for the bare-metal management commands
// fgimg register runs: xCAT's mkdef, chdef, lsdef and rmdef, Moab's
// mschedctl and Warewulf v4's wwctl. None of them is packaged where fgimg's
// tests run, so the tests put these fakes on PATH: one program (a test
// binary, dispatched by the name it is called by: Dispatch) that records
// every call and keeps state in a directory between calls, as the real
// commands keep it in xCAT's tables, Moab's running scheduler and
// Warewulf's image store.
//
// Written from the published command references (xCAT's man pages for
// mkdef, chdef, lsdef and rmdef; Moab's mschedctl; wwctl's image and
// profile commands in Warewulf 4.6). What they do:
//
//   - lsdef -t osimage [-l] [-z] [-o NAME | NAME]: the osimages in the
//     stanza format with -z ("NAME:" then "    attr=value" lines, objtype
//     first, then attributes in name order); without -z and -l, one
//     "NAME  (osimage)" line each; a missing NAME is an error.
//   - mkdef -z (stanzas on standard input) and mkdef -t osimage -o NAME
//     attr=value...: refused when the object exists ("A definition for
//     ... already exists"), and for attributes the osimage and linuximage
//     tables do not have.
//   - chdef -t osimage -o NAME attr=value...: sets the attributes of an
//     existing osimage (attr= clears one).
//   - rmdef -t osimage -o NAME: removes it.
//   - mschedctl -R: the scheduler recycles: it reads moab.cfg
//     ($MOABHOMEDIR/etc/moab.cfg) and what it loaded (each NODECFG's
//     OSLIST) becomes its state.
//   - wwctl image list | show NAME | import DIR NAME [--force] | build
//     NAME | rename [--build] OLD NEW | delete [--yes] NAME..., and wwctl
//     profile set --yes --image NAME PROFILE: images are directories
//     (chroots/NAME/rootfs, copied on import with cp -a), build writes
//     images/NAME.img, profiles hold their image's name ("default" exists).
//
// What they do not emulate: other object types and commands, xCAT's
// daemon and its tables beyond the osimage attributes, noderanges,
// nodeset and packimage; Moab's other configuration and its job
// scheduling; Warewulf's container sources (docker://, archives), its
// overlays, --update, the refusal to delete an image nodes use, and the
// image build itself (the image file holds the tree's file count, not a
// cpio archive).
package hpcfake

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Commands are the names the fake answers to.
var Commands = []string{"lsdef", "mkdef", "chdef", "rmdef", "mschedctl", "wwctl"}

// StateEnv names the variable holding the fake's state directory.
const StateEnv = "FGIMG_HPCFAKE_STATE"

// Dispatch runs the fake and exits when the program was called by one of
// the commands' names; else it returns. Test packages call it first in
// TestMain.
func Dispatch() {
	name := filepath.Base(os.Args[0])
	for _, c := range Commands {
		if name == c {
			os.Exit(Main(name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
		}
	}
}

// State is what the fake keeps between calls.
type State struct {
	// Calls are the command lines, in order.
	Calls []string `json:"calls"`
	// OSImages are the osimage definitions by name: attribute → value.
	OSImages map[string]map[string]string `json:"osimages"`
	// MoabOSList is each NODECFG's OSLIST as the scheduler last loaded
	// it (mschedctl -R); Recycles counts the recycles.
	MoabOSList map[string][]string `json:"moab_oslist"`
	Recycles   int                 `json:"recycles"`
	// Profiles map a Warewulf profile to its image; Built the images
	// built, by name.
	Profiles map[string]string `json:"profiles"`
	Built    map[string]bool   `json:"built"`
}

// Load reads the state in dir.
func Load(dir string) (*State, error) {
	st := &State{OSImages: map[string]map[string]string{}, MoabOSList: map[string][]string{},
		Profiles: map[string]string{"default": ""}, Built: map[string]bool{}}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	return st, json.Unmarshal(b, st)
}

func (st *State) save(dir string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

// ImageRoot is where the fake keeps Warewulf image name's tree.
func ImageRoot(dir, name string) string { return filepath.Join(dir, "chroots", name, "rootfs") }

// Main runs command name with args and returns its exit status.
func Main(name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dir := os.Getenv(StateEnv)
	if dir == "" {
		fmt.Fprintf(stderr, "%s (fgimg's fake): %s is not set\n", name, StateEnv)
		return 2
	}
	// One call at a time changes the state, as xCAT's daemon, Moab and
	// Warewulf serialise their own.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err == nil {
		defer lock.Close()
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s (fake): %v\n", name, err)
		return 2
	}
	st, err := Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "%s (fake): %v\n", name, err)
		return 2
	}
	st.Calls = append(st.Calls, strings.Join(append([]string{name}, args...), " "))
	f := &fake{st: st, dir: dir, stdin: stdin, out: stdout}
	var run func([]string) error
	switch name {
	case "lsdef":
		run = f.lsdef
	case "mkdef":
		run = f.mkdef
	case "chdef":
		run = f.chdef
	case "rmdef":
		run = f.rmdef
	case "mschedctl":
		run = f.mschedctl
	case "wwctl":
		run = f.wwctl
	}
	err = run(args)
	if serr := st.save(dir); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		if name == "wwctl" {
			fmt.Fprintf(stderr, "ERROR  : %v\n", err)
			return 255
		}
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

type fake struct {
	st    *State
	dir   string
	stdin io.Reader
	out   io.Writer
}

// flags splits args into the flags (with their values for those in
// valued) and the rest.
func flags(args []string, valued ...string) (map[string]string, []string) {
	fl := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			fl[k] = v
			continue
		}
		fl[a] = ""
		for _, v := range valued {
			if a == v && i+1 < len(args) {
				fl[a] = args[i+1]
				i++
			}
		}
	}
	return fl, rest
}

func needOSImage(fl map[string]string) error {
	if fl["-t"] != "osimage" {
		return fmt.Errorf("object type %q: the fake knows osimage only", fl["-t"])
	}
	return nil
}

// osimageAttrs are the attributes of xCAT's osimage and linuximage tables
// an osimage definition takes.
var osimageAttrs = map[string]bool{
	"imagetype": true, "provmethod": true, "profile": true, "osname": true, "osvers": true, "osarch": true,
	"osdistroname": true, "osupdatename": true, "description": true, "groups": true, "synclists": true,
	"postscripts": true, "postbootscripts": true, "serverrole": true, "isdeletable": true, "kitcomponents": true,
	"environvar": true, "usercomment": true, "rootfstype": true, "template": true, "boottarget": true,
	"addkcmdline": true, "pkglist": true, "pkgdir": true, "otherpkglist": true, "otherpkgdir": true,
	"exlist": true, "postinstall": true, "rootimgdir": true, "kerneldir": true, "nodebootif": true,
	"otherifce": true, "netdrivers": true, "kernelver": true, "krpmver": true, "permission": true,
	"dump": true, "crashkernelsize": true, "partitionfile": true, "driverupdatesrc": true,
}

func (f *fake) lsdef(args []string) error {
	fl, rest := flags(args, "-t", "-o")
	if err := needOSImage(fl); err != nil {
		return err
	}
	names := sortedNames(f.st.OSImages)
	if o := fl["-o"]; o != "" || len(rest) > 0 {
		if o == "" {
			o = rest[0]
		}
		if f.st.OSImages[o] == nil {
			return fmt.Errorf("Could not find an object named '%s' of type 'osimage'.", o)
		}
		names = []string{o}
	}
	if len(names) == 0 {
		fmt.Fprintln(f.out, "Could not find any object definitions to display.")
		return nil
	}
	_, z := fl["-z"]
	_, l := fl["-l"]
	if z {
		fmt.Fprintln(f.out, "# <xCAT data object stanza file>")
	}
	for _, n := range names {
		attrs := f.st.OSImages[n]
		switch {
		case z:
			fmt.Fprintf(f.out, "\n%s:\n    objtype=osimage\n", n)
			for _, k := range sortedNames(attrs) {
				fmt.Fprintf(f.out, "    %s=%s\n", k, attrs[k])
			}
		case l:
			fmt.Fprintf(f.out, "Object name: %s\n", n)
			for _, k := range sortedNames(attrs) {
				fmt.Fprintf(f.out, "    %s=%s\n", k, attrs[k])
			}
		default:
			fmt.Fprintf(f.out, "%s  (osimage)\n", n)
		}
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readStanzas parses stanzas: "name:" lines and indented attr=value lines.
func readStanzas(r io.Reader) (map[string]map[string]string, []string, error) {
	defs := map[string]map[string]string{}
	var order []string
	var cur map[string]string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
		case !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") && strings.HasSuffix(t, ":"):
			name := strings.TrimSuffix(t, ":")
			cur = map[string]string{}
			defs[name] = cur
			order = append(order, name)
		case cur != nil:
			k, v, ok := strings.Cut(t, "=")
			if !ok {
				return nil, nil, fmt.Errorf("stanza line %q is not attr=value", t)
			}
			cur[k] = v
		default:
			return nil, nil, fmt.Errorf("stanza line %q comes before any object name", t)
		}
	}
	return defs, order, sc.Err()
}

func checkAttrs(name string, attrs map[string]string) error {
	for k := range attrs {
		if k != "objtype" && !osimageAttrs[k] {
			return fmt.Errorf("'%s' is not a valid attribute name for an object type of 'osimage'.", k)
		}
	}
	if t := attrs["objtype"]; t != "" && t != "osimage" {
		return fmt.Errorf("%s: object type %q: the fake knows osimage only", name, t)
	}
	return nil
}

func attrArgs(rest []string) (map[string]string, error) {
	attrs := map[string]string{}
	for _, a := range rest {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not attr=value", a)
		}
		attrs[k] = v
	}
	return attrs, nil
}

func (f *fake) mkdef(args []string) error {
	fl, rest := flags(args, "-t", "-o")
	var defs map[string]map[string]string
	var order []string
	if _, z := fl["-z"]; z {
		var err error
		if defs, order, err = readStanzas(f.stdin); err != nil {
			return err
		}
	} else {
		if err := needOSImage(fl); err != nil {
			return err
		}
		attrs, err := attrArgs(rest)
		if err != nil {
			return err
		}
		defs, order = map[string]map[string]string{fl["-o"]: attrs}, []string{fl["-o"]}
	}
	for _, n := range order {
		attrs := defs[n]
		if err := checkAttrs(n, attrs); err != nil {
			return err
		}
		if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`).MatchString(n) {
			return fmt.Errorf("'%s' is not a valid object name", n)
		}
		if f.st.OSImages[n] != nil {
			return fmt.Errorf("A definition for '%s' already exists.", n)
		}
		delete(attrs, "objtype")
		f.st.OSImages[n] = attrs
	}
	fmt.Fprintln(f.out, "1 object definitions have been created or modified.")
	return nil
}

func (f *fake) chdef(args []string) error {
	fl, rest := flags(args, "-t", "-o")
	if err := needOSImage(fl); err != nil {
		return err
	}
	n := fl["-o"]
	cur := f.st.OSImages[n]
	if cur == nil {
		// xCAT's chdef would create it; fgimg never relies on that.
		return fmt.Errorf("Could not find an object named '%s' of type 'osimage'.", n)
	}
	attrs, err := attrArgs(rest)
	if err != nil {
		return err
	}
	if err := checkAttrs(n, attrs); err != nil {
		return err
	}
	for k, v := range attrs {
		if v == "" {
			delete(cur, k)
		} else {
			cur[k] = v
		}
	}
	fmt.Fprintln(f.out, "1 object definitions have been created or modified.")
	return nil
}

func (f *fake) rmdef(args []string) error {
	fl, _ := flags(args, "-t", "-o")
	if err := needOSImage(fl); err != nil {
		return err
	}
	n := fl["-o"]
	if f.st.OSImages[n] == nil {
		return fmt.Errorf("Could not find an object named '%s' of type 'osimage'.", n)
	}
	delete(f.st.OSImages, n)
	fmt.Fprintln(f.out, "1 object definitions have been removed.")
	return nil
}

var nodecfgLine = regexp.MustCompile(`^\s*NODECFG\[([^\]]+)\]\s+(.*)$`)

func (f *fake) mschedctl(args []string) error {
	if len(args) != 1 || args[0] != "-R" {
		return fmt.Errorf("the fake knows mschedctl -R only")
	}
	home := os.Getenv("MOABHOMEDIR")
	if home == "" {
		home = "/opt/moab"
	}
	b, err := os.ReadFile(filepath.Join(home, "etc", "moab.cfg"))
	if err != nil {
		return fmt.Errorf("cannot read the configuration: %v", err)
	}
	loaded := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		m := nodecfgLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, w := range strings.Fields(m[2]) {
			if v, ok := strings.CutPrefix(w, "OSLIST="); ok {
				// A later OSLIST for the same node replaces the earlier one.
				loaded[m[1]] = strings.Split(v, ",")
			}
		}
	}
	f.st.MoabOSList = loaded
	f.st.Recycles++
	fmt.Fprintln(f.out, "scheduler will be recycled")
	return nil
}

var wwName = regexp.MustCompile(`^[\w.:-]+$`)

func (f *fake) wwctl(args []string) error {
	if len(args) < 2 {
		return errors.New("the fake knows wwctl image and wwctl profile set")
	}
	fl, rest := flags(args[2:], "--image")
	exists := func(n string) bool {
		fi, err := os.Stat(ImageRoot(f.dir, n))
		return err == nil && fi.IsDir()
	}
	switch args[0] + " " + args[1] {
	case "image list":
		fmt.Fprintln(f.out, "IMAGE NAME")
		entries, _ := os.ReadDir(filepath.Join(f.dir, "chroots"))
		for _, e := range entries {
			fmt.Fprintln(f.out, e.Name())
		}
		return nil
	case "image show":
		if len(rest) != 1 || !exists(rest[0]) {
			return fmt.Errorf("%s is not a valid image", strings.Join(rest, " "))
		}
		fmt.Fprintln(f.out, ImageRoot(f.dir, rest[0]))
		return nil
	case "image import":
		if len(rest) != 2 {
			return errors.New("the fake imports a SOURCE directory as a NAME")
		}
		src, name := rest[0], rest[1]
		if !wwName.MatchString(name) {
			return fmt.Errorf("image name contains illegal characters: %s", name)
		}
		if _, u := fl["--update"]; u {
			return errors.New("the fake does not emulate --update")
		}
		if exists(name) {
			if _, force := fl["--force"]; !force {
				return fmt.Errorf("image name exists, specify --force, --update, or choose a different name: %s", name)
			}
			os.RemoveAll(filepath.Join(f.dir, "chroots", name))
		}
		if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
			return fmt.Errorf("invalid dir or uri: %s (the fake imports directories only)", src)
		}
		dst := ImageRoot(f.dir, name)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
			return fmt.Errorf("could not import image: %v: %s", err, out)
		}
		delete(f.st.Built, name)
		return nil
	case "image build":
		for _, n := range rest {
			if !exists(n) {
				return fmt.Errorf("%s is not a valid image", n)
			}
			if err := f.build(n); err != nil {
				return err
			}
		}
		return nil
	case "image rename":
		if len(rest) != 2 {
			return errors.New("rename takes IMAGE NEW_NAME")
		}
		if !exists(rest[0]) {
			return fmt.Errorf("%s source dir does not exist", rest[0])
		}
		if exists(rest[1]) {
			return fmt.Errorf("an other image with the name %s already exists", rest[1])
		}
		if !wwName.MatchString(rest[1]) {
			return fmt.Errorf("image name contains illegal characters: %s", rest[1])
		}
		if err := os.Rename(filepath.Join(f.dir, "chroots", rest[0]), filepath.Join(f.dir, "chroots", rest[1])); err != nil {
			return err
		}
		os.Remove(filepath.Join(f.dir, "images", rest[0]+".img"))
		delete(f.st.Built, rest[0])
		if _, b := fl["--build"]; b {
			return f.build(rest[1])
		}
		return nil
	case "image delete":
		if _, yes := fl["--yes"]; !yes {
			return errors.New("the fake does not ask: pass --yes")
		}
		for _, n := range rest {
			if !exists(n) {
				return fmt.Errorf("image %s does not exist", n)
			}
			os.RemoveAll(filepath.Join(f.dir, "chroots", n))
			os.Remove(filepath.Join(f.dir, "images", n+".img"))
			delete(f.st.Built, n)
		}
		return nil
	case "profile set":
		if _, yes := fl["--yes"]; !yes {
			return errors.New("the fake does not ask: pass --yes")
		}
		if len(rest) != 1 {
			return errors.New("profile set takes one PROFILE")
		}
		if _, ok := f.st.Profiles[rest[0]]; !ok {
			return fmt.Errorf("profile '%s' does not exist", rest[0])
		}
		im, ok := fl["--image"]
		if !ok {
			return errors.New("the fake sets --image only")
		}
		f.st.Profiles[rest[0]] = im
		return nil
	}
	return fmt.Errorf("the fake does not know wwctl %s %s", args[0], args[1])
}

// build stands for wwctl image build: images/NAME.img records how many
// entries the tree has.
func (f *fake) build(name string) error {
	n := 0
	if err := filepath.WalkDir(ImageRoot(f.dir, name), func(string, fs.DirEntry, error) error { n++; return nil }); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "images"), 0o755); err != nil {
		return err
	}
	f.st.Built[name] = true
	return os.WriteFile(filepath.Join(f.dir, "images", name+".img"), fmt.Appendf(nil, "%d entries\n", n), 0o644)
}
