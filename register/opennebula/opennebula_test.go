package opennebula

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/onefake"
	"github.com/fgimg/fgimg/internal/xmlrpc"
	"github.com/fgimg/fgimg/register"
)

type env struct {
	fake *onefake.Server
	http *httptest.Server
	dir  string
}

// newEnv starts a fake oned with the user alice and points ONE_XMLRPC
// and ONE_AUTH at it.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{fake: onefake.New(t.TempDir()), dir: t.TempDir()}
	e.fake.AddUser("alice", "s3cret-pw")
	e.fake.AddUser("bob", "bobpw")
	e.http = httptest.NewServer(e.fake)
	t.Cleanup(func() { e.http.Close(); e.fake.Wait() })
	t.Setenv("ONE_XMLRPC", e.http.URL+"/RPC2")
	t.Setenv("ONE_AUTH", e.write(t, "one_auth", "alice:s3cret-pw\n"))
	return e
}

func (e *env) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func open(t *testing.T, target string) *Cloud {
	t.Helper()
	c, err := Open(&register.File{Version: 1, Target: target, Kind: "opennebula", Image: "hpc-base"})
	if err != nil {
		t.Fatal(err)
	}
	oc := c.(*Cloud)
	oc.Backoff, oc.Poll = time.Millisecond, time.Millisecond
	return oc
}

// artifact writes a disk artifact and its step.
func (e *env) artifact(t *testing.T, name, content string) (register.Step, string) {
	t.Helper()
	path := e.write(t, name, content)
	return register.Step{
		ID: "disk", Artifact: name, Digest: digest.FromString(content), Size: int64(len(content)),
		Name: "hpc", Format: "raw", Visibility: "600",
	}, path
}

// asBob calls one.image.info as the user bob, straight through XML-RPC.
func (e *env) bobCanUse(t *testing.T, id string) bool {
	t.Helper()
	body, _ := xmlrpc.EncodeCall("one.image.info", "bob:bobpw", atoi(t, id))
	resp, err := http.Post(e.http.URL, "text/xml", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	v, err := xmlrpc.DecodeResponse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return v.([]any)[0] == true
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("image ID %q is not a number", s)
		}
		n = n*10 + int(r-'0')
	}
	return n
}

func TestUploadFindRetireDelete(t *testing.T) {
	e := newEnv(t)
	c := open(t, "cloud1")
	ctx := context.Background()
	step, path := e.artifact(t, "disk.raw", "version 1")
	props := map[string]string{
		"fgimg_image": "hpc-base",
		"os_distro":   "debian",
		// Hostile values survive OpenNebula's template syntax.
		"QUOTE":     `say "hi"`,
		"BACKSLASH": `C:\dir\x`,
		"BSQUOTE":   `a\"b`,
		"LINES":     "one\ntwo = three # not a comment\n",
		"SYNTAX":    `[ A = b, c ] = # , `,
		"UNICODE":   "héllo ✓",
	}
	im, err := c.Upload(ctx, step, props, path)
	if err != nil {
		t.Fatal(err)
	}
	if im.State != register.StateReady || im.Status != "READY" || im.Name != "hpc" || im.Digest != step.Digest || im.Step != "disk" {
		t.Fatalf("uploaded %+v", im)
	}
	for k, v := range props {
		if got := im.Properties[strings.ToLower(k)]; got != v {
			t.Errorf("attribute %s = %q, want %q", k, got, v)
		}
	}
	if im.Properties["fgimg_target"] != "cloud1" || im.Properties["dev_prefix"] != "vd" {
		t.Errorf("attributes %v", im.Properties)
	}

	// Idempotence: Find reports the image with its digest, so register
	// skips it; another target's Find does not see it.
	found, err := c.Find(ctx, "cloud1")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].ID != im.ID || found[0].Digest != step.Digest || found[0].State != register.StateReady {
		t.Fatalf("Find: %+v", found)
	}
	if other, err := open(t, "cloud2").Find(ctx, "cloud2"); err != nil || len(other) != 0 {
		t.Fatalf("Find of another target: %+v, %v", other, err)
	}
	// An upload whose answer was lost and is made again takes the image
	// it made rather than making a second one.
	again, err := c.Upload(ctx, step, props, path)
	if err != nil || again.ID != im.ID {
		t.Fatalf("second upload of the same artifact: %+v, %v; want image %s", again, err, im.ID)
	}

	// A changed artifact is a new image; the name is taken by the old
	// one, so the new one carries its digest.
	step2, path2 := e.artifact(t, "disk2.raw", "version 2")
	im2, err := c.Upload(ctx, step2, props, path2)
	if err != nil {
		t.Fatal(err)
	}
	if im2.ID == im.ID || im2.Name != "hpc" {
		t.Fatalf("changed artifact registered as %+v", im2)
	}
	if st, ok := e.fake.ImageName(atoi(t, im2.ID)); !ok || st != "hpc-"+step2.Digest.Encoded()[:12] {
		t.Fatalf("in OpenNebula the new image is named %q, want hpc-<digest>", st)
	}
	// Registering it again (its name is still taken) takes it again.
	if again, err := c.Upload(ctx, step2, props, path2); err != nil || again.ID != im2.ID {
		t.Fatalf("second upload of the changed artifact: %+v, %v; want image %s", again, err, im2.ID)
	}

	if err := c.Retire(ctx, im); err != nil {
		t.Fatal(err)
	}
	found, _ = c.Find(ctx, "cloud1")
	states := map[string]string{}
	for _, f := range found {
		states[f.ID] = f.State + "/" + f.Status
	}
	if states[im.ID] != "retired/DISABLED" || states[im2.ID] != "ready/READY" {
		t.Fatalf("after Retire: %v", states)
	}
	if err := c.Delete(ctx, im); err != nil {
		t.Fatal(err)
	}
	e.fake.Wait()
	found, _ = c.Find(ctx, "cloud1")
	if len(found) != 1 || found[0].ID != im2.ID {
		t.Fatalf("after Delete: %+v", found)
	}
	err = c.Delete(ctx, im)
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != codeNoExists || !strings.Contains(err.Error(), "NO_EXISTS") {
		t.Fatalf("deleting it again: %v", err)
	}
}

func TestNameTakenByForeignImage(t *testing.T) {
	e := newEnv(t)
	step, path := e.artifact(t, "disk.raw", "v1")
	if _, err := open(t, "other").Upload(context.Background(), step, nil, path); err != nil {
		t.Fatal(err)
	}
	_, err := open(t, "cloud1").Upload(context.Background(), step, nil, path)
	if err == nil || !strings.Contains(err.Error(), `the name "hpc" is taken by image 0, which fgimg did not register for target "cloud1"`) {
		t.Fatalf("got %v", err)
	}
}

func TestVisibility(t *testing.T) {
	e := newEnv(t)
	c := open(t, "cloud1")
	for _, c2 := range []struct {
		vis  string
		bob  bool
		name string
	}{{"600", false, "private"}, {"604", true, "public"}, {"", false, "default"}} {
		step, path := e.artifact(t, c2.name+".raw", c2.name)
		step.Name, step.Visibility = c2.name, c2.vis
		im, err := c.Upload(context.Background(), step, nil, path)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.bobCanUse(t, im.ID); got != c2.bob {
			t.Errorf("visibility %q: another user can use the image: %v, want %v", c2.vis, got, c2.bob)
		}
	}
	step, path := e.artifact(t, "bad.raw", "bad")
	step.Visibility = "public"
	if _, err := c.Upload(context.Background(), step, nil, path); err == nil || !strings.Contains(err.Error(), "octal") {
		t.Fatalf("visibility public: %v", err)
	}
}

func TestCredentials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	t.Setenv("ONE_AUTH", e.write(t, "wrong", "alice:not-the-pw\n"))
	_, err := open(t, "t").Find(ctx, "t")
	if err == nil || !strings.Contains(err.Error(), "ONE_AUTH="+filepath.Join(e.dir, "wrong")) ||
		!strings.Contains(err.Error(), "AUTHENTICATION") || strings.Contains(err.Error(), "not-the-pw") {
		t.Fatalf("wrong password: %v", err)
	}

	for _, c := range []struct{ content, want string }{
		{"no-colon-token-XYZ\n", `not "user:password"`},
		{"alice:\n", `not "user:password"`},
	} {
		t.Setenv("ONE_AUTH", e.write(t, "bad", c.content))
		_, err := Open(&register.File{Target: "t"})
		if err == nil || !strings.Contains(err.Error(), "ONE_AUTH=") || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "XYZ") {
			t.Errorf("ONE_AUTH holding %q: %v", c.content, err)
		}
	}
	t.Setenv("ONE_AUTH", filepath.Join(e.dir, "missing"))
	if _, err := Open(&register.File{Target: "t"}); err == nil || !strings.Contains(err.Error(), "ONE_AUTH=") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing ONE_AUTH file: %v", err)
	}

	// Without ONE_AUTH, ~/.one/one_auth.
	t.Setenv("ONE_AUTH", "")
	home := t.TempDir()
	t.Setenv("HOME", home)
	if _, err := Open(&register.File{Target: "t"}); err == nil || !strings.Contains(err.Error(), "set ONE_AUTH") || !strings.Contains(err.Error(), filepath.Join(home, ".one", "one_auth")) {
		t.Errorf("no credentials: %v", err)
	}
	os.MkdirAll(filepath.Join(home, ".one"), 0o700)
	os.WriteFile(filepath.Join(home, ".one", "one_auth"), []byte("alice:s3cret-pw"), 0o600)
	if _, err := open(t, "t").Find(ctx, "t"); err != nil {
		t.Errorf("with ~/.one/one_auth: %v", err)
	}

	t.Setenv("ONE_XMLRPC", "ftp://u:topsecret@host/RPC2")
	if _, err := Open(&register.File{Target: "t"}); err == nil || !strings.Contains(err.Error(), "ONE_XMLRPC") || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("bad ONE_XMLRPC: %v", err)
	}
}

func TestStuckAndFailedCopies(t *testing.T) {
	e := newEnv(t)
	c := open(t, "cloud1")
	ctx := context.Background()
	release := make(chan struct{})
	e.fake.SetCopyHook(func(int) error { <-release; return nil })
	defer close(release)
	c.Wait = 100 * time.Millisecond

	step, path := e.artifact(t, "stuck.raw", "stuck")
	im, err := c.Upload(ctx, step, nil, path)
	if err == nil || !strings.Contains(err.Error(), "still LOCKED") || im.ID == "" || im.State != register.StateIncomplete {
		t.Fatalf("stuck copy: %+v, %v", im, err)
	}
	found, _ := c.Find(ctx, "cloud1")
	if len(found) != 1 || found[0].State != register.StateIncomplete || found[0].Status != "LOCKED" {
		t.Fatalf("Find of a stuck image: %+v", found)
	}
	if err := c.Retire(ctx, found[0]); err == nil || !strings.Contains(err.Error(), "Image cannot be in state LOCKED") {
		t.Fatalf("retiring a LOCKED image: %v", err)
	}

	e.fake.SetCopyHook(func(int) error { return errors.New("No space left on device") })
	step, path = e.artifact(t, "failed.raw", "failed")
	step.Name = "failed"
	im, err = c.Upload(ctx, step, nil, path)
	if err == nil || !strings.Contains(err.Error(), "ERROR") || !strings.Contains(err.Error(), "No space left on device") || im.State != register.StateFailed {
		t.Fatalf("failed copy: %+v, %v", im, err)
	}
}

func TestRetries(t *testing.T) {
	e := newEnv(t)
	c := open(t, "cloud1")
	e.fake.FailHTTP(503, 2)
	if _, err := c.Find(context.Background(), "cloud1"); err != nil {
		t.Fatalf("after two 503s: %v", err)
	}
	e.fake.FailHTTP(502, 10)
	_, err := c.Find(context.Background(), "cloud1")
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "after 5 attempts") {
		t.Fatalf("after ten 502s: %v", err)
	}
}

// A call that times out is made again.
func TestTimeoutRetried(t *testing.T) {
	e := newEnv(t)
	var n atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			time.Sleep(300 * time.Millisecond)
		}
		e.fake.ServeHTTP(w, r)
	}))
	defer slow.Close()
	t.Setenv("ONE_XMLRPC", slow.URL)
	c := open(t, "cloud1")
	c.client.Timeout = 100 * time.Millisecond
	if _, err := c.Find(context.Background(), "cloud1"); err != nil || n.Load() != 2 {
		t.Fatalf("after a timeout: %v (%d calls)", err, n.Load())
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	c := open(t, "cloud1")
	ctx := context.Background()
	step, path := e.artifact(t, "disk.raw", "x")
	for _, tc := range []struct {
		props map[string]string
		opts  map[string]string
		want  string
	}{
		{map[string]string{"X": `ends in \`}, nil, "ending in a backslash"},
		{map[string]string{"X": "a ]]> b"}, nil, `"]]>"`},
		{map[string]string{"bad-name": "x"}, nil, "not a valid OpenNebula attribute name"},
		{map[string]string{"path": "/etc/shadow"}, nil, "which fgimg sets"},
		{nil, map[string]string{"datastore": "nosuch"}, `no datastore is named "nosuch"; there are: system (0), default (1), files (2)`},
		{nil, map[string]string{"datastore": "0"}, "only be allocated in a files or image datastore"},
		{nil, map[string]string{"persistent": "maybe"}, "persistent"},
	} {
		s := step
		s.Options = tc.opts
		if _, err := c.Upload(ctx, s, tc.props, path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.props, tc.opts, err, tc.want)
		}
	}
	if found, _ := c.Find(ctx, "cloud1"); len(found) != 0 {
		t.Fatalf("bad input left images: %+v", found)
	}
	// A kernel goes to the files datastore as TYPE KERNEL.
	step.ID, step.Name = "kernel", "vmlinuz"
	im, err := c.Upload(ctx, step, nil, path)
	if err != nil || im.Step != "kernel" {
		t.Fatalf("kernel: %+v, %v", im, err)
	}
}

// An image's template as oned writes it: a vector attribute (which
// `oneimage update` can add) is not a property.
func TestImageXML(t *testing.T) {
	doc := `<IMAGE><ID>7</ID><NAME>hpc</NAME><STATE>9</STATE><SIZE>3</SIZE><TEMPLATE>` +
		`<FGIMG_DIGEST><![CDATA[sha256:ab]]></FGIMG_DIGEST><FGIMG_STEP><![CDATA[disk]]></FGIMG_STEP>` +
		`<VEC><A><![CDATA[1]]></A></VEC><EMPTY><![CDATA[]]></EMPTY></TEMPLATE></IMAGE>`
	var im imageXML
	if err := unmarshal(doc, &im); err != nil {
		t.Fatal(err)
	}
	got := im.image()
	want := register.Image{ID: "7", Name: "hpc", State: register.StateReady, Status: "LOCKED_USED",
		Digest: "sha256:ab", Step: "disk", Size: 3 << 20,
		Properties: map[string]string{"fgimg_digest": "sha256:ab", "fgimg_step": "disk", "empty": ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// FuzzAttributeRoundTrip checks that every value writeAttr accepts
// reaches oned (the fake, with oned's template grammar) unchanged.
func FuzzAttributeRoundTrip(f *testing.F) {
	for _, s := range []string{`a"b`, `\`, `a\"b`, `\\"`, `"\"`, "x\ny", "]]>", `C:\dir\`, "# = , [ ]", `""`, "\t\"\\\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		var b strings.Builder
		if err := writeAttr(&b, "X", v); err != nil {
			return
		}
		fake := onefake.New(t.TempDir())
		h := httptest.NewServer(fake)
		defer h.Close()
		defer fake.Wait()
		c, err := New(h.URL, "oneadmin:oneadmin", "test", &register.File{Target: "t"})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "disk")
		os.WriteFile(path, []byte("x"), 0o600)
		tmpl := "NAME = n\nPATH = \"" + path + "\"\n" + b.String()
		id, err := c.call(context.Background(), "one.image.allocate", tmpl, 1)
		if err != nil {
			t.Fatalf("%q written as %q: %v", v, b.String(), err)
		}
		im, err := c.info(context.Background(), id.(int))
		if err != nil {
			t.Fatal(err)
		}
		if got := im.attr("X"); got != v {
			t.Fatalf("%q written as %q came back as %q", v, b.String(), got)
		}
	})
}
