package nimbus

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/s3test"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
)

// TestRegister registers into a Cumulus stand-in (versitygw: Cumulus
// is S3's REST API) with the repository and keys from a cloud-client
// cloud.properties, as a Nimbus user has them.
func TestRegister(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "repo")
	home := t.TempDir()
	props := filepath.Join(home, "cloud.properties")
	host := strings.TrimPrefix(s.Endpoint, "http://")
	os.WriteFile(props, []byte("# cloud-client\nvws.repository="+host+"\nvws.repository.type=cumulus\n"+
		"vws.repository.canonicalid=0f3c-user\nvws.repository.s3id="+s.AccessKey+"\nvws.repository.s3key="+s.SecretKey+"\n"), 0o600)
	for k, v := range map[string]string{"HOME": home, "NIMBUS_CLOUD_PROPERTIES": props, "AWS_ACCESS_KEY_ID": "", "AWS_REGION": "",
		"AWS_CONFIG_FILE": filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(home, "none"), "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
	out := t.TempDir()
	build := func(seed uint64) register.File {
		raw := filepath.Join(t.TempDir(), "disk.raw")
		registertest.Random(t, raw, 2<<20, seed)
		f := register.File{Target: "grid", Kind: "nimbus", Image: "base", Cloud: s.Endpoint, Steps: []register.Step{{
			ID: "disk", Artifact: "disk.raw", Format: "raw", Name: "grid-" + string(rune('a'+seed)),
			Properties: map[string]string{"fgimg_image": "base", "site": "uc"},
			Options:    map[string]string{OptBucket: "repo", OptBaseKey: "VMS"},
		}}}
		return registertest.Write(t, out, f, map[string]string{"disk.raw": raw})
	}
	run := func(o register.Options) (register.Result, string) {
		var log bytes.Buffer
		o.Out, o.Targets, o.Log = out, []string{"grid"}, &log
		o.Open = func(ctx context.Context, f *register.File) (register.Cloud, error) { return Open(ctx, f) }
		o.Retry = register.Retry{Attempts: 1, First: time.Millisecond}
		return register.Run(context.Background(), o)[0], log.String()
	}
	f1 := build(1)
	obj := filepath.Join(s.Dir, "repo", "VMS", "0f3c-user", "grid-b")
	res, log := run(register.Options{DryRun: true})
	if res.Err != nil || !strings.Contains(log, `+ upload disk.raw (2.0 MiB) as "grid-b"`) {
		t.Fatalf("dry run: %v\n%s", res.Err, log)
	}
	if _, err := os.Stat(obj); !os.IsNotExist(err) {
		t.Fatal("a dry run uploaded")
	}
	res, log = run(register.Options{})
	if res.Err != nil {
		t.Fatalf("register: %v\n%s", res.Err, log)
	}
	// Where cloud-client --run --name grid-b looks, with the digest in
	// the metadata.
	o, found, err := s.Client(t).Stat(context.Background(), "repo", "VMS/0f3c-user/grid-b")
	if err != nil || !found || o.Metadata["fgimg-digest"] != string(f1.Steps[0].Digest) || o.Metadata["fgimg-target"] != "grid" || o.Metadata["site"] != "uc" {
		t.Fatalf("the image in Cumulus: %+v %v %v", o, found, err)
	}
	before, _ := os.Stat(obj)
	start := time.Now()
	res, log = run(register.Options{})
	t.Logf("no-op register: %.3fs", time.Since(start).Seconds())
	after, _ := os.Stat(obj)
	if res.Err != nil || !strings.Contains(log, "= skip") || strings.Contains(log, "+ upload") || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("second register: %v\n%s", res.Err, log)
	}
	if len(res.Registrations) != 1 || res.Registrations[0].ImageID != "VMS/0f3c-user/grid-b" {
		t.Errorf("registrations: %+v", res.Registrations)
	}

	// A changed image is a new one; the old is removed only with replace.
	build(2)
	if res, log = run(register.Options{}); res.Err != nil {
		t.Fatalf("changed: %v\n%s", res.Err, log)
	}
	if _, err := os.Stat(obj); err != nil {
		t.Fatalf("the old image went without replace: %v", err)
	}
	res, log = run(register.Options{Replace: true})
	if res.Err != nil || !strings.Contains(log, "~ retire image VMS/0f3c-user/grid-b") {
		t.Fatalf("replace: %v\n%s", res.Err, log)
	}
	if _, err := os.Stat(obj); !os.IsNotExist(err) {
		t.Errorf("the replaced image is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "repo", "VMS", "0f3c-user", "grid-c")); err != nil {
		t.Errorf("the new image: %v", err)
	}

	// Without a canonical ID, register says where to put it.
	os.WriteFile(props, []byte("vws.repository="+host+"\n"), 0o600)
	res, _ = run(register.Options{DryRun: true})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "vws.repository.canonicalid") {
		t.Errorf("no canonical ID: %v", res.Err)
	}
	// With the repository down, a clear error.
	t.Setenv("NIMBUS_CANONICAL_ID", "0f3c-user")
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	s.Stop()
	res, _ = run(register.Options{})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "listing images") || !strings.Contains(res.Err.Error(), host) {
		t.Errorf("repository down: %v", res.Err)
	}
}
