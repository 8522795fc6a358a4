package ec2

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fgimg/fgimg/internal/ec2fake"
	"github.com/fgimg/fgimg/internal/s3test"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
)

// world is a real S3 server (versitygw) with a staging bucket and the
// EC2 fake reading from it, the AWS SDK's chain pointed at both through
// the environment as a user would.
type world struct {
	s3   *s3test.Server
	fake *ec2fake.Fake
	out  string
	raw  map[string]string // artifact files by seed
}

func newWorld(t *testing.T) *world {
	w := &world{s3: s3test.Start(t), out: t.TempDir(), raw: map[string]string{}}
	w.s3.MakeBucket(t, "stage")
	w.fake = ec2fake.New(w.s3.AccessKey, w.s3.Config())
	w.fake.Steps = 3
	srv := httptest.NewServer(w.fake)
	t.Cleanup(srv.Close)
	home := t.TempDir()
	for k, v := range map[string]string{
		"HOME": home, "AWS_CONFIG_FILE": filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"),
		"AWS_ACCESS_KEY_ID": w.s3.AccessKey, "AWS_SECRET_ACCESS_KEY": w.s3.SecretKey, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_ENDPOINT_URL_EC2": srv.URL, "AWS_ENDPOINT_URL_S3": w.s3.Endpoint, "AWS_REGION": "", "AWS_ENDPOINT_URL": "",
	} {
		t.Setenv(k, v)
	}
	return w
}

// build writes target web as the ec2 writer would, its disk the bytes
// of seed.
func (w *world) build(t *testing.T, seed uint64) register.File {
	raw := filepath.Join(t.TempDir(), "disk.raw")
	registertest.Random(t, raw, 3<<20, seed)
	f := register.File{Target: "web", Kind: "ec2", Image: "base", Cloud: "us-east-1", Steps: []register.Step{{
		ID: "disk", Artifact: "disk.raw", Name: "web", Format: "raw",
		Properties: map[string]string{"fgimg_image": "base", "team": "hpc"},
		Options: map[string]string{OptArchitecture: "x86_64", OptBootMode: "uefi-preferred", OptENA: "true",
			OptRootDevice: "/dev/xvda", OptBucket: "stage"},
	}}}
	f = registertest.Write(t, w.out, f, map[string]string{"disk.raw": raw})
	// As the writer names them: the digest in the name and the key.
	hex := f.Steps[0].Digest.Encoded()
	f.Steps[0].Name = "web-" + hex[:12]
	f.Steps[0].Options[OptKey] = "fgimg/web/" + hex + ".raw"
	return registertest.Write(t, w.out, f, map[string]string{"disk.raw": raw})
}

func (w *world) register(t *testing.T, o register.Options) (register.Result, string) {
	t.Helper()
	var log bytes.Buffer
	o.Out, o.Targets, o.Log = w.out, []string{"web"}, &log
	o.Open = func(ctx context.Context, f *register.File) (register.Cloud, error) { return Open(ctx, f) }
	o.Retry = register.Retry{Attempts: 2, First: 10 * time.Millisecond}
	res := register.Run(context.Background(), o)
	return res[0], log.String()
}

func TestRegisterIdempotentAndReplace(t *testing.T) {
	w := newWorld(t)
	f1 := w.build(t, 1)

	res, log := w.register(t, register.Options{DryRun: true})
	if res.Err != nil || !strings.Contains(log, "+ upload disk.raw") || w.fake.Calls("ImportSnapshot") != 0 {
		t.Fatalf("dry run: %v\n%s", res.Err, log)
	}
	if _, found, _ := w.s3.Client(t).Stat(context.Background(), "stage", f1.Steps[0].Options[OptKey]); found {
		t.Fatal("a dry run staged the disk")
	}

	res, log = w.register(t, register.Options{})
	if res.Err != nil {
		t.Fatalf("register: %v\n%s", res.Err, log)
	}
	ims := w.fake.Images()
	if len(ims) != 1 {
		t.Fatalf("images: %+v", ims)
	}
	im := ims[0]
	d := f1.Steps[0].Digest
	if im.Name != f1.Steps[0].Name || im.Architecture != "x86_64" || im.BootMode != "uefi-preferred" || !im.ENA ||
		im.RootDevice != "/dev/xvda" || im.Tags["fgimg_digest"] != string(d) || im.Tags["fgimg_target"] != "web" ||
		im.Tags["fgimg_step"] != "disk" || im.Tags["team"] != "hpc" || im.Tags[TagObject] != "s3://stage/"+f1.Steps[0].Options[OptKey] {
		t.Errorf("AMI: %+v", im)
	}
	if snaps := w.fake.Snapshots(); len(snaps) != 1 || snaps[im.Snapshot]["fgimg_digest"] != string(d) {
		t.Errorf("snapshots: %v (the AMI's is %s)", snaps, im.Snapshot)
	}
	o, found, err := w.s3.Client(t).Stat(context.Background(), "stage", f1.Steps[0].Options[OptKey])
	if err != nil || !found || o.Metadata[MetaDigest] != string(d) || o.Size != f1.Steps[0].Size {
		t.Fatalf("staged object: %+v %v %v", o, found, err)
	}

	// A second register does nothing.
	start := time.Now()
	res, log = w.register(t, register.Options{})
	t.Logf("no-op register: %.3fs", time.Since(start).Seconds())
	if res.Err != nil || !strings.Contains(log, "= skip") || strings.Contains(log, "+ upload") ||
		w.fake.Calls("ImportSnapshot") != 1 || w.fake.Calls("RegisterImage") != 1 {
		t.Fatalf("second register: %v\n%s", res.Err, log)
	}

	// An AMI deregistered behind fgimg's back is registered again from
	// the staged object, which is not uploaded again.
	objPath := filepath.Join(w.s3.Dir, "stage", f1.Steps[0].Options[OptKey])
	before, err := os.Stat(objPath)
	if err != nil {
		t.Fatal(err)
	}
	ec := w.client(t)
	if _, err := ec.DeregisterImage(context.Background(), &ec2.DeregisterImageInput{ImageId: aws.String(im.ID)}); err != nil {
		t.Fatal(err)
	}
	res, log = w.register(t, register.Options{})
	after, _ := os.Stat(objPath)
	if res.Err != nil || !after.ModTime().Equal(before.ModTime()) || w.fake.Calls("RegisterImage") != 2 {
		t.Fatalf("register after deregistration: %v (object rewritten: %v)\n%s", res.Err, !after.ModTime().Equal(before.ModTime()), log)
	}
	// The completed import's snapshot was reused, not imported again.
	if n := w.fake.Calls("ImportSnapshot"); n != 1 {
		t.Errorf("%d imports; the snapshot of the first was there to reuse", n)
	}
	old := w.fake.Images()[0]

	// A changed image gets a new AMI with a new name; the old one stays
	// until replace is asked for.
	f2 := w.build(t, 2)
	res, log = w.register(t, register.Options{})
	if res.Err != nil || len(w.fake.Images()) != 2 {
		t.Fatalf("changed image: %v, %d images\n%s", res.Err, len(w.fake.Images()), log)
	}
	res, log = w.register(t, register.Options{Replace: true})
	if res.Err != nil || !strings.Contains(log, "~ retire image "+old.ID) {
		t.Fatalf("replace: %v\n%s", res.Err, log)
	}
	ims = w.fake.Images()
	if len(ims) != 1 || ims[0].Tags["fgimg_digest"] != string(f2.Steps[0].Digest) {
		t.Fatalf("after replace: %+v", ims)
	}
	if _, ok := w.fake.Snapshots()[old.Snapshot]; ok {
		t.Errorf("the retired AMI's snapshot %s is still there", old.Snapshot)
	}
	if _, err := os.Stat(objPath); !os.IsNotExist(err) {
		t.Errorf("the retired AMI's staged object is still there: %v", err)
	}
}

func (w *world) client(t *testing.T) *ec2.Client {
	c, err := Open(context.Background(), &register.File{Kind: "ec2", Cloud: "us-east-1", Steps: []register.Step{{}}})
	if err != nil {
		t.Fatal(err)
	}
	return c.ec2
}

func TestNameTakenByAnotherAMI(t *testing.T) {
	w := newWorld(t)
	f := w.build(t, 1)
	// Someone registered an AMI of that name by hand, from a snapshot
	// fgimg did not make: register names it rather than failing with
	// InvalidAMIName.Duplicate, and leaves nothing half-registered.
	ec := w.client(t)
	res, _ := w.register(t, register.Options{}) // one good registration gives a snapshot to borrow
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	ims := w.fake.Images()
	if _, err := ec.DeregisterImage(context.Background(), &ec2.DeregisterImageInput{ImageId: aws.String(ims[0].ID)}); err != nil {
		t.Fatal(err)
	}
	foreign, err := ec.RegisterImage(context.Background(), &ec2.RegisterImageInput{
		Name: aws.String(f.Steps[0].Name), Architecture: types.ArchitectureValuesX8664, RootDeviceName: aws.String("/dev/xvda"),
		VirtualizationType: aws.String("hvm"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"),
			Ebs: &types.EbsBlockDevice{SnapshotId: aws.String(ims[0].Snapshot)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, log := w.register(t, register.Options{})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "is taken by "+aws.ToString(foreign.ImageId)) ||
		strings.Contains(res.Err.Error(), "InvalidAMIName.Duplicate") {
		t.Fatalf("register over a foreign name: %v\n%s", res.Err, log)
	}
	if n := len(w.fake.Images()); n != 1 {
		t.Errorf("%d images after the refused registration; only the foreign one should be", n)
	}
}

func TestFaults(t *testing.T) {
	w := newWorld(t)
	w.build(t, 1)
	t.Run("import fails", func(t *testing.T) {
		w.fake.FailTask("ClientError: Disk validation failed [Unsupported specified file format]")
		res, _ := w.register(t, register.Options{})
		if res.Err == nil || !strings.Contains(res.Err.Error(), "Disk validation failed") {
			t.Fatalf("register with a failing import: %v", res.Err)
		}
		if n := len(w.fake.Images()); n != 0 {
			t.Errorf("%d images after a failed import", n)
		}
	})
	t.Run("register fails after the import", func(t *testing.T) {
		imports := w.fake.Calls("ImportSnapshot")
		w.fake.FailNext("RegisterImage", "InvalidParameterValue")
		res, _ := w.register(t, register.Options{})
		if res.Err == nil || !strings.Contains(res.Err.Error(), "InvalidParameterValue") || len(w.fake.Images()) != 0 {
			t.Fatalf("register with RegisterImage failing: %v, images %+v", res.Err, w.fake.Images())
		}
		// The next register resumes: the snapshot imported is used.
		res, log := w.register(t, register.Options{})
		if res.Err != nil || len(w.fake.Images()) != 1 || w.fake.Calls("ImportSnapshot") != imports+1 {
			t.Fatalf("resumed register: %v, %d imports (before %d)\n%s", res.Err, w.fake.Calls("ImportSnapshot"), imports, log)
		}
	})
	t.Run("object missing", func(t *testing.T) {
		// VM Import reads the object itself: one that is not there fails
		// the task (the fake reads from the real S3 server).
		ec := w.client(t)
		out, err := ec.ImportSnapshot(context.Background(), &ec2.ImportSnapshotInput{DiskContainer: &types.SnapshotDiskContainer{
			Format: aws.String("RAW"), UserBucket: &types.UserBucket{S3Bucket: aws.String("stage"), S3Key: aws.String("nothing.raw")}}})
		if err != nil {
			t.Fatal(err)
		}
		tasks, err := ec.DescribeImportSnapshotTasks(context.Background(), &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{aws.ToString(out.ImportTaskId)}})
		if err != nil {
			t.Fatal(err)
		}
		d := tasks.ImportSnapshotTasks[0].SnapshotTaskDetail
		if aws.ToString(d.Status) != "deleted" || !strings.Contains(aws.ToString(d.StatusMessage), "ClientError") {
			t.Errorf("import of a missing object: %s %q", aws.ToString(d.Status), aws.ToString(d.StatusMessage))
		}
	})
	t.Run("S3 down", func(t *testing.T) {
		w.build(t, 7)
		images, imports := len(w.fake.Images()), w.fake.Calls("ImportSnapshot")
		w.s3.Stop()
		res, _ := w.register(t, register.Options{})
		if res.Err == nil || !strings.Contains(res.Err.Error(), "staging disk.raw") || !strings.Contains(res.Err.Error(), w.s3.Endpoint) {
			t.Fatalf("register with S3 down: %v", res.Err)
		}
		if len(w.fake.Images()) != images || w.fake.Calls("ImportSnapshot") != imports {
			t.Errorf("with S3 down, register went on to EC2")
		}
	})
	t.Run("bad credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "AKIAWRONG")
		res, _ := w.register(t, register.Options{DryRun: true})
		if res.Err == nil || !strings.Contains(res.Err.Error(), "AuthFailure") {
			t.Fatalf("register with a wrong key: %v", res.Err)
		}
	})
}

// TestEucalyptusFromEucarc registers a eucalyptus target with nothing
// but a eucarc's variables: EC2_URL, S3_URL, EC2_ACCESS_KEY and
// EC2_SECRET_KEY.
func TestEucalyptusFromEucarc(t *testing.T) {
	w := newWorld(t)
	ec2URL := os.Getenv("AWS_ENDPOINT_URL_EC2")
	for k, v := range map[string]string{"AWS_ENDPOINT_URL_EC2": "", "AWS_ENDPOINT_URL_S3": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
		"EC2_URL": ec2URL, "S3_URL": w.s3.Endpoint, "EC2_ACCESS_KEY": w.s3.AccessKey, "EC2_SECRET_KEY": w.s3.SecretKey} {
		t.Setenv(k, v)
	}
	f := w.build(t, 3)
	f.Kind, f.Cloud = "eucalyptus", ""
	delete(f.Steps[0].Options, OptBootMode)
	f.Steps[0].Options[OptENA] = "false"
	raw := filepath.Join(t.TempDir(), "disk.raw")
	registertest.Random(t, raw, 3<<20, 3)
	registertest.Write(t, w.out, f, map[string]string{"disk.raw": raw})
	res, log := w.register(t, register.Options{})
	if res.Err != nil || !strings.Contains(log, "eucalyptus "+ec2URL) {
		t.Fatalf("register: %v\n%s", res.Err, log)
	}
	if ims := w.fake.Images(); len(ims) != 1 || ims[0].BootMode != "" || ims[0].ENA {
		t.Errorf("EMI: %+v", ims)
	}
	if res, log = w.register(t, register.Options{}); res.Err != nil || !strings.Contains(log, "= skip") {
		t.Fatalf("second register: %v\n%s", res.Err, log)
	}
	t.Setenv("EC2_URL", "")
	if res, _ = w.register(t, register.Options{DryRun: true}); res.Err == nil || !strings.Contains(res.Err.Error(), "EC2_URL") {
		t.Errorf("without EC2_URL: %v", res.Err)
	}
}
