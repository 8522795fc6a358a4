package remote

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// CredentialStore finds the credentials of a registry: oras-go's
// credentials.Store (a docker or podman config.json with its credential
// helpers) is one.
type CredentialStore interface {
	Get(ctx context.Context, serverAddress string) (auth.Credential, error)
}

// DefaultCredentials reads credentials as docker and podman do: from
// $FGIMG_REMOTE_USERNAME and $FGIMG_REMOTE_PASSWORD (or
// $FGIMG_REMOTE_TOKEN, a bearer token) when set, else podman's auth file
// ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json), else
// docker's config.json ($DOCKER_CONFIG or ~/.docker), each with the
// credential helpers it names.
func DefaultCredentials() (CredentialStore, error) {
	if u, p, t := os.Getenv("FGIMG_REMOTE_USERNAME"), os.Getenv("FGIMG_REMOTE_PASSWORD"), os.Getenv("FGIMG_REMOTE_TOKEN"); u != "" || p != "" || t != "" {
		return staticCredential{auth.Credential{Username: u, Password: p, AccessToken: t}}, nil
	}
	opts := credentials.StoreOptions{}
	docker, err := credentials.NewStoreFromDocker(opts)
	if err != nil {
		return nil, fmt.Errorf("reading docker credentials: %w", err)
	}
	var podman []credentials.Store
	for _, f := range []string{os.Getenv("REGISTRY_AUTH_FILE"), runtimeAuthFile()} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			continue
		}
		s, err := credentials.NewStore(f, opts)
		if err != nil {
			return nil, fmt.Errorf("reading credentials %s: %w", f, err)
		}
		podman = append(podman, s)
	}
	if len(podman) == 0 {
		return docker, nil
	}
	return credentials.NewStoreWithFallbacks(podman[0], append(podman[1:], docker)...), nil
}

func runtimeAuthFile() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "containers", "auth.json")
	}
	return ""
}

type staticCredential struct{ c auth.Credential }

func (s staticCredential) Get(context.Context, string) (auth.Credential, error) { return s.c, nil }

// registryRoot is an OCI registry's repositories below a base path.
type registryRoot struct {
	ref    Ref
	plain  bool
	client *auth.Client
}

func openRegistry(ref Ref, opts Options) (*registryRoot, error) {
	creds := opts.Credentials
	if creds == nil {
		var err error
		if creds, err = DefaultCredentials(); err != nil {
			return nil, err
		}
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "fgimg"
	}
	client := &auth.Client{
		// Large blobs stream for long; no overall timeout, but a stalled
		// connection fails (ResponseHeaderTimeout) rather than hanging.
		Client: &http.Client{Transport: retry.NewTransport(&http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 2 * time.Minute,
			MaxIdleConnsPerHost:   32,
			ForceAttemptHTTP2:     true,
		})},
		Header: http.Header{"User-Agent": {ua}},
		Cache:  auth.NewCache(),
		Credential: func(ctx context.Context, host string) (auth.Credential, error) {
			return creds.Get(ctx, credentials.ServerAddressFromHostname(host))
		},
	}
	return &registryRoot{ref: ref, plain: opts.PlainHTTP || isLoopback(ref.Host), client: client}, nil
}

func (r *registryRoot) String() string { return r.ref.String() }

func (r *registryRoot) Repository(name string) (Backend, error) {
	repo, err := remote.NewRepository(r.ref.Host + "/" + path.Join(r.ref.Path, name))
	if err != nil {
		return nil, fmt.Errorf("shared repository %s: %w", r.ref, err)
	}
	repo.Client = r.client
	repo.PlainHTTP = r.plain
	// The tag-schema fallback replaces the referrers index on every new
	// referrer; deleting the old one needs delete rights that a runner
	// may lack, and the registry's GC removes it once untagged.
	repo.SkipReferrersGC = true
	return repo, nil
}

func (r *registryRoot) Repositories(ctx context.Context) ([]string, error) {
	reg, err := remote.NewRegistry(r.ref.Host)
	if err != nil {
		return nil, err
	}
	reg.Client = r.client
	reg.PlainHTTP = r.plain
	base := r.ref.Path
	var names []string
	err = reg.Repositories(ctx, "", func(repos []string) error {
		for _, n := range repos {
			if base == "" {
				names = append(names, n)
			} else if rest, ok := strings.CutPrefix(n, base+"/"); ok {
				names = append(names, rest)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing repositories of %s: %w", r.ref, explain(r.ref.Host, err))
	}
	slices.Sort(names)
	return names, nil
}
