package targets

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/register"
	regec2 "github.com/fgimg/fgimg/register/ec2"
)

// MediaTypeRootFS is a partitionless ext4 file system image.
const MediaTypeRootFS = "application/vnd.fgimg.rootfs.ext4"

// eucaURLs are the compute and object storage endpoints as register.sh
// passes them: the target's, else the eucarc's.
func eucaURLs(spec *EucalyptusSpec) (ec2URL, s3URL string) {
	ec2URL, s3URL = `"${EC2_URL:?source the cloud's eucarc}"`, `"${S3_URL:?source the cloud's eucarc}"`
	if spec.Endpoint != "" {
		ec2URL = shquote.Quote(spec.Endpoint)
	}
	if spec.StorageEndpoint != "" {
		s3URL = shquote.Quote(spec.StorageEndpoint)
	}
	return ec2URL, s3URL
}

// writeEucaBundles writes an instance-store eucalyptus target: the
// kernel, the initrd and root.img, and the steps that bundle and
// register them as EKI, ERI and EMI. The bundles are made at register
// time: they are encrypted with a random key for the cloud's
// certificate and signed with the user's key, which a build never
// holds.
func writeEucaBundles(ctx context.Context, in *Input, spec *EucalyptusSpec, dir string) ([]Artifact, error) {
	kernel, initrd, err := writeKernel(in, dir, "the root file system")
	if err != nil {
		return nil, err
	}
	rootFS := Artifact{Path: "root.img", MediaType: MediaTypeRootFS}
	if _, err := BuildRootFS(ctx, in, &spec.DiskSpec, filepath.Join(dir, rootFS.Path)); err != nil {
		return nil, err
	}
	root, err := measure(dir, rootFS)
	if err != nil {
		return nil, err
	}
	arch := amiArch(in.Image.Arch)
	step := func(id, typ, format, suffix string, a *cloudArtifact) register.Step {
		hex := a.digest.Encoded()
		// EC2 takes names of up to 128 characters.
		base := spec.Name
		if n := 128 - len(suffix) - 13; len(base) > n {
			base = base[:n]
		}
		s := cloudStep(id, a, base+suffix+"-"+hex[:12], &spec.CloudSpec)
		s.Format = format
		key := spec.Target + "/" + hex + "/" + a.Path + ".manifest.xml"
		if spec.Prefix != "" {
			key = strings.Trim(spec.Prefix, "/") + "/" + key
		}
		s.Options = map[string]string{regec2.OptBucket: spec.Bucket, regec2.OptKey: key,
			regec2.OptArchitecture: arch, regec2.OptImageType: typ}
		if spec.StorageEndpoint != "" {
			s.Options[regec2.OptStorageEndpoint] = spec.StorageEndpoint
		}
		mergeTemplate(&s, &spec.CloudSpec)
		return s
	}
	disk := step("disk", eucabundle.TypeMachine, "emi", "", root)
	disk.Refs = map[string]string{regec2.PropKernelID: "kernel", regec2.PropRamdiskID: "ramdisk"}
	steps := []register.Step{
		step("kernel", eucabundle.TypeKernel, "eki", "-kernel", kernel),
		step("ramdisk", eucabundle.TypeRamdisk, "eri", "-ramdisk", initrd),
		disk,
	}
	arts := []Artifact{kernel.Artifact, initrd.Artifact, root.Artifact}
	return writeRegistration(dir, in, "eucalyptus", &spec.CloudSpec, spec.Endpoint, steps, eucaBundleScript(spec, steps), arts)
}

// eucaBundleScript is register.sh for instance-store images: each step
// as euca-bundle-image, euca-upload-bundle, euca-register and
// euca-create-tags, the kernel's and ramdisk's IDs captured for the
// machine image's.
func eucaBundleScript(spec *EucalyptusSpec, steps []register.Step) string {
	var b strings.Builder
	b.WriteString(scriptHead("into Eucalyptus as instance-store images with euca2ools", steps))
	ec2URL, s3URL := eucaURLs(spec)
	b.WriteString("# euca2ools take the certificates, key and account from the eucarc:\n")
	b.WriteString("# EUCALYPTUS_CERT, EC2_CERT, EC2_PRIVATE_KEY, EC2_USER_ID, EC2_ACCESS_KEY, EC2_SECRET_KEY.\n")
	b.WriteString(": \"${EUCALYPTUS_CERT:?source the cloud's eucarc}\" \"${EC2_CERT:?}\" \"${EC2_PRIVATE_KEY:?}\" \"${EC2_USER_ID:?}\"\n")
	fmt.Fprintf(&b, "ec2=%s\ns3=%s\n", ec2URL, s3URL)
	b.WriteString("tmp=$(mktemp -d)\ntrap 'rm -rf \"$tmp\"' EXIT\n")
	for _, s := range steps {
		o := s.Options
		folder := o[regec2.OptBucket] + "/" + strings.TrimSuffix(o[regec2.OptKey], "/"+s.Artifact+".manifest.xml")
		fmt.Fprintf(&b, "\nmkdir \"$tmp/%s\"\n", s.ID)
		fmt.Fprintf(&b, "euca-bundle-image -i %s -r %s -d \"$tmp/%s\"", shquote.Quote(s.Artifact), shquote.Quote(o[regec2.OptArchitecture]), s.ID)
		switch o[regec2.OptImageType] {
		case eucabundle.TypeKernel:
			b.WriteString(" --kernel true")
		case eucabundle.TypeRamdisk:
			b.WriteString(" --ramdisk true")
		default:
			b.WriteString(" --kernel \"$kernel_id\" --ramdisk \"$ramdisk_id\"")
		}
		b.WriteString("\n")
		fmt.Fprintf(&b, "euca-upload-bundle -U \"$s3\" -b %s -m \"$tmp/%s/%s.manifest.xml\"\n", shquote.Quote(folder), s.ID, s.Artifact)
		fmt.Fprintf(&b, "%s_id=$(euca-register -U \"$ec2\" %s \\\n\t-n %s -a %s", s.ID, shquote.Quote(o[regec2.OptBucket]+"/"+o[regec2.OptKey]),
			shquote.Quote(s.Name), shquote.Quote(o[regec2.OptArchitecture]))
		if o[regec2.OptImageType] == eucabundle.TypeMachine {
			b.WriteString(" \\\n\t--kernel \"$kernel_id\" --ramdisk \"$ramdisk_id\"")
		}
		b.WriteString(" | awk '$1 == \"IMAGE\" { print $2 }')\n")
		fmt.Fprintf(&b, "euca-create-tags -U \"$ec2\" \"$%s_id\"", s.ID)
		for _, k := range sortedKeys(s.Properties) {
			fmt.Fprintf(&b, " \\\n\t--tag %s", shquote.Quote(k+"="+s.Properties[k]))
		}
		fmt.Fprintf(&b, " \\\n\t--tag %s", shquote.Quote(regec2.TagObject+"=s3://"+o[regec2.OptBucket]+"/"+o[regec2.OptKey]))
		if o[regec2.OptImageType] == eucabundle.TypeMachine {
			b.WriteString(" \\\n\t--tag \"kernel_id=$kernel_id\" --tag \"ramdisk_id=$ramdisk_id\"")
		}
		fmt.Fprintf(&b, "\necho \"%s: image $%s_id\"\n", s.ID, s.ID)
	}
	return b.String()
}
