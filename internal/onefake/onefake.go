// Package onefake is a protocol-level fake of OpenNebula's XML-RPC API
// (oned), for testing fgimg's OpenNebula client without an OpenNebula
// installation, which Debian does not package. It is an http.Handler
// written from OpenNebula's XML-RPC reference
// (docs.opennebula.io, integration_and_development/system_interfaces/api)
// and the XML schemas of its objects (share/doc/xsd/image.xsd,
// datastore.xsd), and checks what oned checks for the methods it serves:
//
//   - one.image.allocate, one.image.info, one.image.enable,
//     one.image.chmod, one.image.delete, one.imagepool.info and
//     one.datastorepool.info. Any other method is an XML-RPC fault -506,
//     as xmlrpc-c answers an unknown method.
//   - Responses are oned's arrays: [true, result, 0] on success,
//     [false, message, code, object ID, <i8> replication index] on
//     failure, with the error codes oned uses for each failure
//     (AUTHENTICATION 0x100, AUTHORIZATION 0x200, NO_EXISTS 0x400,
//     XML_RPC_API 0x1000, INTERNAL 0x2000, ALLOCATE 0x4000; ACTION 0x800
//     is the full datastore, which is not emulated) and messages formed
//     as oned forms them ("[one.image.info] Error getting image [7].").
//   - The session string (the first parameter) is "user:password" and is
//     checked against the fake's users before anything else but its own
//     type; a wrong one is an AUTHENTICATION failure.
//   - Parameter types and counts are checked as xmlrpc-c's paramList does
//     for oned: a missing parameter or one of the wrong type is an
//     XML-RPC fault -501 ("Not enough parameters", "Parameter that is
//     supposed to be integer is not"), not an OpenNebula error array;
//     extra parameters are ignored. A filter flag below -4 is an
//     XML_RPC_API failure.
//   - one.image.allocate parses the template with oned's grammar, or as
//     XML when it starts with "<" (a syntax error is an INTERNAL
//     failure), requires the datastore to exist (NO_EXISTS) and to be an
//     image or files datastore (ALLOCATE), stats PATH synchronously (a PATH that is
//     missing, not absolute or unreadable fails with "Cannot parse image
//     SIZE"), validates NAME (not empty, at most 128 characters, none of
//     &|:\";/'#{}$<> or control whitespace), matches TYPE to the
//     datastore (OS, DATABLOCK, CDROM in an image datastore; KERNEL,
//     RAMDISK, CONTEXT in a files datastore), and rejects a NAME the same
//     user already has in the pool ("NAME is already taken by IMAGE 3."),
//     whatever its datastore, as ImagePool::allocate does.
//   - An allocated image is LOCKED while the datastore copies PATH into
//     its directory (a goroutine, as oned's cp driver runs apart from the
//     call), then READY with SOURCE, SIZE (MiB, rounded up) and FORMAT as
//     the driver detects it (qcow2 by its magic, else raw; FORMAT in the
//     template is dropped, as oned drops it when PATH is set). A failed
//     copy leaves the image in ERROR with TEMPLATE/ERROR holding the
//     message.
//   - one.image.enable follows ImageManager::enable_image's state table
//     (disable from READY or ERROR; enable from DISABLED or ERROR), chmod
//     takes -1, 0 or 1 per bit, delete refuses images in use, clone or
//     LOCKED_USED states and answers NO_EXISTS for an unknown ID.
//   - Permissions are the owner/group/other bits of each object, with
//     oned's default umask (new images 600); the user oneadmin (group 0)
//     may do anything.
//
// It does not emulate: ACLs beyond those permission bits (every user may
// use every datastore), quotas and datastore capacity, real datastore
// drivers (no RESTRICTED_DIRS or SAFE_DIRS, no URLs or SOURCE-based
// images, no qemu-img: only qcow2 and raw are told apart), clusters,
// zones and federation, VMs and so no USED states or image attach,
// one.image.lock, clone, persistent, chtype, update, rename and
// snapshots, groups other than oneadmin and users, token or other auth
// drivers, and persistence across restarts. Messages of failures oned
// leaves to its drivers (stat, cp) are the fake's own wording.
//
// For tests of faults, SetCopyHook makes copies fail or hang, and
// FailHTTP makes requests fail with an HTTP status.
package onefake

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/fgimg/fgimg/internal/xmlrpc"
)

// OpenNebula's error codes (include/Request.h).
const (
	Success        = 0x0000
	Authentication = 0x0100
	Authorization  = 0x0200
	NoExists       = 0x0400
	Action         = 0x0800
	RPCAPI         = 0x1000
	Internal       = 0x2000
	Allocate       = 0x4000
)

// Image states (include/Image.h).
const (
	StateInit = iota
	StateReady
	StateUsed
	StateDisabled
	StateLocked
	StateError
	StateClone
	StateDelete
	StateUsedPers
	StateLockedUsed
	StateLockedUsedPers
)

var stateNames = []string{"INIT", "READY", "USED", "DISABLED", "LOCKED", "ERROR", "CLONE", "DELETE", "USED_PERS", "LOCKED_USED", "LOCKED_USED_PERS"}

// Image types (include/Image.h) and datastore types (include/Datastore.h).
var imageTypes = []string{"OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT"}

const (
	dsImage  = 0
	dsSystem = 1
	dsFile   = 2
)

// Server is a fake oned. Create it with New; it is an http.Handler for
// the XML-RPC endpoint (http://host:2633/RPC2).
type Server struct {
	dir string

	mu         sync.Mutex
	users      []*user
	datastores []*datastore
	images     map[int]*image
	nextImage  int
	httpFail   []int // HTTP statuses to answer the next requests with
	copyHook   func(id int) error
	copies     sync.WaitGroup
}

type user struct {
	id       int
	name     string
	password string
	gid      int
}

type perms [9]int // OWNER_U, OWNER_M, OWNER_A, GROUP_U, ..., OTHER_A

type datastore struct {
	id    int
	name  string
	typ   int
	perms perms
	dir   string
}

type image struct {
	id, uid, gid int
	uname, gname string
	name         string
	perms        perms
	typ          int
	persistent   bool
	regtime      int64
	source, path string
	format       string
	sizeMB       int64
	state        int
	prevState    int
	ds           *datastore
	template     []attr
}

var groupNames = map[int]string{0: "oneadmin", 1: "users"}

// New returns a fake oned keeping its datastores under dir, with the
// user oneadmin (password "oneadmin", group oneadmin) and oned's
// initial datastores: system (0), default (1, images) and files (2).
func New(dir string) *Server {
	s := &Server{dir: dir, images: map[int]*image{}}
	s.users = []*user{{id: 0, name: "oneadmin", password: "oneadmin", gid: 0}}
	for id, d := range []struct {
		name string
		typ  int
	}{{"system", dsSystem}, {"default", dsImage}, {"files", dsFile}} {
		s.datastores = append(s.datastores, &datastore{
			id: id, name: d.name, typ: d.typ,
			perms: perms{1, 1, 0, 1, 0, 0, 0, 0, 0},
			dir:   fmt.Sprintf("%s/datastores/%d", dir, id),
		})
	}
	return s
}

// AddUser adds a user in the group users (1) and returns its ID.
func (s *Server) AddUser(name, password string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &user{id: len(s.users), name: name, password: password, gid: 1}
	s.users = append(s.users, u)
	return u.id
}

// SetCopyHook sets a function that the datastore's copy of each image
// allocated from now on runs before it copies: an error fails the copy
// (the image goes to ERROR with that message), and blocking keeps the
// image LOCKED, as a slow or stuck datastore does.
func (s *Server) SetCopyHook(hook func(id int) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.copyHook = hook
}

// FailHTTP makes the next n requests fail with the HTTP status, as a
// proxy in front of an overloaded oned does.
func (s *Server) FailHTTP(status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.httpFail = append(s.httpFail, status)
	}
}

// Wait waits for the datastore copies under way.
func (s *Server) Wait() { s.copies.Wait() }

// ImageState returns the state of image id, and false if there is none.
func (s *Server) ImageState(id int) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, ok := s.images[id]
	if !ok {
		return 0, false
	}
	return im.state, true
}

// ImageName returns the name of image id, and false if there is none.
func (s *Server) ImageName(id int) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, ok := s.images[id]
	if !ok {
		return "", false
	}
	return im.name, true
}

// StateName is OpenNebula's name of an image state.
func StateName(state int) string {
	if state >= 0 && state < len(stateNames) {
		return stateNames[state]
	}
	return fmt.Sprint(state)
}

// ServeHTTP serves XML-RPC calls as xmlrpc-c's server does: POST with a
// text/xml body, answered 200 with a response or a fault.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if len(s.httpFail) > 0 {
		status := s.httpFail[0]
		s.httpFail = s.httpFail[1:]
		s.mu.Unlock()
		http.Error(w, http.StatusText(status), status)
		return
	}
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "XML-RPC calls are POSTs", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); len(ct) < 8 || ct[:8] != "text/xml" {
		http.Error(w, "Content-Type must be text/xml", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var out []byte
	method, params, err := xmlrpc.DecodeCall(bytes.NewReader(body))
	if err != nil {
		out = xmlrpc.EncodeFault(&xmlrpc.Fault{Code: xmlrpc.FaultParse, Message: "XML-RPC parse error: " + err.Error()})
	} else if v, err := s.call(method, params); err != nil {
		var f *xmlrpc.Fault
		if !errors.As(err, &f) {
			f = &xmlrpc.Fault{Code: -500, Message: err.Error()}
		}
		out = xmlrpc.EncodeFault(f)
	} else if out, err = xmlrpc.EncodeResponse(v); err != nil {
		out = xmlrpc.EncodeFault(&xmlrpc.Fault{Code: -500, Message: err.Error()})
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(out)
}

// request is one call being served: its parameters and its user.
type request struct {
	method string
	params []any
	user   *user
}

func (q *request) param(i int) (any, error) {
	if i >= len(q.params) {
		return nil, &xmlrpc.Fault{Code: xmlrpc.FaultType, Message: "Not enough parameters"}
	}
	return q.params[i], nil
}

func (q *request) getInt(i int) (int, error) {
	v, err := q.param(i)
	if err != nil {
		return 0, err
	}
	n, ok := v.(int)
	if !ok {
		return 0, &xmlrpc.Fault{Code: xmlrpc.FaultType, Message: "Parameter that is supposed to be integer is not"}
	}
	return n, nil
}

func (q *request) getString(i int) (string, error) {
	v, err := q.param(i)
	if err != nil {
		return "", err
	}
	str, ok := v.(string)
	if !ok {
		return "", &xmlrpc.Fault{Code: xmlrpc.FaultType, Message: "Parameter that is supposed to be string is not"}
	}
	return str, nil
}

func (q *request) getBool(i int) (bool, error) {
	v, err := q.param(i)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, &xmlrpc.Fault{Code: xmlrpc.FaultType, Message: "Parameter that is supposed to be boolean is not"}
	}
	return b, nil
}

// optBool is an optional boolean parameter (oned reads it only when
// present).
func (q *request) optBool(i int) (bool, error) {
	if i >= len(q.params) {
		return false, nil
	}
	return q.getBool(i)
}

// success and failure are oned's response arrays.
func success(v any) []any { return []any{true, v, Success} }

func (q *request) failure(code, id int, msg string) []any {
	return []any{false, "[" + q.method + "] " + msg, code, id, xmlrpc.I8(0)}
}

func (q *request) noExists(kind string, id int) []any {
	return q.failure(NoExists, id, fmt.Sprintf("Error getting %s [%d].", kind, id))
}

func (q *request) notAuthorized(op, kind string, id int) []any {
	return q.failure(Authorization, -1, fmt.Sprintf("User [%d] : not authorized to perform %s %s [%d].", q.user.id, op, kind, id))
}

var methods = map[string]func(*Server, *request) ([]any, error){
	"one.image.allocate":     (*Server).imageAllocate,
	"one.image.info":         (*Server).imageInfo,
	"one.image.enable":       (*Server).imageEnable,
	"one.image.chmod":        (*Server).imageChmod,
	"one.image.delete":       (*Server).imageDelete,
	"one.imagepool.info":     (*Server).imagePoolInfo,
	"one.datastorepool.info": (*Server).datastorePoolInfo,
}

func (s *Server) call(method string, params []any) (any, error) {
	fn, ok := methods[method]
	if !ok {
		return nil, &xmlrpc.Fault{Code: xmlrpc.FaultNoSuchMethod, Message: fmt.Sprintf("Requested method '%s' not found", method)}
	}
	q := &request{method: method, params: params}
	session, err := q.getString(0)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q.user = s.authenticate(session)
	if q.user == nil {
		return q.failure(Authentication, -1, "User couldn't be authenticated, aborting call."), nil
	}
	return fn(s, q)
}

func (s *Server) authenticate(session string) *user {
	for i := 0; i < len(session); i++ {
		if session[i] == ':' {
			name, password := session[:i], session[i+1:]
			for _, u := range s.users {
				if u.name == name && u.password == password {
					return u
				}
			}
			return nil
		}
	}
	return nil
}

// can reports whether u may do op ("USE", "MANAGE" or "ADMIN") on an
// object with owner uid, group gid and permissions p.
func (u *user) can(op string, uid, gid int, p perms) bool {
	if u.gid == 0 {
		return true
	}
	bit := map[string]int{"USE": 0, "MANAGE": 1, "ADMIN": 2}[op]
	return u.id == uid && p[bit] == 1 || u.gid == gid && p[3+bit] == 1 || p[6+bit] == 1
}

func (s *Server) datastore(id int) *datastore {
	for _, d := range s.datastores {
		if d.id == id {
			return d
		}
	}
	return nil
}

func (s *Server) userByID(id int) *user {
	for _, u := range s.users {
		if u.id == id {
			return u
		}
	}
	return nil
}
