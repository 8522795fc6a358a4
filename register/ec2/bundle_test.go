package ec2

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
)

// buildBundles writes target web as the eucalyptus writer does with
// boot = "none": a kernel, a ramdisk and a root file system, each an
// instance-store bundle, the machine image referring to the other two.
// The artifacts' bytes are those of seeds: kernel, ramdisk, root.
func (w *world) buildBundles(t *testing.T, seeds [3]uint64) register.File {
	dir := t.TempDir()
	files := map[string]string{}
	var steps []register.Step
	for i, s := range []struct{ id, artifact, typ string }{
		{"kernel", "vmlinuz", eucabundle.TypeKernel}, {"ramdisk", "initrd.img", eucabundle.TypeRamdisk}, {"disk", "root.img", eucabundle.TypeMachine},
	} {
		p := filepath.Join(dir, s.artifact)
		registertest.Random(t, p, int64(1<<20+i*1000), seeds[i])
		files[s.artifact] = p
		steps = append(steps, register.Step{ID: s.id, Artifact: s.artifact, Name: "web-" + s.id, Format: s.typ,
			Properties: map[string]string{"fgimg_image": "base"},
			Options:    map[string]string{OptArchitecture: "x86_64", OptBucket: "stage", OptImageType: s.typ}})
	}
	steps[2].Refs = map[string]string{PropKernelID: "kernel", PropRamdiskID: "ramdisk"}
	f := registertest.Write(t, w.out, register.File{Target: "web", Kind: "eucalyptus", Image: "base", Steps: steps}, files)
	for i := range f.Steps {
		hex := f.Steps[i].Digest.Encoded()
		f.Steps[i].Name += "-" + hex[:12]
		f.Steps[i].Options[OptKey] = "fgimg/web/" + hex + "/" + f.Steps[i].Artifact + ".manifest.xml"
	}
	return registertest.Write(t, w.out, f, files)
}

func eucalyptusEnv(t *testing.T, w *world) {
	ec2URL := os.Getenv("AWS_ENDPOINT_URL_EC2")
	for k, v := range map[string]string{"AWS_ENDPOINT_URL_EC2": "", "AWS_ENDPOINT_URL_S3": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
		"EC2_URL": ec2URL, "S3_URL": w.s3.Endpoint, "EC2_ACCESS_KEY": w.s3.AccessKey, "EC2_SECRET_KEY": w.s3.SecretKey} {
		t.Setenv(k, v)
	}
	cloud, user, _ := eucabundle.UseTestCredentials(t)
	// The cloud verifies with the user's certificate and unbundles with
	// its own key.
	w.fake.UserCert, w.fake.CloudKey = user, cloud
}

// TestInstanceStore registers EKI, ERI and EMI from bundles the cloud
// verifies and unbundles, skips them the second time, and retires them
// with their bundles' objects.
func TestInstanceStore(t *testing.T) {
	w := newWorld(t)
	eucalyptusEnv(t, w)
	f1 := w.buildBundles(t, [3]uint64{1, 2, 3})
	res, log := w.register(t, register.Options{})
	if res.Err != nil {
		t.Fatalf("register: %v\n%s", res.Err, log)
	}
	ims := w.fake.Images()
	byType := map[string]string{}
	for _, im := range ims {
		byType[im.Type] = im.ID
	}
	if len(ims) != 3 || byType["kernel"] == "" || byType["ramdisk"] == "" || byType["machine"] == "" {
		t.Fatalf("images: %+v", ims)
	}
	for _, im := range ims {
		step := map[string]register.Step{}
		for _, s := range f1.Steps {
			step[s.Options[OptImageType]] = s
		}
		s := step[im.Type]
		if im.Location != "stage/"+s.Options[OptKey] || im.Tags["fgimg_digest"] != string(s.Digest) || im.Tags[TagObject] != "s3://stage/"+s.Options[OptKey] {
			t.Errorf("%s image: %+v", im.Type, im)
		}
		if im.Type == "machine" && (im.Kernel != byType["kernel"] || im.Ramdisk != byType["ramdisk"] ||
			im.Tags[PropKernelID] != byType["kernel"] || im.Tags[PropRamdiskID] != byType["ramdisk"]) {
			t.Errorf("the EMI does not refer to its EKI and ERI: %+v", im)
		}
	}
	// The manifest's machine_configuration names them too (the signed
	// part of the manifest, which the cloud trusts).
	disk := f1.Steps[2]
	raw, err := os.ReadFile(filepath.Join(w.s3.Dir, "stage", disk.Options[OptKey]))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := eucabundle.Parse(raw); err != nil || m.Machine.KernelID != byType["kernel"] || m.Machine.RamdiskID != byType["ramdisk"] {
		t.Errorf("manifest: %v %+v", err, m)
	}

	res, log = w.register(t, register.Options{})
	if res.Err != nil || strings.Contains(log, "+ upload") || w.fake.Calls("RegisterImage") != 3 {
		t.Fatalf("second register: %v\n%s", res.Err, log)
	}

	// A changed root file system: a new EMI (on the same EKI and ERI),
	// the old one retired with its bundle on replace.
	f2 := w.buildBundles(t, [3]uint64{1, 2, 9})
	res, log = w.register(t, register.Options{Replace: true})
	if res.Err != nil || !strings.Contains(log, "~ retire image "+byType["machine"]) {
		t.Fatalf("replace: %v\n%s", res.Err, log)
	}
	if n := w.fake.Calls("RegisterImage"); n != 4 {
		t.Errorf("%d RegisterImage calls, want 4: the kernel and ramdisk are the same", n)
	}
	old := filepath.Join(w.s3.Dir, "stage", "fgimg", "web", disk.Digest.Encoded())
	if left, _ := filepath.Glob(filepath.Join(old, "*")); len(left) != 0 {
		t.Errorf("the retired EMI's bundle is still there: %v", left)
	}
	if _, err := os.Stat(filepath.Join(w.s3.Dir, "stage", f2.Steps[2].Options[OptKey])); err != nil {
		t.Errorf("the new EMI's manifest: %v", err)
	}
}

// TestInstanceStoreNeedsCertificates names the variable that is missing.
func TestInstanceStoreNeedsCertificates(t *testing.T) {
	w := newWorld(t)
	eucalyptusEnv(t, w)
	w.buildBundles(t, [3]uint64{1, 2, 3})
	t.Setenv("EUCALYPTUS_CERT", "")
	res, _ := w.register(t, register.Options{})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "EUCALYPTUS_CERT") {
		t.Fatalf("without EUCALYPTUS_CERT: %v", res.Err)
	}
	if n := len(w.fake.Images()); n != 0 {
		t.Errorf("%d images registered without the cloud's certificate", n)
	}
}
