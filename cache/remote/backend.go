package remote

import (
	"context"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry"
)

// Backend is one repository of a shared repository: the storage seam.
// oras-go's remote.Repository is the OCI registry's; the S3 back end
// implements the same two interfaces. A Backend stores bytes by digest
// and tags by name and knows nothing of fgimg's layout.
type Backend interface {
	oras.Target
	registry.TagLister
}

// Root opens the repositories under one shared repository reference.
type Root interface {
	// Repository opens the repository name (a path below the base, such
	// as "public" or "users/alice"). Opening makes no request.
	Repository(name string) (Backend, error)
	// Repositories lists the names below the base that hold anything,
	// sorted; a registry without a catalog API may return an error.
	Repositories(ctx context.Context) ([]string, error)
	// String is the base reference, without credentials.
	String() string
}
