package openstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/openstacktest"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// The tests share one Keystone and Glance (starting them takes up to
// half a minute); each uses its own target names.
func TestMain(m *testing.M) { os.Exit(openstacktest.Main(m)) }

func open(ctx context.Context, f *register.File) (register.Cloud, error) { return Open(ctx, f) }

// env starts (once) the servers, selects their cloud, and returns an
// output directory and Options for it.
func env(t testing.TB) (*openstacktest.Server, string, register.Options) {
	s := openstacktest.Shared(t)
	s.Setenv(t)
	out := t.TempDir()
	var log bytes.Buffer
	return s, out, register.Options{Out: out, Open: open, Log: &log, Retry: register.Retry{Attempts: 2, First: 100 * time.Millisecond}}
}

// run registers targets and fails the test on any error.
func run(t testing.TB, o register.Options, targets ...string) []register.Result {
	t.Helper()
	o.Targets = targets
	res := register.Run(context.Background(), o)
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("register %s: %v\n%s", r.Target, r.Err, o.Log)
		}
	}
	return res
}

// images is what Glance holds for target (through our own Find, checked
// against a direct query below).
func glance(t testing.TB, target string) []register.Image {
	t.Helper()
	c, err := Open(context.Background(), &register.File{})
	if err != nil {
		t.Fatal(err)
	}
	ims, err := c.Find(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	return ims
}

func ops(p *register.Plan) string {
	var s []string
	for _, a := range p.Actions {
		s = append(s, a.Op)
	}
	return strings.Join(s, ",")
}

func TestRegisterIsIdempotentByContent(t *testing.T) {
	_, out, o := env(t)
	store, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	o.Store = store
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 1<<20, 1)
	f := registertest.Write(t, out, registertest.Disk("idem"), map[string]string{"disk.qcow2": src})

	res := run(t, o, "idem")
	if got := ops(res[0].Plan); got != "upload" {
		t.Fatalf("first register planned %s, want upload\n%s", got, o.Log)
	}
	if !strings.Contains(fmt.Sprint(o.Log), `+ upload disk.qcow2 (`) {
		t.Errorf("the plan does not show the upload:\n%s", o.Log)
	}
	ims := glance(t, "idem")
	if len(ims) != 1 || ims[0].State != register.StateReady || ims[0].Digest != f.Steps[0].Digest || ims[0].Size != f.Steps[0].Size {
		t.Fatalf("Glance holds %+v; want one active image of %s, %d bytes", ims, f.Steps[0].Digest, f.Steps[0].Size)
	}
	first := ims[0].ID
	// Glance itself says what the bytes are and that they arrived whole.
	c, _ := Open(context.Background(), &register.File{})
	im, err := images.Get(context.Background(), c.client, first).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if im.DiskFormat != "qcow2" || im.ContainerFormat != "bare" || im.Properties["os_distro"] != "debian" || im.Visibility != "private" {
		t.Errorf("image %s: disk_format %s, container_format %s, os_distro %v, visibility %s", first, im.DiskFormat, im.ContainerFormat, im.Properties["os_distro"], im.Visibility)
	}
	// The registration is recorded beside the artifacts and in the cache.
	var recs register.Records
	b, err := os.ReadFile(filepath.Join(out, "idem", register.RecordsName))
	if err != nil || json.Unmarshal(b, &recs) != nil || len(recs.Images) != 1 || recs.Images[0].ImageID != first || !recs.Images[0].Uploaded {
		t.Errorf("registrations.json: %v %s", err, b)
	}
	if rec, err := store.Record(register.RecordKey(f.TargetDigest)); err != nil || rec.Kind != register.RecordKind {
		t.Errorf("the cache has no registrations record: %v", err)
	}

	// Again, nothing changed: nothing is uploaded or written, with one
	// authentication, gophercloud's discovery of Glance's API version and
	// one query, quickly.
	var calls counter
	transport = &calls
	start := time.Now()
	res = run(t, o, "idem")
	took := time.Since(start)
	transport = nil
	if budget := noopBudget(); took > budget {
		t.Errorf("a register with nothing to do took %v (budget %v)", took, budget)
	}
	if got := strings.Join(calls.reqs, ", "); got != "POST /v3/auth/tokens, GET /, GET /v2/images" {
		t.Errorf("a register with nothing to do made the requests %s; want one authentication, Glance's version discovery and one query", got)
	}
	if b2, _ := os.ReadFile(filepath.Join(out, "idem", register.RecordsName)); !bytes.Equal(b, b2) {
		t.Errorf("a register with nothing to do rewrote registrations.json:\n%s", b2)
	}
	if got := ops(res[0].Plan); got != "skip" || res[0].Uploaded != 0 {
		t.Fatalf("second register planned %s and uploaded %d bytes, want skip and 0", got, res[0].Uploaded)
	}
	if !strings.Contains(fmt.Sprint(o.Log), fmt.Sprintf(`= skip: "idem" is image %s with the same digest`, first)) {
		t.Errorf("the plan does not say it skips:\n%s", o.Log)
	}
	if ims := glance(t, "idem"); len(ims) != 1 || ims[0].ID != first {
		t.Errorf("after a no-op register Glance holds %+v", ims)
	}

	// A changed artifact registers a new image beside the old one.
	registertest.Qcow2(t, src, 1<<20, 2)
	registertest.Write(t, out, registertest.Disk("idem"), map[string]string{"disk.qcow2": src})
	run(t, o, "idem")
	ims = glance(t, "idem")
	if len(ims) != 2 || ims[0].State != register.StateReady || ims[1].State != register.StateReady {
		t.Fatalf("after a changed artifact Glance holds %+v; want two active images", ims)
	}

	// -replace retires the older ones once the new one is active, and
	// leaves alone an image of the same name that fgimg did not make.
	foreign := images.CreateOpts{Name: "idem", DiskFormat: "qcow2", ContainerFormat: "bare"}
	fim, err := images.Create(context.Background(), c.client, foreign).Extract()
	if err != nil {
		t.Fatal(err)
	}
	registertest.Qcow2(t, src, 1<<20, 3)
	rf := registertest.Disk("idem")
	rf.Replace = true
	f = registertest.Write(t, out, rf, map[string]string{"disk.qcow2": src})
	res = run(t, o, "idem")
	if got := ops(res[0].Plan); got != "upload,retire,retire" {
		t.Errorf("register -replace planned %s\n%s", got, o.Log)
	}
	var active, hidden int
	pages, err := images.List(c.client, query{register.PropTarget: {"idem"}, "os_hidden": {"true"}}).AllPages(context.Background())
	hiddenList, _ := images.ExtractImages(pages)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range append(glance(t, "idem"), func() (l []register.Image) {
		for _, im := range hiddenList {
			l = append(l, convert(im))
		}
		return l
	}()...) {
		switch {
		case im.State == register.StateReady && im.Digest == f.Steps[0].Digest:
			active++
		case im.State == register.StateRetired:
			hidden++
		default:
			t.Errorf("after -replace: image %s is %s", im.ID, im.Status)
		}
	}
	if active != 1 || hidden != 2 {
		t.Errorf("after -replace: %d active, %d retired; want 1 and 2", active, hidden)
	}
	if got, err := images.Get(context.Background(), c.client, fim.ID).Extract(); err != nil || got.Hidden || got.Status != images.ImageStatusQueued {
		t.Errorf("the image fgimg did not register was touched: %+v %v", got, err)
	}
}

// noopBudget is the second a register with nothing to do may take,
// stretched by the machine's load beyond one runnable task per CPU (the
// Python servers answering it share the CPUs with whatever else runs),
// and doubled for the load's swings within its one-minute average.
func noopBudget() time.Duration {
	b, _ := os.ReadFile("/proc/loadavg")
	var load float64
	fmt.Sscan(string(b), &load)
	return time.Duration(float64(time.Second) * max(1, 2*load/float64(runtime.NumCPU())))
}

// counter records the requests made through it.
type counter struct {
	mu   sync.Mutex
	reqs []string
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func TestTamperedArtifactIsNotUploaded(t *testing.T) {
	_, out, o := env(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 1<<20, 4)
	registertest.Write(t, out, registertest.Disk("tampered"), map[string]string{"disk.qcow2": src})
	p := filepath.Join(out, "tampered", "disk.qcow2")
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("x"), 70000)
	fh.Close()
	o.Targets = []string{"tampered"}
	res := register.Run(context.Background(), o)
	if res[0].Err == nil || !strings.Contains(res[0].Error, "changed after the build") {
		t.Fatalf("register of a tampered artifact: %v", res[0].Err)
	}
	if ims := glance(t, "tampered"); len(ims) != 0 {
		t.Errorf("a tampered artifact reached Glance: %+v", ims)
	}
}

// cancelAfter cancels an upload once n bytes have been read from it, as
// a register killed mid-upload.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= int64(n); c.n <= 0 {
		c.cancel()
		time.Sleep(200 * time.Millisecond) // let the transport see it mid-body
	}
	return n, err
}

func TestInterruptedUploadIsCleanedUp(t *testing.T) {
	_, out, o := env(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 16<<20, 5)
	registertest.Write(t, out, registertest.Disk("killed"), map[string]string{"disk.qcow2": src})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	killing := o
	killing.Open = func(ctx context.Context, f *register.File) (register.Cloud, error) {
		c, err := Open(ctx, f)
		if c != nil {
			c.body = func(r io.Reader) io.Reader { return &cancelAfter{r: r, n: 2 << 20, cancel: cancel} }
		}
		return c, err
	}
	killing.Targets = []string{"killed"}
	if res := register.Run(ctx, killing); res[0].Err == nil {
		t.Fatal("the interrupted register succeeded")
	}
	ims := glance(t, "killed")
	if len(ims) != 1 || ims[0].State != register.StateIncomplete {
		t.Fatalf("after an interrupted upload Glance holds %+v; want one incomplete image", ims)
	}
	stale := ims[0].ID
	res := run(t, o, "killed")
	if got := ops(res[0].Plan); got != "delete,upload" {
		t.Errorf("after an interrupted upload, register planned %s\n%s", got, o.Log)
	}
	if !strings.Contains(fmt.Sprint(o.Log), "- delete stale upload ("+ims[0].Status) || !strings.Contains(fmt.Sprint(o.Log), stale) {
		t.Errorf("the plan does not say it deletes the stale upload %s:\n%s", stale, o.Log)
	}
	ims = glance(t, "killed")
	if len(ims) != 1 || ims[0].State != register.StateReady || ims[0].ID == stale {
		t.Errorf("after the second register Glance holds %+v; want one new active image", ims)
	}
}

func TestBadCredentialsNameTheSettingAndHideTheSecret(t *testing.T) {
	s, out, o := env(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 64<<10, 6)
	registertest.Write(t, out, registertest.Disk("badpw"), map[string]string{"disk.qcow2": src})
	b, err := os.ReadFile(s.CloudsYAML)
	if err != nil {
		t.Fatal(err)
	}
	wrong := "wrong-" + s.Password
	bad := filepath.Join(t.TempDir(), "clouds.yaml")
	os.WriteFile(bad, bytes.ReplaceAll(b, []byte(s.Password), []byte(wrong)), 0o600)
	t.Setenv("OS_CLIENT_CONFIG_FILE", bad)

	check := func(what, want string) {
		t.Helper()
		var log bytes.Buffer
		o.Log, o.Targets = &log, []string{"badpw"}
		res := register.Run(context.Background(), o)
		j, _ := json.Marshal(res)
		all := log.String() + res[0].Error + string(j)
		if res[0].Err == nil || !strings.Contains(res[0].Error, want) {
			t.Errorf("%s: error %q; want it to say %q", what, res[0].Error, want)
		}
		if strings.Contains(all, s.Password) || strings.Contains(all, wrong) {
			t.Errorf("%s: the output shows a password:\n%s", what, all)
		}
	}
	check("wrong password", fmt.Sprintf(`openstack cloud %q (%s): Keystone refused the credentials (401`, openstacktest.CloudName, s.KeystoneURL))
	check("wrong password", "check the credentials of cloud \""+openstacktest.CloudName+"\" in "+bad)
	t.Setenv("OS_CLOUD", "no-such-cloud")
	check("unknown cloud", `openstack cloud "no-such-cloud": `+bad)
	t.Setenv("OS_CLOUD", "")
	check("nothing configured", "set OS_CLOUD to an entry of clouds.yaml")
	if ims := glance2(t, s, "badpw"); len(ims) != 0 {
		t.Errorf("Glance holds %+v", ims)
	}
}

// glance2 is glance with the Server's good credentials, whatever the
// test's environment now says.
func glance2(t *testing.T, s *openstacktest.Server, target string) []register.Image {
	s.Setenv(t)
	return glance(t, target)
}

func TestKernelAndRamdiskAreReferencedByTheDisk(t *testing.T) {
	_, out, o := env(t)
	dir := t.TempDir()
	files := map[string]string{"disk.qcow2": filepath.Join(dir, "disk.qcow2"), "vmlinuz": filepath.Join(dir, "vmlinuz"), "initrd.img": filepath.Join(dir, "initrd")}
	registertest.Qcow2(t, files["disk.qcow2"], 1<<20, 7)
	registertest.Random(t, files["vmlinuz"], 300<<10, 8)
	registertest.Random(t, files["initrd.img"], 500<<10, 9)
	f := registertest.Disk("netboot")
	f.Steps = append([]register.Step{
		{ID: "kernel", Artifact: "vmlinuz", Name: "netboot-kernel", Format: "aki", ContainerFormat: "aki"},
		{ID: "ramdisk", Artifact: "initrd.img", Name: "netboot-ramdisk", Format: "ari", ContainerFormat: "ari"},
	}, f.Steps...)
	f.Steps[2].Refs = map[string]string{"kernel_id": "kernel", "ramdisk_id": "ramdisk"}
	registertest.Write(t, out, f, files)
	run(t, o, "netboot")
	byStep := map[string]register.Image{}
	for _, im := range glance(t, "netboot") {
		if im.State != register.StateReady {
			t.Errorf("image %s is %s", im.ID, im.Status)
		}
		byStep[im.Step] = im
	}
	disk := byStep["disk"]
	if disk.ID == "" || disk.Properties["kernel_id"] != byStep["kernel"].ID || disk.Properties["ramdisk_id"] != byStep["ramdisk"].ID {
		t.Fatalf("the disk's kernel_id %q and ramdisk_id %q are not the kernel %q and ramdisk %q",
			disk.Properties["kernel_id"], disk.Properties["ramdisk_id"], byStep["kernel"].ID, byStep["ramdisk"].ID)
	}
	// Unchanged: all three are reused, references included.
	if res := run(t, o, "netboot"); ops(res[0].Plan) != "skip,skip,skip" {
		t.Errorf("second register planned %s", ops(res[0].Plan))
	}
}

func TestParallelTargetsEachRegisteredOnce(t *testing.T) {
	_, out, o := env(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	var names []string
	for i := range 4 {
		registertest.Qcow2(t, src, 2<<20, uint64(100+i))
		name := fmt.Sprintf("par%d", i)
		registertest.Write(t, out, registertest.Disk(name), map[string]string{"disk.qcow2": src})
		names = append(names, name)
	}
	o.Jobs = 4
	run(t, o, names...)
	for _, n := range names {
		if ims := glance(t, n); len(ims) != 1 || ims[0].State != register.StateReady {
			t.Errorf("target %s: Glance holds %+v; want one active image", n, ims)
		}
	}
}
