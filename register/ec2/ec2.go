// Package ec2 is register's Cloud for Amazon EC2 and for Eucalyptus
// (whose compute API is EC2's): a disk is staged in S3 (internal/s3client),
// imported as an EBS snapshot (ImportSnapshot, then
// DescribeImportSnapshotTasks until it completes) and registered as an
// HVM AMI from that snapshot (RegisterImage), every resource tagged with
// fgimg's properties, fgimg_digest among them. It uses aws-sdk-go-v2.
//
// Credentials and region come from the AWS SDK's chain (AWS_* variables,
// ~/.aws/config and credentials, AWS_PROFILE, instance roles); for
// Eucalyptus also from the eucarc variables (EC2_URL, S3_URL,
// EC2_ACCESS_KEY and EC2_SECRET_KEY or AWS_ACCESS_KEY and
// AWS_SECRET_KEY).
//
// Idempotence: an AMI tagged with the target, step and digest is found by
// Find and reused by the plan; an S3 object whose fgimg-digest metadata
// is the artifact's is not uploaded again; an import task tagged with
// the digest that is still running (or completed, its snapshot still
// there) is waited for rather than started again, so a register killed
// mid-import resumes. AMI names are unique per region: the writers put
// the digest into the name, and a name that is taken all the same is
// adopted when its AMI is fgimg's with this digest, and reported
// otherwise, never retried into InvalidAMIName.Duplicate. Retire and
// Delete deregister the AMI and delete its snapshot (Retire also deletes
// the staged object).
//
// Instance-store images (Eucalyptus's EKI, ERI and EMI, boot = "none"):
// a step with OptImageType is bundled at register time in euca2ools'
// format (internal/eucabundle) with the eucarc's certificates and key
// (EUCALYPTUS_CERT, EC2_CERT, EC2_PRIVATE_KEY, EC2_USER_ID), its parts and
// manifest uploaded beside OptKey (the manifest's key), and registered
// with RegisterImage's ImageLocation, a machine image with the KernelId
// and RamdiskId of the steps it refers to (its kernel_id and ramdisk_id
// properties). Retire deletes the manifest and the parts it lists.
package ec2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/s3client"
	"github.com/fgimg/fgimg/register"
)

// The Step.Options the ec2 and eucalyptus writers set.
const (
	OptBucket          = "bucket"           // the S3 bucket the disk is staged in
	OptKey             = "key"              // its object key
	OptArchitecture    = "architecture"     // x86_64 | arm64
	OptBootMode        = "boot_mode"        // legacy-bios | uefi | uefi-preferred; "" for none (Eucalyptus)
	OptENA             = "ena"              // "true" | "false"
	OptRootDevice      = "root_device"      // /dev/xvda
	OptStorageEndpoint = "storage_endpoint" // Eucalyptus: its S3 (Walrus, OSG); "" is S3_URL
	// OptImageType makes the step an instance-store bundle of this
	// type (eucabundle.TypeMachine, TypeKernel, TypeRamdisk); OptKey is
	// then its manifest's key, NAME.manifest.xml, its parts beside it.
	OptImageType = "image_type"
)

// The properties of a machine image's step that name its kernel and
// ramdisk images (register resolves them from the steps' Refs).
const (
	PropKernelID  = "kernel_id"
	PropRamdiskID = "ramdisk_id"
)

// TagObject is the tag on an AMI naming the object it was imported
// from (s3://bucket/key), which Retire deletes.
const TagObject = "fgimg_object"

// MetaDigest is the S3 user metadata holding the staged object's
// digest.
const MetaDigest = "fgimg-digest"

// Cloud is one region of EC2 (or one Eucalyptus cloud) with the S3 it
// stages disks in.
type Cloud struct {
	name string
	ec2  *ec2.Client
	s3   *s3client.Client
	// maxPoll bounds the wait between polls of an import or an image.
	maxPoll time.Duration
}

var _ register.Cloud = (*Cloud)(nil)

// callTimeout bounds every API call; an import's wait is bounded by
// importTimeout.
const (
	callTimeout   = 2 * time.Minute
	importTimeout = 3 * time.Hour
)

// Open connects to the cloud f names: for kind ec2 the region f.Cloud
// (else the chain's), for eucalyptus the endpoint f.Cloud (else
// EC2_URL). It does not contact the cloud.
func Open(ctx context.Context, f *register.File) (*Cloud, error) {
	var opts []func(*config.LoadOptions) error
	c := &Cloud{maxPoll: 10 * time.Second}
	var endpoint, s3c = "", s3client.Config{}
	switch f.Kind {
	case "ec2":
		if f.Cloud != "" {
			opts = append(opts, config.WithRegion(f.Cloud))
			s3c.Region = f.Cloud
		}
		// The SDK reads AWS_ENDPOINT_URL_S3 itself, but S3-compatible
		// servers want path-style addressing, which s3client sets for an
		// explicit endpoint.
		s3c.Endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	case "eucalyptus":
		endpoint = f.Cloud
		if endpoint == "" {
			endpoint = os.Getenv("EC2_URL")
		}
		if endpoint == "" {
			return nil, errors.New("eucalyptus: no endpoint: set the target's endpoint, or EC2_URL (source the cloud's eucarc)")
		}
		s3c.Endpoint = f.Steps[0].Options[OptStorageEndpoint]
		if s3c.Endpoint == "" {
			s3c.Endpoint = os.Getenv("S3_URL")
		}
		if s3c.Endpoint == "" {
			return nil, fmt.Errorf("eucalyptus %s: no object storage endpoint: set the target's storage_endpoint, or S3_URL (source the cloud's eucarc)", endpoint)
		}
		// Eucalyptus has one region; SigV4 still signs with a name
		// (us-east-1, as for other S3-compatible servers, unless told).
		region := firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
		if region == "" {
			region = "us-east-1"
		}
		opts = append(opts, config.WithRegion(region))
		s3c.Region = region
		if ak, sk := firstEnv("EC2_ACCESS_KEY", "AWS_ACCESS_KEY"), firstEnv("EC2_SECRET_KEY", "AWS_SECRET_KEY"); ak != "" && sk != "" {
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, "")))
			s3c.AccessKey, s3c.SecretKey = ak, sk
		}
	default:
		return nil, fmt.Errorf("register/ec2 cannot register %q targets", f.Kind)
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: loading the AWS configuration: %w", f.Kind, err)
	}
	if ac.Region == "" {
		return nil, errors.New("ec2: no region: set the target's region, AWS_REGION, or a region in ~/.aws/config")
	}
	c.ec2 = ec2.NewFromConfig(ac, func(o *ec2.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	if c.s3, err = s3client.New(ctx, s3c); err != nil {
		return nil, err
	}
	if f.Kind == "ec2" {
		c.name = "ec2 region " + ac.Region
		if e := firstEnv("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"); e != "" {
			c.name += " (" + e + ")"
		}
	} else {
		c.name = "eucalyptus " + endpoint
	}
	return c, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (c *Cloud) String() string { return c.name }

// Find lists this account's AMIs tagged with fgimg_target (= target
// unless target is "").
func (c *Cloud) Find(ctx context.Context, target string) ([]register.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	filter := types.Filter{Name: aws.String("tag-key"), Values: []string{register.PropTarget}}
	if target != "" {
		filter = types.Filter{Name: aws.String("tag:" + register.PropTarget), Values: []string{target}}
	}
	var out []register.Image
	p := ec2.NewDescribeImagesPaginator(c.ec2, &ec2.DescribeImagesInput{Owners: []string{"self"}, Filters: []types.Filter{filter}})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, c.fault("describing images", err)
		}
		for _, im := range page.Images {
			out = append(out, convert(im))
		}
	}
	return out, nil
}

// convert is an AMI as register sees it; its properties are its tags.
func convert(im types.Image) register.Image {
	props := map[string]string{}
	for _, t := range im.Tags {
		props[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	out := register.Image{ID: aws.ToString(im.ImageId), Name: aws.ToString(im.Name), Status: string(im.State),
		Properties: props, Step: props[register.PropStep]}
	out.Digest, _ = digest.Parse(props[register.PropDigest])
	out.Updated, _ = time.Parse(time.RFC3339, aws.ToString(im.CreationDate))
	switch im.State {
	case types.ImageStateAvailable:
		out.State = register.StateReady
	case types.ImageStatePending, types.ImageStateTransient:
		out.State = register.StateIncomplete
	case types.ImageStateDisabled, types.ImageStateDeregistered:
		out.State = register.StateRetired
	default: // failed, error, invalid
		out.State = register.StateFailed
	}
	return out
}

// Upload stages the artifact in S3, imports it as a snapshot and
// registers the AMI, then waits until it is available.
func (c *Cloud) Upload(ctx context.Context, step register.Step, props map[string]string, path string) (register.Image, error) {
	bucket, key := step.Options[OptBucket], step.Options[OptKey]
	if bucket == "" || key == "" {
		return register.Image{}, fmt.Errorf("step %q has no S3 bucket and key to stage %s in (rebuild the target)", step.ID, step.Artifact)
	}
	object := "s3://" + bucket + "/" + key
	if step.Options[OptImageType] != "" {
		return c.uploadBundle(ctx, step, props, path, bucket, key)
	}
	if err := c.stage(ctx, step, path, bucket, key); err != nil {
		return register.Image{}, err
	}
	snap, err := c.importSnapshot(ctx, step, props, bucket, key)
	if err != nil {
		return register.Image{}, err
	}
	tags := map[string]string{TagObject: object}
	for k, v := range props {
		tags[k] = v
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	_, err = c.ec2.CreateTags(cctx, &ec2.CreateTagsInput{Resources: []string{snap}, Tags: tagList(props)})
	cancel()
	if err != nil {
		return register.Image{}, c.fault("tagging snapshot "+snap, err)
	}
	id, err := c.register(ctx, step, tags, snap)
	if err != nil {
		return register.Image{}, err
	}
	return c.waitAvailable(ctx, id)
}

// stage uploads the artifact unless the object already holds it.
func (c *Cloud) stage(ctx context.Context, step register.Step, path, bucket, key string) error {
	o, found, err := c.s3.Stat(ctx, bucket, key)
	if err != nil {
		return fmt.Errorf("staging %s: %w", step.Artifact, err)
	}
	if found && o.Size == step.Size && o.Metadata[MetaDigest] == string(step.Digest) {
		return nil
	}
	meta := map[string]string{MetaDigest: string(step.Digest), "fgimg-step": step.ID}
	if err := c.s3.Upload(ctx, bucket, key, path, meta, nil); err != nil {
		return fmt.Errorf("staging %s: %w", step.Artifact, err)
	}
	return nil
}

// importSnapshot returns the snapshot of the object, from an import
// task tagged with the step's digest when there is one (running, or
// completed with its snapshot still there), else from a new one.
func (c *Cloud) importSnapshot(ctx context.Context, step register.Step, props map[string]string, bucket, key string) (string, error) {
	taskTags := map[string]string{register.PropTarget: props[register.PropTarget], register.PropStep: step.ID, register.PropDigest: string(step.Digest)}
	id, err := c.findTask(ctx, taskTags)
	if err != nil {
		return "", err
	}
	if id == "" {
		format := strings.ToUpper(step.Format)
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := c.ec2.ImportSnapshot(cctx, &ec2.ImportSnapshotInput{
			Description: aws.String(fmt.Sprintf("fgimg %s %s", props[register.PropTarget], step.Digest)),
			DiskContainer: &types.SnapshotDiskContainer{
				Format:     aws.String(format),
				UserBucket: &types.UserBucket{S3Bucket: aws.String(bucket), S3Key: aws.String(key)},
			},
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImportSnapshotTask, Tags: tagList(taskTags)}},
		})
		cancel()
		if err != nil {
			return "", c.fault(fmt.Sprintf("importing s3://%s/%s as a snapshot", bucket, key), err)
		}
		id = aws.ToString(out.ImportTaskId)
	}
	ctx, cancel := context.WithTimeout(ctx, importTimeout)
	defer cancel()
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, c.maxPoll) {
		t, err := c.task(ctx, id)
		if err != nil {
			return "", err
		}
		d := t.SnapshotTaskDetail
		switch aws.ToString(d.Status) {
		case "completed":
			return aws.ToString(d.SnapshotId), nil
		case "deleting", "deleted":
			return "", fmt.Errorf("%s: importing s3://%s/%s as a snapshot: task %s failed: %s", c, bucket, key, id, aws.ToString(d.StatusMessage))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for import task %s: %w", c, id, context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

// findTask returns a reusable import task with these tags: running, or
// completed with its snapshot still there.
func (c *Cloud) findTask(ctx context.Context, tags map[string]string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := c.ec2.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{})
	if err != nil {
		return "", c.fault("describing import snapshot tasks", err)
	}
	for _, t := range slices.Backward(out.ImportSnapshotTasks) {
		got := map[string]string{}
		for _, tag := range t.Tags {
			got[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
		}
		match := true
		for k, v := range tags {
			match = match && got[k] == v
		}
		if !match || t.SnapshotTaskDetail == nil {
			continue
		}
		switch aws.ToString(t.SnapshotTaskDetail.Status) {
		case "active":
			return aws.ToString(t.ImportTaskId), nil
		case "completed":
			snap := aws.ToString(t.SnapshotTaskDetail.SnapshotId)
			_, err := c.ec2.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snap}})
			if err == nil {
				return aws.ToString(t.ImportTaskId), nil
			}
			if code(err) != "InvalidSnapshot.NotFound" {
				return "", c.fault("describing snapshot "+snap, err)
			}
		}
	}
	return "", nil
}

func (c *Cloud) task(ctx context.Context, id string) (types.ImportSnapshotTask, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := c.ec2.DescribeImportSnapshotTasks(cctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{id}})
	if err != nil {
		return types.ImportSnapshotTask{}, c.fault("describing import task "+id, err)
	}
	if len(out.ImportSnapshotTasks) != 1 || out.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
		return types.ImportSnapshotTask{}, fmt.Errorf("%s: import task %s: the cloud did not describe it", c, id)
	}
	return out.ImportSnapshotTasks[0], nil
}

// register registers the AMI from snap. A name already taken by an AMI
// fgimg registered for this step with this digest is that AMI (a
// register killed between RegisterImage and its answer); by any other,
// an error that names it.
func (c *Cloud) register(ctx context.Context, step register.Step, tags map[string]string, snap string) (string, error) {
	root := step.Options[OptRootDevice]
	if root == "" {
		root = "/dev/xvda"
	}
	in := &ec2.RegisterImageInput{
		Name:               aws.String(step.Name),
		Description:        aws.String(fmt.Sprintf("fgimg image %s, target %s", tags["fgimg_image"], tags[register.PropTarget])),
		Architecture:       types.ArchitectureValues(step.Options[OptArchitecture]),
		VirtualizationType: aws.String("hvm"),
		RootDeviceName:     aws.String(root),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String(root), Ebs: &types.EbsBlockDevice{
			SnapshotId: aws.String(snap), DeleteOnTermination: aws.Bool(true), VolumeType: types.VolumeTypeGp3}}},
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeImage, Tags: tagList(tags)}},
	}
	if step.Options[OptENA] == "true" {
		in.EnaSupport = aws.Bool(true)
	}
	if b := step.Options[OptBootMode]; b != "" {
		in.BootMode = types.BootModeValues(b)
	}
	return c.registerImage(ctx, step, tags, in)
}

// registerImage calls RegisterImage with in; a name already taken is
// adopted or reported (see register).
func (c *Cloud) registerImage(ctx context.Context, step register.Step, tags map[string]string, in *ec2.RegisterImageInput) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := c.ec2.RegisterImage(cctx, in)
	if err == nil {
		return aws.ToString(out.ImageId), nil
	}
	if code(err) != "InvalidAMIName.Duplicate" {
		return "", c.fault("registering image "+step.Name, err)
	}
	found, derr := c.ec2.DescribeImages(cctx, &ec2.DescribeImagesInput{Owners: []string{"self"},
		Filters: []types.Filter{{Name: aws.String("name"), Values: []string{step.Name}}}})
	if derr != nil {
		return "", c.fault("describing image "+step.Name, derr)
	}
	for _, im := range found.Images {
		got := convert(im)
		if got.Digest == step.Digest && got.Step == step.ID && got.Properties[register.PropTarget] == tags[register.PropTarget] && got.State != register.StateFailed {
			return got.ID, nil
		}
		return "", fmt.Errorf("%s: AMI name %q is taken by %s, which fgimg did not register for this artifact (%s); deregister it or rename the target's image (name)", c, step.Name, got.ID, got.Digest)
	}
	return "", c.fault("registering image "+step.Name, err)
}

// waitAvailable waits until the AMI is available.
func (c *Cloud) waitAvailable(ctx context.Context, id string) (register.Image, error) {
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, c.maxPoll) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := c.ec2.DescribeImages(cctx, &ec2.DescribeImagesInput{ImageIds: []string{id}})
		cancel()
		if err != nil {
			return register.Image{ID: id}, c.fault("describing image "+id, err)
		}
		if len(out.Images) != 1 {
			return register.Image{ID: id}, fmt.Errorf("%s: image %s is gone", c, id)
		}
		im := convert(out.Images[0])
		switch im.State {
		case register.StateReady:
			return im, nil
		case register.StateFailed, register.StateRetired:
			reason := ""
			if r := out.Images[0].StateReason; r != nil {
				reason = ": " + aws.ToString(r.Message)
			}
			return im, fmt.Errorf("%s: image %s is %s%s", c, id, im.Status, reason)
		}
		select {
		case <-ctx.Done():
			return im, context.Cause(ctx)
		case <-time.After(wait):
		}
	}
}

// Retire deregisters the AMI and deletes its snapshots and staged
// object: on EC2 a retired AMI costs its snapshot's storage, and
// instances already running from it keep their volumes.
func (c *Cloud) Retire(ctx context.Context, im register.Image) error {
	return c.remove(ctx, im, true)
}

// Delete deregisters a stale or failed AMI and deletes its snapshots;
// the staged object stays for the next attempt.
func (c *Cloud) Delete(ctx context.Context, im register.Image) error {
	return c.remove(ctx, im, false)
}

func (c *Cloud) remove(ctx context.Context, im register.Image, object bool) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := c.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{im.ID}})
	if code(err) == "InvalidAMIID.NotFound" {
		return nil
	}
	if err != nil {
		return c.fault("describing image "+im.ID, err)
	}
	var snaps []string
	var tags map[string]string
	for _, x := range out.Images {
		for _, m := range x.BlockDeviceMappings {
			if m.Ebs != nil && aws.ToString(m.Ebs.SnapshotId) != "" {
				snaps = append(snaps, aws.ToString(m.Ebs.SnapshotId))
			}
		}
		tags = convert(x).Properties
	}
	if tags[register.PropTarget] == "" {
		return fmt.Errorf("%s: image %s has no %s tag: fgimg did not register it and leaves it alone", c, im.ID, register.PropTarget)
	}
	if _, err := c.ec2.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(im.ID)}); err != nil && code(err) != "InvalidAMIID.NotFound" {
		return c.fault("deregistering image "+im.ID, err)
	}
	for _, s := range snaps {
		if _, err := c.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(s)}); err != nil && code(err) != "InvalidSnapshot.NotFound" {
			return c.fault(fmt.Sprintf("deleting snapshot %s of image %s", s, im.ID), err)
		}
	}
	if o := tags[TagObject]; object && strings.HasPrefix(o, "s3://") {
		bucket, key, _ := strings.Cut(strings.TrimPrefix(o, "s3://"), "/")
		if strings.HasSuffix(key, manifestSuffix) {
			return c.deleteBundle(ctx, bucket, key)
		}
		if err := c.s3.Delete(ctx, bucket, key); err != nil {
			return err
		}
	}
	return nil
}

func tagList(m map[string]string) []types.Tag {
	var out []types.Tag
	for _, k := range sortedKeys(m) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// code is the EC2 error code of err, or "".
func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// fault is err from the cloud with what was being done, marked
// temporary when retrying may help (throttling, 5xx, a connection that
// failed).
func (c *Cloud) fault(what string, err error) error {
	if err == nil {
		return nil
	}
	msg := fmt.Errorf("%s: %s: %w", c, what, err)
	switch code(err) {
	case "RequestLimitExceeded", "InternalError", "Unavailable", "ServiceUnavailable", "InsufficientInstanceCapacity":
		return register.Temporary(msg)
	}
	if errors.Is(err, context.Canceled) {
		return msg
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return register.Temporary(msg)
	}
	return msg
}
