package ec2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/internal/s3client"
	"github.com/fgimg/fgimg/register"
)

const manifestSuffix = ".manifest.xml"

// uploadBundle bundles the artifact, uploads its parts and manifest
// beside key (the manifest's) and registers the instance-store image.
// The bundle is made anew on every attempt (its key is random): an
// image already registered with this digest is found by the plan and
// never uploaded again.
func (c *Cloud) uploadBundle(ctx context.Context, step register.Step, props map[string]string, path, bucket, key string) (register.Image, error) {
	if !strings.HasSuffix(key, manifestSuffix) {
		return register.Image{}, fmt.Errorf("step %q: bundle key %q does not end in %s (rebuild the target)", step.ID, key, manifestSuffix)
	}
	keys, err := eucabundle.LoadKeys()
	if err != nil {
		return register.Image{}, fmt.Errorf("%s: %w", c, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return register.Image{}, err
	}
	defer f.Close()
	dir, name := splitKey(key)
	meta := map[string]string{MetaDigest: string(step.Digest), "fgimg-step": step.ID}
	put := func(k string, data []byte) error {
		return c.s3.UploadReader(ctx, bucket, k, bytes.NewReader(data), int64(len(data)), digest.FromBytes(data), meta)
	}
	im := eucabundle.Image{Name: name, Arch: step.Options[OptArchitecture], Type: step.Options[OptImageType],
		KernelID: props[PropKernelID], RamdiskID: props[PropRamdiskID]}
	manifest, err := eucabundle.Write(f, step.Size, im, keys, func(part string, data []byte) error { return put(dir+part, data) })
	if err != nil {
		return register.Image{}, fmt.Errorf("bundling %s: %w", step.Artifact, err)
	}
	if err := put(key, manifest); err != nil {
		return register.Image{}, fmt.Errorf("uploading the manifest of %s: %w", step.Artifact, err)
	}
	tags := map[string]string{TagObject: "s3://" + bucket + "/" + key}
	for k, v := range props {
		tags[k] = v
	}
	in := &ec2.RegisterImageInput{
		Name:              aws.String(step.Name),
		Description:       aws.String(fmt.Sprintf("fgimg image %s, target %s", tags["fgimg_image"], tags[register.PropTarget])),
		ImageLocation:     aws.String(bucket + "/" + key),
		Architecture:      types.ArchitectureValues(step.Options[OptArchitecture]),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: tagList(tags)}},
	}
	if v := props[PropKernelID]; v != "" {
		in.KernelId = aws.String(v)
	}
	if v := props[PropRamdiskID]; v != "" {
		in.RamdiskId = aws.String(v)
	}
	id, err := c.registerImage(ctx, step, tags, in)
	if err != nil {
		return register.Image{}, err
	}
	return c.waitAvailable(ctx, id)
}

// splitKey splits a manifest's key into its folder (with its slash)
// and the bundle's name.
func splitKey(key string) (dir, name string) {
	dir, base := path.Split(key)
	return dir, strings.TrimSuffix(base, manifestSuffix)
}

// deleteBundle deletes the parts the manifest at key lists, then the
// manifest, as euca-delete-bundle does. A manifest already gone is
// nothing to delete.
func (c *Cloud) deleteBundle(ctx context.Context, bucket, key string) error {
	body, _, err := c.s3.Open(ctx, bucket, key)
	if s3client.NotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: reading the bundle's manifest s3://%s/%s: %w", c, bucket, key, err)
	}
	raw, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		return fmt.Errorf("%s: reading the bundle's manifest s3://%s/%s: %w", c, bucket, key, err)
	}
	m, err := eucabundle.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: s3://%s/%s: %w", c, bucket, key, err)
	}
	dir, _ := splitKey(key)
	for _, p := range m.Parts() {
		if strings.Contains(p.Filename, "/") {
			return fmt.Errorf("%s: s3://%s/%s lists part %q outside its folder", c, bucket, key, p.Filename)
		}
		if err := c.s3.Delete(ctx, bucket, dir+p.Filename); err != nil {
			return err
		}
	}
	return c.s3.Delete(ctx, bucket, key)
}
