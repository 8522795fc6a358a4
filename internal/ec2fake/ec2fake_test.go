package ec2fake_test

import (
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

	"github.com/fgimg/fgimg/internal/ec2fake"
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
