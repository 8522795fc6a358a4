// Package opennebula registers fgimg's images in OpenNebula through its
// XML-RPC API (oned), as the one* commands do: the endpoint from
// ONE_XMLRPC (default http://localhost:2633/RPC2) and the credentials
// "user:password" from the file ONE_AUTH names, else ~/.one/one_auth.
//
// OpenNebula copies an image into its datastore from a PATH that the
// front-end (the host oned runs on) reads, as `oneimage create --path`
// does: fgimg must therefore run on the front-end, or the artifacts'
// directory must be at the same path there (a shared file system).
//
// The client speaks XML-RPC with the standard library
// (internal/xmlrpc) rather than github.com/kolo/xmlrpc, which goca
// uses: kolo's client runs on net/rpc, so a call cannot be cancelled
// with a context and an HTTP status reaches the caller only as text,
// and its last release is an untagged 2022 commit.
package opennebula

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fgimg/fgimg/internal/xmlrpc"
	"github.com/fgimg/fgimg/register"
)

// DefaultEndpoint is oned's XML-RPC endpoint when ONE_XMLRPC is unset.
const DefaultEndpoint = "http://localhost:2633/RPC2"

// OpenNebula's error codes (the XML-RPC reference's response table).
const (
	codeAuthentication = 0x0100
	codeAuthorization  = 0x0200
	codeNoExists       = 0x0400
	codeAction         = 0x0800
	codeXMLRPCAPI      = 0x1000
	codeInternal       = 0x2000
	codeAllocate       = 0x4000
	codeLocked         = 0x8000
)

var codeNames = map[int]string{
	codeAuthentication: "AUTHENTICATION",
	codeAuthorization:  "AUTHORIZATION",
	codeNoExists:       "NO_EXISTS",
	codeAction:         "ACTION",
	codeXMLRPCAPI:      "XML_RPC_API",
	codeInternal:       "INTERNAL",
	codeAllocate:       "ALLOCATE",
	codeLocked:         "LOCKED",
}

// Error is a call that oned ran and answered with failure.
type Error struct {
	Method  string
	Code    int
	Message string // oned's, starting with "[method]"
}

func (e *Error) Error() string {
	name := codeNames[e.Code]
	if name == "" {
		name = fmt.Sprintf("0x%x", e.Code)
	}
	hint := ""
	switch e.Code {
	case codeAuthorization:
		hint = "; the user lacks the permission (OpenNebula ACLs and the object's permissions)"
	case codeXMLRPCAPI:
		hint = "; the server refused fgimg's parameters (an OpenNebula older than 5.0?)"
	}
	return fmt.Sprintf("%s (%s)%s", e.Message, name, hint)
}

// Cloud is one OpenNebula front-end, as register.Cloud.
type Cloud struct {
	endpoint *url.URL
	user     string
	session  string // "user:password": never printed
	// authFrom says where the credentials came from, for messages.
	authFrom string

	target, image string

	client *http.Client
	// Attempts is how many times a call is tried when the server answers
	// 5xx or the connection fails; Backoff is the first wait between
	// tries, doubled each time.
	Attempts int
	Backoff  time.Duration
	// Poll is the first wait between looks at an image being copied
	// into its datastore (doubled up to 5 s), and Wait how long Upload
	// waits for the copy before giving up on it.
	Poll time.Duration
	Wait time.Duration
}

var _ register.Cloud = (*Cloud)(nil)

// Open opens the OpenNebula named by the environment for the
// registration f, as the one* commands find it.
func Open(f *register.File) (register.Cloud, error) {
	endpoint := os.Getenv("ONE_XMLRPC")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	authFile, authFrom := os.Getenv("ONE_AUTH"), ""
	if authFile != "" {
		authFrom = "ONE_AUTH=" + authFile
	} else {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("opennebula: no credentials: set ONE_AUTH to a file holding \"user:password\" (%v)", err)
		}
		authFile = filepath.Join(home, ".one", "one_auth")
		authFrom = authFile
		if _, err := os.Stat(authFile); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opennebula: no credentials: set ONE_AUTH to a file holding \"user:password\", or create %s", authFile)
		}
	}
	session, err := readAuth(authFile)
	if err != nil {
		return nil, fmt.Errorf("opennebula: credentials from %s: %w", authFrom, err)
	}
	return New(endpoint, session, authFrom, f)
}

// readAuth reads the first line of a one_auth file. Its errors never
// hold the file's content.
func readAuth(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errors.New("the file does not exist")
		}
		if errors.Is(err, os.ErrPermission) {
			return "", errors.New("the file is not readable")
		}
		return "", errors.New("the file cannot be read")
	}
	line, _, _ := strings.Cut(string(data), "\n")
	session := strings.TrimSpace(line)
	user, password, ok := strings.Cut(session, ":")
	if !ok || user == "" || password == "" {
		return "", errors.New(`its first line is not "user:password"`)
	}
	return session, nil
}

// New returns the Cloud at endpoint with the session "user:password";
// authFrom names where the session came from, for messages.
func New(endpoint, session, authFrom string, f *register.File) (*Cloud, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("opennebula: ONE_XMLRPC=%q is not an http:// or https:// URL such as %s", redact(endpoint), DefaultEndpoint)
	}
	user, _, _ := strings.Cut(session, ":")
	return &Cloud{
		endpoint: u, user: user, session: session, authFrom: authFrom,
		target: f.Target, image: f.Image,
		client:   &http.Client{Timeout: 5 * time.Minute},
		Attempts: 5, Backoff: 500 * time.Millisecond,
		Poll: 250 * time.Millisecond, Wait: 2 * time.Hour,
	}, nil
}

// redact hides a password in a URL that does not parse as one.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

func (c *Cloud) String() string {
	return fmt.Sprintf("opennebula %s (user %s)", c.endpoint.Redacted(), c.user)
}

// call runs method with the session and args, retrying 5xx answers and
// failed connections with backoff, and returns the result (the second
// element of oned's response array).
func (c *Cloud) call(ctx context.Context, method string, args ...any) (any, error) {
	body, err := xmlrpc.EncodeCall(method, append([]any{c.session}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	wait := c.Backoff
	for attempt := 1; ; attempt++ {
		v, retry, err := c.post(ctx, method, body)
		if err == nil || !retry || attempt >= c.Attempts || ctx.Err() != nil {
			if err != nil && retry && ctx.Err() == nil {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return v, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// post makes one attempt at a call; retry says whether another might
// succeed.
func (c *Cloud) post(ctx context.Context, method string, body []byte) (v any, retry bool, err error) {
	where := c.endpoint.Redacted()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its text repeats the URL, which may hold a password
		}
		var nerr net.Error
		retry = errors.As(err, &nerr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
		return nil, retry, fmt.Errorf("opennebula %s: %s: %w", where, method, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, resp.StatusCode >= 500, fmt.Errorf("opennebula %s: %s: HTTP %s: %s", where, method, resp.Status, strings.TrimSpace(string(msg)))
	}
	v, err = xmlrpc.DecodeResponse(resp.Body)
	if err != nil {
		var f *xmlrpc.Fault
		if errors.As(err, &f) {
			return nil, false, fmt.Errorf("opennebula %s: %s: %w", where, method, err)
		}
		return nil, true, fmt.Errorf("opennebula %s: %s: reading the response: %w", where, method, err)
	}
	a, ok := v.([]any)
	if !ok || len(a) < 3 {
		return nil, false, fmt.Errorf("opennebula %s: %s: the response is %T, not oned's [success, result, code] array", where, method, v)
	}
	if good, _ := a[0].(bool); good {
		return a[1], false, nil
	}
	code, _ := a[2].(int)
	msg, _ := a[1].(string)
	e := &Error{Method: method, Code: code, Message: msg}
	if code == codeAuthentication {
		return nil, false, fmt.Errorf("opennebula %s rejected the credentials of user %q from %s: fix that file (\"user:password\"): %w", where, c.user, c.authFrom, e)
	}
	return nil, false, e
}
