package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/containers/image/v5/directory"
	"github.com/containers/image/v5/docker"
	dockerarchive "github.com/containers/image/v5/docker/archive"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/manifest"
	ociarchive "github.com/containers/image/v5/oci/archive"
	ocilayout "github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fgimg/fgimg/internal/arch"
	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/lang"
)

// fromTransports are the containers/image transports a from stage
// accepts. Only these are linked in: alltransports would bring
// containers/storage with it.
var fromTransports = map[string]types.ImageTransport{
	"docker":         docker.Transport,
	"oci":            ocilayout.Transport,
	"oci-archive":    ociarchive.Transport,
	"docker-archive": dockerarchive.Transport,
	"dir":            directory.Transport,
}

// variantsFor lists, best first, the variants an image for arch may
// have to run on variant: the more capable variants cannot, and a
// missing variant is accepted last.
func variantsFor(arch, variant string) []string {
	var order []string
	switch arch {
	case "arm":
		order = []string{"v8", "v7", "v6", "v5"}
	case "arm64":
		order = []string{"v8"}
	}
	if i := slices.Index(order, variant); i >= 0 {
		return append(order[i:], "")
	}
	if variant != "" {
		return []string{variant, ""}
	}
	return []string{""}
}

// wantedPlatform is the OCI platform for an image's arch (a Debian
// name); a name already in OCI form, "arm/v6", passes through.
func wantedPlatform(name string) ocispec.Platform {
	if a, ok := arch.ByDebian(name); ok {
		return ocispec.Platform{OS: "linux", Architecture: a.OCI, Variant: a.Variant}
	}
	architecture, variant, _ := strings.Cut(name, "/")
	return ocispec.Platform{OS: "linux", Architecture: architecture, Variant: variant}
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// parseImageRef turns a from reference (transport:rest) into a
// containers/image reference.
func parseImageRef(ref string) (types.ImageReference, error) {
	name, rest, ok := strings.Cut(ref, ":")
	t := fromTransports[name]
	if !ok || t == nil {
		return nil, fmt.Errorf("image reference %q: unknown transport %q (want one of %s)", ref, name, strings.Join(lang.Transports, ", "))
	}
	r, err := t.ParseReference(rest)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return r, nil
}

// systemContext is the default system context (registries.conf and auth
// files if present), choosing linux/arch. A registry on the loopback
// interface may speak plain HTTP or use an untrusted certificate.
func systemContext(ref types.ImageReference, arch string) *types.SystemContext {
	p := wantedPlatform(arch)
	sys := &types.SystemContext{OSChoice: p.OS, ArchitectureChoice: p.Architecture, VariantChoice: p.Variant}
	if ref.Transport() == docker.Transport && ref.DockerReference() != nil {
		host := reference.Domain(ref.DockerReference())
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		if host == "localhost" || net.ParseIP(host).IsLoopback() {
			sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		}
	}
	return sys
}

// runFrom fills env.Root with the image's root filesystem: every layer applied in order.
func runFrom(ctx context.Context, spec *From, env *Env) (Result, error) {
	ref, err := parseImageRef(spec.Ref)
	if err != nil {
		return Result{}, err
	}
	// An untagged oci: reference reads "oci:/path:".
	name := strings.TrimSuffix(ref.Transport().Name()+":"+ref.StringWithinTransport(), ":")
	arch := spec.Arch
	if arch == "" {
		arch = env.Arch
	}
	sys := systemContext(ref, arch)
	logf(env, "pulling %s for %s\n", name, platformString(wantedPlatform(arch)))

	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return Result{}, fmt.Errorf("opening image %s: %w", spec.Ref, err)
	}
	defer src.Close()

	img, err := resolveImage(ctx, src, ref, arch)
	if err != nil {
		return Result{}, fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	if err := checkConfig(ctx, src, img, arch); err != nil {
		return Result{}, fmt.Errorf("image %s: %w", spec.Ref, err)
	}

	layers := img.manifest.LayerInfos()
	for i, l := range layers {
		logf(env, "layer %d/%d %s (%d bytes)\n", i+1, len(layers), l.Digest, l.Size)
		if err := applyBlob(ctx, src, l.BlobInfo, env.Root); err != nil {
			return Result{}, fmt.Errorf("image %s: layer %d of %d (%s): %w", spec.Ref, i+1, len(layers), l.Digest, err)
		}
	}

	info := map[string]string{"ref": name, "manifest_digest": img.digest.String()}
	if img.indexDigest != "" {
		info["index_digest"] = img.indexDigest.String()
	}
	if named := ref.DockerReference(); ref.Transport() == docker.Transport && named != nil {
		// Pin the tag to what it named at this moment.
		pinned, err := reference.WithDigest(reference.TrimNamed(named), img.topDigest)
		if err == nil {
			info["ref"] = "docker://" + pinned.String()
		}
	}
	logf(env, "pulled %s %s\n", name, img.digest)
	return Result{Info: info}, nil
}

func logf(env *Env, format string, args ...any) {
	if env.Log != nil {
		fmt.Fprintf(env.Log, format, args...)
	}
}

// resolvedImage is the single-platform image a reference leads to.
type resolvedImage struct {
	manifest    manifest.Manifest
	digest      digest.Digest // of the image manifest
	topDigest   digest.Digest // of what the reference names: the manifest or the index
	indexDigest digest.Digest // of the index the manifest was chosen from, if any
}

// resolveImage fetches the reference's manifest, descending through
// manifest lists to the linux/arch image, and checks every manifest
// against the digest it was fetched by.
func resolveImage(ctx context.Context, src types.ImageSource, ref types.ImageReference, arch string) (*resolvedImage, error) {
	raw, mimeType, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	if want := namedDigest(ref); want != "" {
		if err := matchManifest(raw, want); err != nil {
			return nil, err
		}
	}
	top, err := manifest.Digest(raw)
	if err != nil {
		return nil, fmt.Errorf("hashing manifest: %w", err)
	}
	img := &resolvedImage{topDigest: top, digest: top}
	for depth := 0; manifest.MIMETypeIsMultiImage(manifest.NormalizedMIMEType(mimeType)); depth++ {
		if depth == 4 {
			return nil, errors.New("manifest lists nested too deeply")
		}
		list, err := manifest.ListFromBlob(raw, manifest.NormalizedMIMEType(mimeType))
		if err != nil {
			return nil, fmt.Errorf("parsing manifest list %s: %w", img.digest, err)
		}
		chosen, err := choosePlatform(list, arch)
		if err != nil {
			return nil, err
		}
		img.indexDigest = img.digest
		if raw, mimeType, err = src.GetManifest(ctx, &chosen); err != nil {
			return nil, fmt.Errorf("reading manifest %s: %w", chosen, err)
		}
		if err := matchManifest(raw, chosen); err != nil {
			return nil, err
		}
		img.digest = chosen
	}
	if mimeType == "" {
		mimeType = manifest.GuessMIMEType(raw)
	}
	if img.manifest, err = manifest.FromBlob(raw, manifest.NormalizedMIMEType(mimeType)); err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", img.digest, err)
	}
	return img, nil
}

// namedDigest is the manifest digest the reference itself pins, if any:
// name@digest for a registry, the index entry for an OCI layout.
func namedDigest(ref types.ImageReference) digest.Digest {
	switch ref.Transport() {
	case docker.Transport:
		if c, ok := ref.DockerReference().(reference.Canonical); ok {
			return c.Digest()
		}
	case ocilayout.Transport:
		if desc, err := ocilayout.LoadManifestDescriptor(ref); err == nil {
			return desc.Digest
		}
	}
	return ""
}

func matchManifest(raw []byte, want digest.Digest) error {
	ok, err := manifest.MatchesDigest(raw, want)
	if err != nil {
		return fmt.Errorf("verifying manifest %s: %w", want, err)
	}
	if !ok {
		got, _ := manifest.Digest(raw)
		return fmt.Errorf("manifest %s is corrupt: its content has digest %s", want, got)
	}
	return nil
}

// choosePlatform picks the list's linux/arch image, preferring the
// closest variant, or says which platforms the list does have.
func choosePlatform(list manifest.List, arch string) (digest.Digest, error) {
	want := wantedPlatform(arch)
	variants := variantsFor(want.Architecture, want.Variant)
	best, bestRank := digest.Digest(""), len(variants)
	var have []string
	for _, d := range list.Instances() {
		inst, err := list.Instance(d)
		if err != nil {
			return "", err
		}
		p := inst.ReadOnly.Platform
		if p == nil {
			have = append(have, "(no platform)")
			continue
		}
		if p.OS == "unknown" && p.Architecture == "unknown" {
			continue // attestations and other non-images
		}
		have = append(have, platformString(*p))
		if p.OS != want.OS || p.Architecture != want.Architecture {
			continue
		}
		if rank := slices.Index(variants, p.Variant); rank >= 0 && rank < bestRank {
			best, bestRank = d, rank
		}
	}
	if best == "" {
		return "", fmt.Errorf("no image for platform %s (arch %q); the image has %s",
			platformString(want), arch, strings.Join(slices.Compact(slices.Sorted(slices.Values(have))), ", "))
	}
	return best, nil
}

// checkConfig verifies the image config blob and that it describes a
// linux/arch image: a single-platform reference may name any.
func checkConfig(ctx context.Context, src types.ImageSource, img *resolvedImage, arch string) error {
	ci := img.manifest.ConfigInfo()
	if ci.Digest == "" {
		return nil // schema 1: the manifest has no config blob
	}
	switch ci.MediaType {
	case "", ocispec.MediaTypeImageConfig, manifest.DockerV2Schema2ConfigMediaType:
	default:
		return fmt.Errorf("manifest %s is not a container image (config media type %s)", img.digest, ci.MediaType)
	}
	rc, _, err := src.GetBlob(ctx, ci, none.NoCache)
	if err != nil {
		return fmt.Errorf("reading config %s: %w", ci.Digest, err)
	}
	defer rc.Close()
	vr, err := newVerifyingReader(ctx, rc, ci.Digest, ci.Size)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(vr, 64<<20))
	if err != nil {
		return fmt.Errorf("reading config %s: %w", ci.Digest, err)
	}
	if err := vr.check(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("parsing config %s: %w", ci.Digest, err)
	}
	want := wantedPlatform(arch)
	if (cfg.OS != "" && cfg.OS != want.OS) || (cfg.Architecture != "" && cfg.Architecture != want.Architecture) {
		return fmt.Errorf("image is for %s, not %s (arch %q)", platformString(cfg.Platform), platformString(want), arch)
	}
	return nil
}

// applyBlob streams one layer blob into root, verifying its digest.
func applyBlob(ctx context.Context, src types.ImageSource, info types.BlobInfo, root string) error {
	if strings.HasSuffix(info.MediaType, "+encrypted") {
		return fmt.Errorf("encrypted layers are not supported (%s)", info.MediaType)
	}
	rc, _, err := src.GetBlob(ctx, info, none.NoCache)
	if err != nil {
		return fmt.Errorf("fetching blob: %w", err)
	}
	defer rc.Close()
	vr, err := newVerifyingReader(ctx, rc, info.Digest, info.Size)
	if err != nil {
		return err
	}
	if err := layer.Apply(vr, root, layer.ApplyOptions{}); err != nil {
		if ctx.Err() != nil || errors.Is(err, layer.ErrUnsafePath) {
			return err
		}
		// A corrupt blob often shows first as a decompression or tar
		// error; the digest says what really went wrong.
		if _, derr := io.Copy(io.Discard, vr); derr != nil && errors.Is(derr, errDigestMismatch) {
			return derr
		}
		return err
	}
	// Apply stops at the end of the tar; the digest covers the rest.
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return err
	}
	return vr.check()
}

var errDigestMismatch = errors.New("digest mismatch")

// verifyingReader hashes a blob as it is read and fails at its end (or
// as soon as it is too long) unless digest and size match. It also stops
// at ctx's cancellation, which local files would not notice.
type verifyingReader struct {
	ctx  context.Context
	r    io.Reader
	want digest.Digest
	size int64 // -1: unknown
	h    hash.Hash
	n    int64
	err  error // sticky: io.EOF once verified
}

func newVerifyingReader(ctx context.Context, r io.Reader, want digest.Digest, size int64) (*verifyingReader, error) {
	if err := want.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", want, err)
	}
	return &verifyingReader{ctx: ctx, r: r, want: want, size: size, h: want.Algorithm().Hash()}, nil
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: blob %s is longer than its %d bytes", errDigestMismatch, v.want, v.size)
		return 0, v.err
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%w: blob %s is %d bytes, not %d", errDigestMismatch, v.want, v.n, v.size)
		} else if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
			v.err = fmt.Errorf("%w: blob %s has content with digest %s", errDigestMismatch, v.want, got)
		} else {
			v.err = io.EOF
		}
		if v.err != io.EOF {
			return 0, v.err
		}
	} else if err != nil {
		v.err = err
	}
	return n, err
}

// check reports whether the whole blob was read and matched.
func (v *verifyingReader) check() error {
	switch v.err {
	case io.EOF:
		return nil
	case nil:
		return fmt.Errorf("blob %s was not read to its end", v.want)
	}
	return v.err
}
