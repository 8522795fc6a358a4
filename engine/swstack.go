package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/targets"
)

// The software stack of a root filesystem is read once per root and
// kept in the cache as a record of its own: kind StackKind, keyed by
// StackKey(the root's last stage digest), input that stage, one output
// (the stack as JSON). The catalog reads it with CachedStack.
const (
	StackKind      = "swstack"
	StackMediaType = "application/vnd.fgimg.swstack.v1+json"
	stackOutput    = "stack.json"
)

// StackKey is the cache record under which the software stack of the
// root whose last stage is top is kept.
func StackKey(top digest.Digest) digest.Digest {
	return digest.FromString("fgimg software stack v1\n" + top.String())
}

// CachedStack returns the software stack recorded for the root whose
// last stage is top, or ok false when none is.
func CachedStack(store Store, top digest.Digest) (st *swstack.Stack, ok bool, err error) {
	st = &swstack.Stack{}
	if ok, err = cache.JSONRecord(store, StackKey(top), stackOutput, st); !ok || err != nil {
		return nil, false, err
	}
	return st, true, nil
}

// Stack returns the software stack of the image whose last stage is top
// (built): the recorded one, or read from a scratch mount of the image
// and recorded.
func (e *Engine) Stack(ctx context.Context, top *planner.Stage) (*swstack.Stack, error) {
	return e.stackOf(ctx, top.Digest, func() (string, func() error, error) {
		work, err := e.Store.TempDir("stack-")
		if err != nil {
			return "", nil, err
		}
		root, release, err := e.Runner.Mount(ctx, top, work)
		if err != nil {
			os.RemoveAll(work)
			return "", nil, err
		}
		return root, func() error {
			err := release()
			if rerr := os.RemoveAll(work); err == nil {
				err = rerr
			}
			return err
		}, nil
	})
}

// stackOf returns the recorded stack of the root whose last stage is
// top, or reads it from the root mount gives and records it. The lock
// on its key makes concurrent writers of one image's targets read it
// once.
func (e *Engine) stackOf(ctx context.Context, top digest.Digest, mount func() (string, func() error, error)) (*swstack.Stack, error) {
	if st, ok, err := CachedStack(e.Store, top); ok || err != nil {
		return st, err
	}
	key := StackKey(top)
	unlock, err := e.Store.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if st, ok, err := CachedStack(e.Store, top); ok || err != nil {
		return st, err
	}
	root, release, err := mount()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	st, err := swstack.Read(root)
	if rerr := release(); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("reading the software stack: %w", err)
	}
	return st, cache.PutJSONRecord(e.Store, cache.Record{Digest: key, Kind: StackKind, Inputs: []digest.Digest{top}, Duration: time.Since(start)},
		stackOutput, StackMediaType, st)
}

// writeSBOM writes the SBOM of the root in.Root, whose last stage is
// top, into the writer's output folder out, and returns it as one more
// artifact.
func (e *Engine) writeSBOM(ctx context.Context, in *targets.Input, top digest.Digest, out string) (targets.Artifact, error) {
	st, err := e.stackOf(ctx, top, func() (string, func() error, error) {
		return in.Root, func() error { return nil }, nil
	})
	if err != nil {
		return targets.Artifact{}, err
	}
	info := swstack.SBOMInfo{Image: in.Image.ID, Root: top, Created: time.Unix(0, 0)}
	if e.Epoch != nil {
		info.Created = *e.Epoch
	}
	f, err := os.OpenFile(filepath.Join(out, swstack.SBOMName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return targets.Artifact{}, fmt.Errorf("writing the SBOM: %w", err)
	}
	err = swstack.WriteSPDX(f, st, info)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return targets.Artifact{}, fmt.Errorf("writing the SBOM: %w", err)
	}
	return targets.Artifact{Path: swstack.SBOMName, MediaType: swstack.SPDXMediaType}, nil
}
