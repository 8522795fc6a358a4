package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/fgimg/fgimg/cache/remote/s3remote"
	"oras.land/oras-go/v2/registry"
)

// Ref is a parsed shared repository reference.
type Ref struct {
	// Scheme is "oci" for a registry (HOST[:PORT]/PATH) or "s3"
	// (s3://BUCKET/PREFIX).
	Scheme string
	// Host is the registry's HOST[:PORT], or the bucket.
	Host string
	// Path is the repository path below Host, or the key prefix; no
	// leading or trailing slash.
	Path string
}

func (r Ref) String() string {
	s := r.Host
	if r.Path != "" {
		s += "/" + r.Path
	}
	if r.Scheme == "s3" {
		return "s3://" + s
	}
	return s
}

// ParseRef parses REF as the user writes it: HOST[:PORT]/PATH, as docker
// and skopeo write a repository (an optional docker:// or oci:// in
// front is accepted), or s3://BUCKET/PREFIX. This is the one place where
// a back end is chosen by the reference's form.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, errors.New("empty shared repository reference")
	}
	if rest, ok := strings.CutPrefix(s, "s3://"); ok {
		bucket, prefix, _ := strings.Cut(rest, "/")
		if bucket == "" {
			return Ref{}, fmt.Errorf("shared repository %q: no bucket (s3://BUCKET/PREFIX)", s)
		}
		return Ref{Scheme: "s3", Host: bucket, Path: strings.Trim(prefix, "/")}, nil
	}
	rest := s
	for _, p := range []string{"docker://", "oci://"} {
		rest = strings.TrimPrefix(rest, p)
	}
	if strings.Contains(rest, "://") {
		return Ref{}, fmt.Errorf("shared repository %q: unknown scheme (want HOST[:PORT]/PATH or s3://BUCKET/PREFIX)", s)
	}
	host, path, _ := strings.Cut(strings.TrimSuffix(rest, "/"), "/")
	if strings.ContainsAny(path, "@:") {
		return Ref{}, fmt.Errorf("shared repository %q: a repository, not a tag or digest (HOST[:PORT]/PATH)", s)
	}
	r := registry.Reference{Registry: host, Repository: path}
	if path == "" {
		r.Repository = "fgimg" // only to validate the host
	}
	if err := r.ValidateRegistry(); err != nil || host == "" {
		return Ref{}, fmt.Errorf("shared repository %q: invalid registry host %q (HOST[:PORT]/PATH)", s, host)
	}
	if err := r.ValidateRepository(); err != nil {
		return Ref{}, fmt.Errorf("shared repository %q: invalid repository path %q: lower case letters, digits and . _ - / only", s, path)
	}
	return Ref{Scheme: "oci", Host: host, Path: path}, nil
}

// Options say how to reach a shared repository.
type Options struct {
	// PlainHTTP allows plain HTTP to a registry that is not on a
	// loopback address (loopback hosts always use it).
	PlainHTTP bool
	// Credentials looks up credentials; nil: DefaultCredentials.
	Credentials CredentialStore
	// UserAgent names fgimg in requests.
	UserAgent string
}

// OpenRoot opens the shared repository ref with a back end chosen by its
// form.
func OpenRoot(ref Ref, opts Options) (Root, error) {
	switch ref.Scheme {
	case "oci":
		return openRegistry(ref, opts)
	case "s3":
		root, err := s3remote.Open(context.Background(), ref.Host, ref.Path)
		if err != nil {
			return nil, fmt.Errorf("shared repository %s: %w", ref, err)
		}
		return s3Root{root}, nil
	}
	return nil, fmt.Errorf("shared repository %s: unknown scheme %q", ref, ref.Scheme)
}

// s3Root is the S3 back end's root as a Root.
type s3Root struct{ *s3remote.Root }

var _ Backend = (*s3remote.Repository)(nil)

func (r s3Root) Repository(name string) (Backend, error) { return r.Root.Repository(name) }

// isLoopback reports whether a HOST[:PORT] names this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
