package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	regec2 "github.com/fgimg/fgimg/register/ec2"
	"github.com/fgimg/fgimg/stages"
)

// EC2 is the ec2 kind: the image adapted for Amazon EC2 (cloud-init with
// the Ec2 datasource; the ENA, NVMe and Xen drivers beside virtio's in
// the initrd), its disk as a raw image, and the registration steps,
// register.json and register.sh: the disk staged in S3, imported as an
// EBS snapshot and registered as an HVM AMI (register/ec2).
type EC2 struct{}

// EC2Spec is an ec2 target's hashed spec.
type EC2Spec struct {
	CloudSpec
	Region string `json:"region,omitempty"` // "": the AWS SDK chain's
	Bucket string `json:"bucket"`
	Prefix string `json:"prefix"` // of the staged objects' keys
	ENA    bool   `json:"ena"`
}

// Kind implements Spec.
func (*EC2Spec) Kind() string { return "ec2" }

// Name implements Kind.
func (EC2) Name() string { return "ec2" }

// ec2Modules are the drivers an EC2 instance's disk and network need in
// the initrd: Nitro instances have NVMe disks and ENA; Xen ones
// xen-blkfront and xen-netfront.
var ec2Modules = append(append([]string(nil), virtioModules...), "nvme", "ena", "xen_blkfront", "xen_netfront")

// Schema implements Kind.
func (EC2) Schema() *lang.TargetSchema {
	s := stagingSchema(s3CloudSchema("tags", checkEC2Tag, false))
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "region", Type: cty.String, Validate: validateRegion,
			Doc: "the AWS region; default: the AWS SDK's chain (AWS_REGION, ~/.aws/config)"},
		lang.TargetAttribute{Name: "ena", Type: cty.Bool, Default: cty.True,
			Doc: "mark the AMI for the Elastic Network Adapter (its driver is in the initrd either way)"},
	)
	setAttr(s, "boot", func(a *lang.TargetAttribute) {
		a.Enum = []string{BootBIOS, BootUEFI, BootHybrid}
		a.Doc = "the AMI's boot mode: bios (legacy-bios), uefi, hybrid (uefi-preferred)"
	})
	setAttr(s, "name", func(a *lang.TargetAttribute) { a.Validate = validateAMIName })
	return s
}

// Spec implements Kind.
func (EC2) Spec(t *lang.Target) Spec {
	s := &EC2Spec{CloudSpec: s3CloudSpec(t, "tags"), Region: t.Str("region"), Bucket: t.Str("bucket"),
		Prefix: t.Str("prefix"), ENA: t.Bool("ena")}
	// AWS's advice for EBS volumes on NVMe: never time an I/O out.
	if !slicesHasPrefix(s.KernelArgs, "nvme_core.io_timeout=") {
		s.KernelArgs = append(s.KernelArgs, "nvme_core.io_timeout=4294967295")
	}
	return s
}

// Adapt implements Adapter: cloud-init on the Ec2 datasource, and the
// disk's.
func (EC2) Adapt(_ Spec, image digest.Digest) []stages.Spec {
	return adaptCloudModules(image, ec2Modules, "EC2", []string{"Ec2"})
}

// Boot implements Kind.
func (EC2) Boot(sp Spec) (*Boot, error) { return bootRaw[*EC2Spec](sp, "ec2") }

// amiBootModes are the AMI boot modes of the disk's.
var amiBootModes = map[string]string{BootBIOS: "legacy-bios", BootUEFI: "uefi", BootHybrid: "uefi-preferred"}

// Write implements Kind.
func (EC2) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	arch := amiArch(in.Image.Arch)
	if s, ok := sp.(*EC2Spec); ok && arch == "arm64" && s.Boot == BootBIOS {
		return nil, fmt.Errorf("ec2 target: arm64 AMIs boot with UEFI only: set boot = \"uefi\" or \"hybrid\"")
	}
	spec, w, err := writeRaw[*EC2Spec](ctx, in, sp, dir, "ec2")
	if err != nil {
		return nil, err
	}
	s := s3Step(w, &spec.CloudSpec, spec.Bucket, spec.Prefix)
	s.Options[regec2.OptArchitecture] = arch
	s.Options[regec2.OptBootMode] = amiBootModes[spec.Boot]
	s.Options[regec2.OptENA] = strconv.FormatBool(spec.ENA)
	s.Options[regec2.OptRootDevice] = "/dev/xvda"
	steps := []register.Step{s}
	region := "--region " + shquote.Quote(spec.Region)
	if spec.Region == "" {
		region = ""
	}
	script := ec2Script("into Amazon EC2", steps, strings.TrimSpace("aws "+region), strings.TrimSpace("aws "+region))
	arts, err := writeRegistration(dir, in, "ec2", &spec.CloudSpec, spec.Region, steps, script, []Artifact{w.disk.Artifact})
	if err != nil {
		return nil, fmt.Errorf("ec2 target: %w", err)
	}
	return arts, nil
}

// amiArch is the image's architecture as EC2 names it.
func amiArch(debArch string) string {
	switch m := machineArch(debArch); m {
	case "aarch64":
		return "arm64"
	case "i686", "i586":
		return "i386"
	default:
		return m
	}
}

// Eucalyptus is the eucalyptus kind: the image adapted for Eucalyptus
// (cloud-init on the Ec2 datasource, which reads Eucalyptus's
// EC2-compatible metadata service), its disk as a raw image, and the
// registration steps: the EC2 path (register/ec2) against the cloud's
// endpoint, the disk staged in its object storage (Walrus or OSG),
// imported as a snapshot and registered as an EBS-backed HVM EMI.
// With boot = "none", the instance-store path instead: the kernel, the
// initrd and the root file system (a partitionless ext4 image, root.img)
// each bundled in euca2ools' format at register time and registered as
// EKI, ERI and an EMI that refers to both (register/ec2,
// internal/eucabundle).
type Eucalyptus struct{}

// EucalyptusSpec is a eucalyptus target's hashed spec.
type EucalyptusSpec struct {
	CloudSpec
	Endpoint        string `json:"endpoint,omitempty"`         // "": EC2_URL
	StorageEndpoint string `json:"storage_endpoint,omitempty"` // "": S3_URL
	Bucket          string `json:"bucket"`
	Prefix          string `json:"prefix"`
}

// Kind implements Spec.
func (*EucalyptusSpec) Kind() string { return "eucalyptus" }

// Name implements Kind.
func (Eucalyptus) Name() string { return "eucalyptus" }

// Schema implements Kind.
func (Eucalyptus) Schema() *lang.TargetSchema {
	s := stagingSchema(s3CloudSchema("tags", checkEC2Tag, true))
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "storage_endpoint", Type: cty.String, Validate: validateEndpoint,
			Doc: "the object storage's (Walrus, OSG) S3 URL; default: S3_URL from the eucarc"},
	)
	setAttr(s, "endpoint", func(a *lang.TargetAttribute) {
		a.Doc = "the compute service's EC2 URL; default: EC2_URL from the eucarc"
	})
	setAttr(s, "boot", func(a *lang.TargetAttribute) {
		a.Enum = []string{BootBIOS, BootHybrid, BootNone}
		a.Doc = "bios or hybrid: an EBS-backed HVM EMI from a disk with those boot loaders (Eucalyptus boots HVM instances from a BIOS); " +
			"none: an instance-store EMI of the root file system with its kernel and initrd as EKI and ERI, bundled as euca-bundle-image does"
	})
	setAttr(s, "name", func(a *lang.TargetAttribute) { a.Validate = validateAMIName })
	return s
}

// Spec implements Kind.
func (Eucalyptus) Spec(t *lang.Target) Spec {
	return &EucalyptusSpec{CloudSpec: s3CloudSpec(t, "tags"), Endpoint: t.Str("endpoint"),
		StorageEndpoint: t.Str("storage_endpoint"), Bucket: t.Str("bucket"), Prefix: t.Str("prefix")}
}

// ec2Anywhere lets cloud-init's Ec2 datasource read an EC2-compatible
// metadata service on machines it does not identify as AWS's.
func ec2Anywhere(cloud string) stages.FileEntry {
	return fileEntry("/etc/cloud/cloud.cfg.d/91_fgimg_ec2.cfg", 0o644, fmt.Sprintf(`# Written by fgimg for %s targets: the metadata service is EC2's
# (http://169.254.169.254/) on machines cloud-init does not identify as AWS's.
datasource:
  Ec2:
    strict_id: false
`, cloud))
}

// Adapt implements Adapter. An instance-store image has no ESP: its
// fstab names the root file system only.
func (Eucalyptus) Adapt(sp Spec, image digest.Digest) []stages.Spec {
	out := adaptCloud(image, "Eucalyptus", []string{"Ec2"}, ec2Anywhere("Eucalyptus"))
	if s, ok := sp.(*EucalyptusSpec); ok && s.Boot == BootNone {
		for _, st := range out {
			if d, ok := st.(*stages.DiskAdapt); ok {
				d.ESPUUID = ""
			}
		}
	}
	return out
}

// Boot implements Kind.
func (Eucalyptus) Boot(sp Spec) (*Boot, error) { return bootRaw[*EucalyptusSpec](sp, "eucalyptus") }

// Write implements Kind.
func (Eucalyptus) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	if s, ok := sp.(*EucalyptusSpec); ok && s.Boot == BootNone {
		arts, err := writeEucaBundles(ctx, in, s, dir)
		if err != nil {
			return nil, fmt.Errorf("eucalyptus target: %w", err)
		}
		return arts, nil
	}
	spec, w, err := writeRaw[*EucalyptusSpec](ctx, in, sp, dir, "eucalyptus")
	if err != nil {
		return nil, err
	}
	s := s3Step(w, &spec.CloudSpec, spec.Bucket, spec.Prefix)
	s.Options[regec2.OptArchitecture] = amiArch(in.Image.Arch)
	s.Options[regec2.OptENA] = "false"
	s.Options[regec2.OptRootDevice] = "/dev/sda"
	if spec.StorageEndpoint != "" {
		s.Options[regec2.OptStorageEndpoint] = spec.StorageEndpoint
	}
	steps := []register.Step{s}
	ec2URL, s3URL := eucaURLs(spec)
	region := `--region "${AWS_REGION:-us-east-1}"`
	script := ec2Script("into Eucalyptus with the aws CLI (euca2ools has no import-snapshot)", steps,
		"aws "+region+" --endpoint-url "+ec2URL, "aws "+region+" --endpoint-url "+s3URL)
	arts, err := writeRegistration(dir, in, "eucalyptus", &spec.CloudSpec, spec.Endpoint, steps, script, []Artifact{w.disk.Artifact})
	if err != nil {
		return nil, fmt.Errorf("eucalyptus target: %w", err)
	}
	return arts, nil
}

// s3CloudSchema is the schema of the kinds that upload a raw disk to
// S3 (ec2, eucalyptus, nimbus): the cloud attributes with the template's
// properties called props and a raw format only; with endpoint, an
// endpoint attribute.
func s3CloudSchema(props string, check func(k, v string) error, endpoint bool) *lang.TargetSchema {
	s := cloudSchema(check)
	setAttr(s, "properties", func(a *lang.TargetAttribute) { a.Name = props })
	setAttr(s, "format", func(a *lang.TargetAttribute) {
		a.Default, a.Enum, a.Doc = cty.StringVal("raw"), []string{"raw"}, "the disk's format: raw"
	})
	if endpoint {
		delete(s.Refused, "endpoint")
		s.Attributes = append(s.Attributes, lang.TargetAttribute{Name: "endpoint", Type: cty.String, Validate: validateEndpoint})
	}
	return s
}

// stagingSchema adds to s the bucket (required) and key prefix of the
// kinds that stage the disk in S3 before importing it (ec2, eucalyptus).
func stagingSchema(s *lang.TargetSchema) *lang.TargetSchema {
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "bucket", Type: cty.String, Validate: validateBucket,
			Doc: "the S3 bucket the disk is staged in (required)"},
		lang.TargetAttribute{Name: "prefix", Type: cty.String, Default: cty.StringVal("fgimg"), Validate: validateKeyPrefix,
			Doc: "the staged objects' key prefix: PREFIX/TARGET/DIGEST.raw"},
	)
	disk := s.Check
	s.Check = func(v map[string]cty.Value) []lang.TargetProblem {
		var out []lang.TargetProblem
		if disk != nil {
			out = disk(v)
		}
		if b, ok := v["bucket"]; !ok || b.IsKnown() && b.IsNull() {
			out = append(out, lang.TargetProblem{Attribute: "bucket", Summary: "Missing bucket",
				Detail: "The disk is staged in S3 before it is imported: set bucket to a bucket the credentials can write."})
		}
		return out
	}
	return s
}

// rawSpec is the spec of a kind that writes a raw disk through
// writeCloud (ec2, eucalyptus, nimbus).
type rawSpec interface {
	Spec
	cloud() *CloudSpec
}

func (s *CloudSpec) cloud() *CloudSpec { return s }

// bootRaw is the Boot of a rawSpec kind.
func bootRaw[T rawSpec](sp Spec, kind string) (*Boot, error) {
	spec, err := specAs[T](sp, kind)
	if err != nil {
		return nil, err
	}
	return spec.cloud().boot(MediaTypeRawDisk, "raw")
}

// writeRaw starts the Write of a rawSpec kind: its spec, and its disk
// written into dir.
func writeRaw[T rawSpec](ctx context.Context, in *Input, sp Spec, dir, kind string) (T, *cloudWrite, error) {
	spec, err := specAs[T](sp, kind)
	if err != nil {
		return spec, nil, err
	}
	w, err := writeCloud(ctx, in, spec.cloud(), dir, false)
	if err != nil {
		return spec, nil, fmt.Errorf("%s target: %w", kind, err)
	}
	return spec, w, nil
}

// setAttr changes the schema's attribute name.
func setAttr(s *lang.TargetSchema, name string, f func(*lang.TargetAttribute)) {
	for i := range s.Attributes {
		if s.Attributes[i].Name == name {
			f(&s.Attributes[i])
			return
		}
	}
	panic("targets: no attribute " + name)
}

// s3CloudSpec reads the cloud attributes, the template's properties
// from props.
func s3CloudSpec(t *lang.Target, props string) CloudSpec {
	s := cloudSpec(t)
	s.Properties = t.StrMap(props)
	return s
}

func slicesHasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// s3Step is the disk step of a kind that stages it in S3: the image's
// name carries the disk's digest (names are unique per account or
// region, and a changed image must not take the old one's), the
// object's key is PREFIX/TARGET/DIGEST.raw.
func s3Step(w *cloudWrite, spec *CloudSpec, bucket, prefix string) register.Step {
	hex := w.disk.digest.Encoded()
	s := cloudStep("disk", w.disk, spec.Name+"-"+hex[:12], spec)
	s.Format = "raw"
	key := spec.Target + "/" + hex + ".raw"
	if prefix != "" {
		key = strings.Trim(prefix, "/") + "/" + key
	}
	s.Options = map[string]string{regec2.OptBucket: bucket, regec2.OptKey: key}
	mergeTemplate(&s, spec)
	return s
}

// ec2Script is register.sh for the EC2 path: the aws CLI's s3 cp,
// ec2 import-snapshot, wait, register-image and create-tags, with aws
// (the CLI with its region and endpoint arguments) for EC2 and awsS3
// for S3.
func ec2Script(what string, steps []register.Step, aws, awsS3 string) string {
	var b strings.Builder
	b.WriteString(scriptHead(what, steps))
	for _, s := range steps {
		o := s.Options
		object := "s3://" + o[regec2.OptBucket] + "/" + o[regec2.OptKey]
		tags := jsonTags(s.Properties, map[string]string{regec2.TagObject: object})
		fmt.Fprintf(&b, "\n%s s3 cp %s %s \\\n\t--metadata %s\n", awsS3, shquote.Quote(s.Artifact), shquote.Quote(object),
			shquote.Quote(regec2.MetaDigest+"="+string(s.Digest)))
		container, _ := json.Marshal(map[string]any{"Format": strings.ToUpper(s.Format),
			"UserBucket": map[string]string{"S3Bucket": o[regec2.OptBucket], "S3Key": o[regec2.OptKey]}})
		fmt.Fprintf(&b, "task=$(%s ec2 import-snapshot \\\n\t--description %s \\\n\t--disk-container %s \\\n\t--query ImportTaskId --output text)\n",
			aws, shquote.Quote("fgimg "+s.Properties[register.PropTarget]+" "+string(s.Digest)), shquote.Quote(string(container)))
		fmt.Fprintf(&b, "%s ec2 wait snapshot-imported --import-task-ids \"$task\"\n", aws)
		fmt.Fprintf(&b, "snap=$(%s ec2 describe-import-snapshot-tasks --import-task-ids \"$task\" \\\n\t--query 'ImportSnapshotTasks[0].SnapshotTaskDetail.SnapshotId' --output text)\n", aws)
		root := o[regec2.OptRootDevice]
		fmt.Fprintf(&b, "ami=$(%s ec2 register-image \\\n\t--name %s \\\n\t--architecture %s --virtualization-type hvm \\\n\t--root-device-name %s \\\n",
			aws, shquote.Quote(s.Name), shquote.Quote(o[regec2.OptArchitecture]), shquote.Quote(root))
		fmt.Fprintf(&b, "\t--block-device-mappings %s\"$snap\"%s \\\n",
			shquote.Quote(`[{"DeviceName":"`+root+`","Ebs":{"DeleteOnTermination":true,"VolumeType":"gp3","SnapshotId":"`),
			shquote.Quote(`"}}]`))
		if o[regec2.OptENA] == "true" {
			b.WriteString("\t--ena-support \\\n")
		}
		if m := o[regec2.OptBootMode]; m != "" {
			fmt.Fprintf(&b, "\t--boot-mode %s \\\n", shquote.Quote(m))
		}
		fmt.Fprintf(&b, "\t--tag-specifications %s \\\n\t--query ImageId --output text)\n",
			shquote.Quote(`[{"ResourceType":"image","Tags":`+tags+`}]`))
		fmt.Fprintf(&b, "%s ec2 create-tags --resources \"$snap\" --tags %s\n", aws, shquote.Quote(jsonTags(s.Properties, nil)))
		fmt.Fprintf(&b, "echo \"%s: image $ami (snapshot $snap)\"\n", s.ID)
	}
	return b.String()
}

// jsonTags is tags as the aws CLI takes them in JSON, sorted.
func jsonTags(props, extra map[string]string) string {
	type tag struct{ Key, Value string }
	var out []tag
	all := map[string]string{}
	for k, v := range props {
		all[k] = v
	}
	for k, v := range extra {
		all[k] = v
	}
	for _, k := range sortedKeys(all) {
		out = append(out, tag{k, all[k]})
	}
	b, _ := json.Marshal(out)
	return string(b)
}

// amiNameRE is what EC2 takes as an AMI's name; 13 bytes of the 128 are
// the "-DIGEST" s3Step adds.
var amiNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9()\[\] ./\-'@_]{3,115}$`) })

func validateAMIName(v cty.Value) error {
	if !amiNameRE().MatchString(v.AsString()) {
		return fmt.Errorf("%q is not an AMI name: 3 to 115 letters, digits, spaces and ( ) [ ] . / - ' @ _ (fgimg adds -DIGEST, up to EC2's 128)", v.AsString())
	}
	return nil
}

var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)

func validateRegion(v cty.Value) error {
	if !regionRE.MatchString(v.AsString()) {
		return fmt.Errorf("%q is not an AWS region, such as us-east-1 or eu-west-3", v.AsString())
	}
	return nil
}

var bucketRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`) })

func validateBucket(v cty.Value) error {
	if !bucketRE().MatchString(v.AsString()) {
		return fmt.Errorf("%q is not an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens", v.AsString())
	}
	return nil
}

func validateKeyPrefix(v cty.Value) error {
	p := v.AsString()
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) || strings.Contains(p, "//") || strings.Contains(p, "..") {
		return fmt.Errorf("%q is not a key prefix: no control characters, // or ..", p)
	}
	return nil
}

func validateEndpoint(v cty.Value) error {
	u, err := url.Parse(v.AsString())
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "cumulus") {
		return fmt.Errorf("%q is not an endpoint URL, such as https://cloud.example.org:8773/services/compute", v.AsString())
	}
	if u.User != nil {
		return fmt.Errorf("an endpoint never holds credentials: fgimg register takes them from the environment")
	}
	return nil
}

// checkEC2Tag checks a template's tag as EC2 takes it.
func checkEC2Tag(k, v string) error {
	switch {
	case len(k) > 128:
		return fmt.Errorf("tag %q: keys are at most 128 characters", k)
	case len(v) > 256:
		return fmt.Errorf("tag %q: values are at most 256 characters", k)
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return fmt.Errorf("tag %q: the aws: prefix is AWS's own", k)
	}
	return nil
}
