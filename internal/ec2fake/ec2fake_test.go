package ec2fake_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/ec2fake"
	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/internal/s3test"
)

// TestDocumentedErrors checks the fake answers the SDK with the error
// codes of AWS's reference where image registration meets them.
func TestDocumentedErrors(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "disks")
	if err := s.Client(t).Upload(context.Background(), "disks", "d.raw", writeTemp(t, "a disk"), nil, nil); err != nil {
		t.Fatal(err)
	}
	fake := ec2fake.New(s.AccessKey, s.Config())
	fake.Steps = 1
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")})
	ctx := context.Background()
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return ""
	}
	// A VMDK that is not one fails the task.
	bad, err := c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{DiskContainer: &types.SnapshotDiskContainer{Format: aws.String("VMDK"),
		UserBucket: &types.UserBucket{S3Bucket: aws.String("disks"), S3Key: aws.String("d.raw")}}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{DiskContainer: &types.SnapshotDiskContainer{Format: aws.String("RAW"),
		UserBucket: &types.UserBucket{S3Bucket: aws.String("disks"), S3Key: aws.String("d.raw")}}})
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{*bad.ImportTaskId, *out.ImportTaskId}})
	if err != nil {
		t.Fatal(err)
	}
	vmdk, raw := tasks.ImportSnapshotTasks[0].SnapshotTaskDetail, tasks.ImportSnapshotTasks[1].SnapshotTaskDetail
	if *vmdk.Status != "deleted" || !strings.Contains(*vmdk.StatusMessage, "VMDK") || *raw.Status != "completed" || raw.SnapshotId == nil {
		t.Fatalf("tasks: %s %q, %s %v", *vmdk.Status, aws.ToString(vmdk.StatusMessage), *raw.Status, raw.SnapshotId)
	}
	reg := func(name string) (*ec2.RegisterImageOutput, error) {
		return c.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String(name), Architecture: types.ArchitectureValuesX8664,
			RootDeviceName: aws.String("/dev/xvda"), VirtualizationType: aws.String("hvm"),
			BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: raw.SnapshotId}}}})
	}
	im, err := reg("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg("web-1"); code(err) != "InvalidAMIName.Duplicate" {
		t.Errorf("a second AMI of the same name: %v", err)
	}
	if _, err := reg("x"); code(err) != "InvalidAMIName.Malformed" {
		t.Errorf("a short name: %v", err)
	}
	if _, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: raw.SnapshotId}); code(err) != "InvalidSnapshot.InUse" {
		t.Errorf("deleting the snapshot of an AMI: %v", err)
	}
	if _, err := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: im.ImageId}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: im.ImageId}); code(err) != "InvalidAMIID.NotFound" {
		t.Errorf("deregistering twice: %v", err)
	}
	if _, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: raw.SnapshotId}); err != nil {
		t.Errorf("deleting the snapshot once the AMI is gone: %v", err)
	}
	// Unsigned requests are refused.
	resp, err := http.PostForm(srv.URL, url.Values{"Action": {"DescribeImages"}, "Version": {"2016-11-15"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an unsigned request: HTTP %d", resp.StatusCode)
	}
}

func writeTemp(t *testing.T, content string) string {
	p := t.TempDir() + "/disk"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBundleChecks registers an instance-store image only from a bundle
// whose manifest is there, is signed by the user and whose parts match.
func TestBundleChecks(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "bundles")
	cloud, user, _ := eucabundle.UseTestCredentials(t)
	keys, err := eucabundle.LoadKeys()
	if err != nil {
		t.Fatal(err)
	}
	fake := ec2fake.New(s.AccessKey, s.Config())
	fake.UserCert, fake.CloudKey = user, cloud
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")})
	ctx := context.Background()
	s3c := s.Client(t)
	put := func(key string, data []byte) {
		t.Helper()
		if err := s3c.UploadReader(ctx, "bundles", key, bytes.NewReader(data), int64(len(data)), digest.FromBytes(data), nil); err != nil {
			t.Fatal(err)
		}
	}
	code := func(err error) string {
		var ae smithy.APIError
		if errors.As(err, &ae) {
			return ae.ErrorCode()
		}
		return ""
	}
	img := bytes.Repeat([]byte("kernel "), 5000)
	parts := map[string][]byte{}
	manifest, err := eucabundle.Write(bytes.NewReader(img), int64(len(img)), eucabundle.Image{Name: "vmlinuz", Arch: "x86_64", Type: eucabundle.TypeKernel}, keys,
		func(name string, data []byte) error { parts[name] = append([]byte(nil), data...); return nil })
	if err != nil {
		t.Fatal(err)
	}
	reg := func(name string) (*ec2.RegisterImageOutput, error) {
		return c.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String(name), ImageLocation: aws.String("bundles/k/vmlinuz.manifest.xml")})
	}
	if _, err := reg("no-manifest"); code(err) != "InvalidManifest" {
		t.Errorf("no manifest: %v", err)
	}
	put("k/vmlinuz.manifest.xml", manifest)
	if _, err := reg("no-parts"); code(err) != "InvalidManifest" {
		t.Errorf("no parts: %v", err)
	}
	for n, p := range parts {
		bad := append([]byte(nil), p...)
		bad[0] ^= 1
		put("k/"+n, bad)
	}
	if _, err := reg("bad-part"); code(err) != "InvalidManifest" || !strings.Contains(err.Error(), "SHA-1") {
		t.Errorf("a corrupt part: %v", err)
	}
	for n, p := range parts {
		put("k/"+n, p)
	}
	put("k/vmlinuz.manifest.xml", bytes.Replace(manifest, []byte("<architecture>x86_64"), []byte("<architecture>i386"), 1))
	if _, err := reg("forged"); code(err) != "InvalidManifest" || !strings.Contains(err.Error(), "signature") {
		t.Errorf("a forged manifest: %v", err)
	}
	put("k/vmlinuz.manifest.xml", manifest)
	out, err := reg("good")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(aws.ToString(out.ImageId), "aki-") {
		t.Errorf("a kernel bundle registered as %s", aws.ToString(out.ImageId))
	}
	if _, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String("emi"), ImageLocation: aws.String("bundles/k/vmlinuz.manifest.xml"),
		KernelId: aws.String("aki-00000000000000099")}); code(err) != "InvalidAMIID.NotFound" {
		t.Errorf("a missing kernel: %v", err)
	}
}
