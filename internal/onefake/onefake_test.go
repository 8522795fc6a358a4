package onefake

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/xmlrpc"
)

// These tests speak to the fake with XML-RPC documents written by hand
// after OpenNebula's reference, so that the fake is checked apart from
// fgimg's client.

func newServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := New(t.TempDir())
	s.AddUser("alice", "secret")
	s.AddUser("bob", "hunter2")
	h := httptest.NewServer(s)
	t.Cleanup(func() { h.Close(); s.Wait() })
	return s, h
}

// post sends body and returns the decoded response, or the fault.
func post(t *testing.T, h *httptest.Server, body string) ([]any, error) {
	t.Helper()
	resp, err := http.Post(h.URL+"/RPC2", "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %s", resp.Status)
	}
	v, err := xmlrpc.DecodeResponse(resp.Body)
	if err != nil {
		return nil, err
	}
	a, ok := v.([]any)
	if !ok {
		t.Fatalf("response is a %T, want an array", v)
	}
	return a, nil
}

func call(method string, params ...string) string {
	return `<?xml version="1.0"?><methodCall><methodName>` + method + `</methodName><params>` +
		strings.Join(params, "") + `</params></methodCall>`
}

func str(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return "<param><value><string>" + b.String() + "</string></value></param>"
}
func i4(n int) string { return fmt.Sprintf("<param><value><i4>%d</i4></value></param>", n) }
func boolean(b bool) string {
	if b {
		return "<param><value><boolean>1</boolean></value></param>"
	}
	return "<param><value><boolean>0</boolean></value></param>"
}

func mustOK(t *testing.T, r []any, err error) any {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 3 || r[0] != true || r[2] != 0 {
		t.Fatalf("call failed: %#v", r)
	}
	return r[1]
}

func mustFail(t *testing.T, r []any, err error, code int, msg string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 5 || r[0] != false || r[2] != code || !strings.Contains(r[1].(string), msg) {
		t.Fatalf("got %#v, want failure 0x%x containing %q", r, code, msg)
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// imageXML is the part of the IMAGE document (image.xsd) the tests read.
type imageXML struct {
	ID          int    `xml:"ID"`
	UID         int    `xml:"UID"`
	Name        string `xml:"NAME"`
	Permissions struct {
		OwnerU int `xml:"OWNER_U"`
		OwnerM int `xml:"OWNER_M"`
		GroupU int `xml:"GROUP_U"`
		OtherU int `xml:"OTHER_U"`
	} `xml:"PERMISSIONS"`
	Type       int    `xml:"TYPE"`
	Persistent int    `xml:"PERSISTENT"`
	Source     string `xml:"SOURCE"`
	Path       string `xml:"PATH"`
	Format     string `xml:"FORMAT"`
	Size       int    `xml:"SIZE"`
	State      int    `xml:"STATE"`
	Datastore  string `xml:"DATASTORE"`
	Template   struct {
		Attrs []struct {
			XMLName xml.Name
			Value   string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"TEMPLATE"`
}

func (im imageXML) attr(name string) string {
	for _, a := range im.Template.Attrs {
		if a.XMLName.Local == name {
			return a.Value
		}
	}
	return ""
}

func info(t *testing.T, h *httptest.Server, session string, id int) imageXML {
	t.Helper()
	r, err := post(t, h, call("one.image.info", str(session), i4(id)))
	var im imageXML
	if err := xml.Unmarshal([]byte(mustOK(t, r, err).(string)), &im); err != nil {
		t.Fatal(err)
	}
	return im
}

func waitState(t *testing.T, h *httptest.Server, session string, id, state int) imageXML {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		im := info(t, h, session, id)
		if im.State == state {
			return im
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %d is %s, want %s", id, StateName(im.State), StateName(state))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAllocateCopiesLockedThenReady(t *testing.T) {
	s, h := newServer(t)
	release := make(chan struct{})
	s.SetCopyHook(func(int) error { <-release; return nil })
	data := append([]byte("QFI\xfb"), make([]byte, 3<<20)...)
	path := writeFile(t, "disk.qcow2", data)
	tmpl := "NAME = \"hpc\"\nPATH = \"" + path + "\"\nTYPE = OS\nFORMAT = raw\nDEV_PREFIX = vd\nPERSISTENT = NO\n" +
		"FGIMG_DIGEST = \"sha256:ab\"\n# a comment\nQUOTED = \"say \\\"hi\\\" C:\\dir\"\n"
	r, err := post(t, h, call("one.image.allocate", str("alice:secret"), str(tmpl), i4(1), boolean(false)))
	id := mustOK(t, r, err).(int)

	im := info(t, h, "alice:secret", id)
	if im.State != StateLocked || im.Source != "" {
		t.Fatalf("during the copy the image is %s with SOURCE %q, want LOCKED without SOURCE", StateName(im.State), im.Source)
	}
	close(release)
	im = waitState(t, h, "alice:secret", id, StateReady)
	if im.Name != "hpc" || im.UID != 1 || im.Type != 0 || im.Persistent != 0 || im.Path != path || im.Datastore != "default" {
		t.Errorf("image %+v", im)
	}
	// FORMAT comes from the file (qcow2 magic), not the template.
	if im.Format != "qcow2" || im.Size != 4 {
		t.Errorf("FORMAT %q SIZE %d MB, want qcow2 and 4", im.Format, im.Size)
	}
	if got, err := os.ReadFile(im.Source); err != nil || !reflect.DeepEqual(got, data) {
		t.Errorf("SOURCE %s does not hold the file: %v", im.Source, err)
	}
	if !strings.HasPrefix(im.Source, s.dir) {
		t.Errorf("SOURCE %s is outside the datastore", im.Source)
	}
	if im.attr("FGIMG_DIGEST") != "sha256:ab" || im.attr("QUOTED") != `say "hi" C:\dir` || im.attr("DEV_PREFIX") != "vd" {
		t.Errorf("template attributes %+v", im.Template.Attrs)
	}
	for _, gone := range []string{"NAME", "PATH", "FORMAT", "TYPE", "PERSISTENT"} {
		if im.attr(gone) != "" {
			t.Errorf("TEMPLATE keeps %s", gone)
		}
	}
	if p := im.Permissions; p.OwnerU != 1 || p.OwnerM != 1 || p.GroupU != 0 || p.OtherU != 0 {
		t.Errorf("permissions %+v, want 600", p)
	}
}

func TestAuthentication(t *testing.T) {
	_, h := newServer(t)
	for _, session := range []string{"alice:wrong", "alice", "nobody:x", ""} {
		r, err := post(t, h, call("one.imagepool.info", str(session), i4(-3), i4(-1), i4(-1)))
		mustFail(t, r, err, Authentication, "[one.imagepool.info] User couldn't be authenticated, aborting call.")
	}
}

func TestParameterFaults(t *testing.T) {
	_, h := newServer(t)
	for _, c := range []struct {
		body string
		code int
	}{
		{call("one.image.allocate", str("alice:secret"), i4(5), i4(1)), xmlrpc.FaultType},
		{call("one.image.allocate", str("alice:secret"), str("NAME=x")), xmlrpc.FaultType},
		{call("one.image.allocate", i4(0), str("NAME=x"), i4(1)), xmlrpc.FaultType},
		{call("one.image.info", str("alice:secret"), str("7")), xmlrpc.FaultType},
		{call("one.image.delete", str("alice:secret"), i4(7), str("yes")), xmlrpc.FaultType},
		{call("one.image.chmod", str("alice:secret"), i4(0), i4(1), i4(1)), xmlrpc.FaultType},
		{call("one.image.frobnicate", str("alice:secret")), xmlrpc.FaultNoSuchMethod},
		{`<methodCall><methodName>one.image.info</methodName><params><param>`, xmlrpc.FaultParse},
	} {
		_, err := post(t, h, c.body)
		var f *xmlrpc.Fault
		if !errors.As(err, &f) || f.Code != c.code {
			t.Errorf("%s: got %v, want fault %d", c.body, err, c.code)
		}
	}
	r, err := post(t, h, call("one.imagepool.info", str("alice:secret"), i4(-5), i4(-1), i4(-1)))
	mustFail(t, r, err, RPCAPI, "Incorrect filter_flag")
}

func TestAllocateChecks(t *testing.T) {
	s, h := newServer(t)
	path := writeFile(t, "disk.raw", []byte("raw bytes"))
	alloc := func(session, tmpl string, ds int) ([]any, error) {
		return post(t, h, call("one.image.allocate", str(session), str(tmpl), i4(ds)))
	}
	r, err := alloc("alice:secret", "NAME = \"a\"\nPATH = \""+path+"\"\n", 1)
	first := mustOK(t, r, err).(int)
	s.Wait()

	for _, c := range []struct {
		tmpl string
		ds   int
		code int
		msg  string
	}{
		{"NAME = \"broken\nPATH = x = y", 1, Internal, "Parse error: syntax error"},
		{"NAME = [ A = b", 1, Internal, "Parse error"},
		{"NAME = a ]]> b", 1, Internal, "Parse error"},
		{"NAME = b\nPATH = " + path, 9, NoExists, "[one.image.allocate] Error getting datastore [9]."},
		{"NAME = b\nPATH = " + path, 0, Allocate, "only be allocated in a files or image datastore"},
		{"NAME = b\nPATH = /no/such/file", 1, Internal, "Cannot parse image SIZE"},
		{"NAME = b\nPATH = disk.raw", 1, Internal, "Cannot parse image SIZE"},
		{"NAME = b\nPATH = " + filepath.Dir(path), 1, Internal, "Cannot parse image SIZE"},
		{"NAME = b", 1, Internal, "Missing PATH"},
		{"NAME = \"a:b\"\nPATH = " + path, 1, Allocate, "Invalid NAME, char ':' is not allowed"},
		{"PATH = " + path, 1, Allocate, "Invalid NAME, it cannot be empty"},
		{"NAME = b\nTYPE = KERNEL\nPATH = " + path, 1, Allocate, "cannot be registered in an IMAGE_DS datastore"},
		{"NAME = b\nTYPE = OS\nPATH = " + path, 2, Allocate, "Only IMAGES of type KERNEL, RAMDISK and CONTEXT"},
		// The same user's name is taken, whatever the datastore.
		{"NAME = a\nPATH = " + path, 1, Allocate, fmt.Sprintf("NAME is already taken by IMAGE %d.", first)},
		{"NAME = a\nTYPE = KERNEL\nPATH = " + path, 2, Allocate, fmt.Sprintf("NAME is already taken by IMAGE %d.", first)},
	} {
		r, err := alloc("alice:secret", c.tmpl, c.ds)
		mustFail(t, r, err, c.code, c.msg)
	}
	// Another user may have the same name.
	r, err = alloc("bob:hunter2", "NAME = a\nPATH = "+path, 1)
	mustOK(t, r, err)
}

// The reference's example of the XML form of a template.
func TestAllocateXMLTemplate(t *testing.T) {
	_, h := newServer(t)
	path := writeFile(t, "disk.raw", []byte("x"))
	tmpl := "<TEMPLATE>\n  <NAME>abc</NAME>\n  <PATH>" + path + "</PATH>\n  <ATT1>value1</ATT1>\n  <VEC><K>v</K></VEC>\n</TEMPLATE>"
	r, err := post(t, h, call("one.image.allocate", str("alice:secret"), str(tmpl), i4(1)))
	id := mustOK(t, r, err).(int)
	im := info(t, h, "alice:secret", id)
	if im.Name != "abc" || im.Path != path || im.attr("ATT1") != "value1" {
		t.Fatalf("image %+v", im)
	}
	r, err = post(t, h, call("one.image.allocate", str("alice:secret"), str("<IMAGE><NAME>x</NAME></IMAGE>"), i4(1)))
	mustFail(t, r, err, Internal, "not <TEMPLATE>")
	r, err = post(t, h, call("one.image.allocate", str("alice:secret"), str("<TEMPLATE><NAME>x</TEMPLATE>"), i4(1)))
	mustFail(t, r, err, Internal, "syntax error in XML template")
}

func TestCopyFailureLeavesError(t *testing.T) {
	s, h := newServer(t)
	s.SetCopyHook(func(int) error { return errors.New("disk full") })
	path := writeFile(t, "disk.raw", []byte("x"))
	r, err := post(t, h, call("one.image.allocate", str("alice:secret"), str("NAME=a\nPATH="+path), i4(1)))
	id := mustOK(t, r, err).(int)
	im := waitState(t, h, "alice:secret", id, StateError)
	if !strings.Contains(im.attr("ERROR"), "Error copying image in the datastore: disk full") {
		t.Errorf("TEMPLATE/ERROR is %q", im.attr("ERROR"))
	}
}

func TestEnableDeleteChmod(t *testing.T) {
	s, h := newServer(t)
	release := make(chan struct{})
	s.SetCopyHook(func(int) error { <-release; return nil })
	path := writeFile(t, "disk.raw", []byte("x"))
	r, err := post(t, h, call("one.image.allocate", str("alice:secret"), str("NAME=a\nPATH="+path), i4(1)))
	id := mustOK(t, r, err).(int)

	r, err = post(t, h, call("one.image.enable", str("alice:secret"), i4(id), boolean(false)))
	mustFail(t, r, err, Internal, "[one.image.enable] Could not disable image: Image cannot be in state LOCKED.")
	close(release)
	waitState(t, h, "alice:secret", id, StateReady)
	r, err = post(t, h, call("one.image.enable", str("alice:secret"), i4(id), boolean(false)))
	mustOK(t, r, err)
	if st, _ := s.ImageState(id); st != StateDisabled {
		t.Fatalf("after disable the image is %s", StateName(st))
	}

	// Bob sees nothing of alice's 600 image, then can use it once it is 604.
	pool := func(session string, filter int) string {
		r, err := post(t, h, call("one.imagepool.info", str(session), i4(filter), i4(-1), i4(-1)))
		return mustOK(t, r, err).(string)
	}
	if p := pool("bob:hunter2", -2); strings.Contains(p, "<IMAGE>") {
		t.Fatalf("bob sees %s", p)
	}
	r, err = post(t, h, call("one.image.info", str("bob:hunter2"), i4(id)))
	mustFail(t, r, err, Authorization, "not authorized")
	r, err = post(t, h, call("one.image.chmod", str("bob:hunter2"), i4(id), i4(-1), i4(-1), i4(-1), i4(-1), i4(-1), i4(-1), i4(1), i4(-1), i4(-1)))
	mustFail(t, r, err, Authorization, "not authorized")
	r, err = post(t, h, call("one.image.chmod", str("alice:secret"), i4(id), i4(1), i4(1), i4(0), i4(0), i4(0), i4(0), i4(2), i4(0), i4(0)))
	mustFail(t, r, err, Internal, "New permission values must be -1, 0 or 1")
	r, err = post(t, h, call("one.image.chmod", str("alice:secret"), i4(id), i4(1), i4(1), i4(0), i4(0), i4(0), i4(0), i4(1), i4(0), i4(0)))
	mustOK(t, r, err)
	if p := pool("bob:hunter2", -2); !strings.Contains(p, "<NAME>a</NAME>") {
		t.Fatalf("after chmod 604 bob sees %s", p)
	}
	if p := pool("bob:hunter2", -3); strings.Contains(p, "<IMAGE>") {
		t.Fatalf("bob's own images include alice's: %s", p)
	}

	r, err = post(t, h, call("one.image.delete", str("alice:secret"), i4(42)))
	mustFail(t, r, err, NoExists, "[one.image.delete] Error getting image [42].")
	r, err = post(t, h, call("one.image.delete", str("alice:secret"), i4(id)))
	mustOK(t, r, err)
	s.Wait()
	if _, ok := s.ImageState(id); ok {
		t.Fatal("the deleted image is still in the pool")
	}
	r, err = post(t, h, call("one.image.info", str("alice:secret"), i4(id)))
	mustFail(t, r, err, NoExists, fmt.Sprintf("Error getting image [%d]", id))
}

func TestDatastorePool(t *testing.T) {
	_, h := newServer(t)
	r, err := post(t, h, call("one.datastorepool.info", str("alice:secret")))
	var pool struct {
		DS []struct {
			ID   int    `xml:"ID"`
			Name string `xml:"NAME"`
			Type int    `xml:"TYPE"`
		} `xml:"DATASTORE"`
	}
	if err := xml.Unmarshal([]byte(mustOK(t, r, err).(string)), &pool); err != nil {
		t.Fatal(err)
	}
	if len(pool.DS) != 3 || pool.DS[1].Name != "default" || pool.DS[1].Type != 0 || pool.DS[2].Name != "files" || pool.DS[2].Type != 2 {
		t.Fatalf("datastores %+v", pool.DS)
	}
}

func TestHTTP(t *testing.T) {
	s, h := newServer(t)
	resp, err := http.Get(h.URL + "/RPC2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %s", resp.Status)
	}
	s.FailHTTP(503, 1)
	resp, err = http.Post(h.URL+"/RPC2", "text/xml", strings.NewReader(call("one.datastorepool.info", str("alice:secret"))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("after FailHTTP: %s", resp.Status)
	}
}

func TestParseTemplate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []attr
	}{
		{"name = value", []attr{{name: "NAME", value: "value"}}},
		{"A=\"x y\"\nB = z\n", []attr{{name: "A", value: "x y"}, {name: "B", value: "z"}}},
		{`A = "say \"hi\""`, []attr{{name: "A", value: `say "hi"`}}},
		// A backslash is not an escape of itself.
		{`A = "C:\dir\\x"`, []attr{{name: "A", value: `C:\dir\\x`}}},
		// Backslash then an escaped quote.
		{`A = "a\\"b"`, []attr{{name: "A", value: `a\"b`}}},
		{"A = \"two\nlines\"", []attr{{name: "A", value: "two\nlines"}}},
		{"A =\nB = c", []attr{{name: "A"}, {name: "B", value: "c"}}},
		{"# comment\n  # another\nA = b # a comment too\n", []attr{{name: "A", value: "b"}}},
		{"D = [ k = v,\n  L = \"w x\" ]", []attr{{name: "D", vector: []attr{{name: "K", value: "v"}, {name: "L", value: "w x"}}}}},
		{"E = []", []attr{{name: "E", vector: []attr{}}}},
	} {
		got, err := parseTemplate(c.in)
		if c.want == nil {
			if err == nil {
				t.Errorf("%q: accepted as %+v", c.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"A", "A = ", "= b", "A = b c", "A = [ b ]", "A = [ b = c", "A = \"x ]]> y\"", "A-B = c", "A = [ B =\n ]"} {
		if got, err := parseTemplate(bad); err == nil {
			t.Errorf("%q: accepted as %+v", bad, got)
		}
	}
}
