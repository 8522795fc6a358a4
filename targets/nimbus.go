package targets

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/nimbus"
	"github.com/fgimg/fgimg/stages"
)

// Nimbus is the nimbus kind: the image adapted for Nimbus (cloud-init
// with the NoCloud datasource, then Ec2 for Nimbus's EC2-compatible
// metadata service: Nimbus's own context broker is dead upstream), its
// disk as a raw image, and the registration steps: the disk as an
// object in the Cumulus repository where cloud-client finds it
// (register/nimbus).
type Nimbus struct{}

// NimbusSpec is a nimbus target's hashed spec.
type NimbusSpec struct {
	CloudSpec
	Endpoint string `json:"endpoint,omitempty"` // "": cloud.properties' vws.repository
	Bucket   string `json:"bucket"`
	BaseKey  string `json:"base_key"`
}

// Kind implements Spec.
func (*NimbusSpec) Kind() string { return "nimbus" }

// Name implements Kind.
func (Nimbus) Name() string { return "nimbus" }

// Schema implements Kind.
func (Nimbus) Schema() *lang.TargetSchema {
	s := s3CloudSchema("metadata", checkNimbusMeta, true)
	// cloud-client's repository layout: vws.repository.s3bucket and
	// .s3basekey, whose defaults these are.
	s.Attributes = append(s.Attributes,
		lang.TargetAttribute{Name: "bucket", Type: cty.String, Default: cty.StringVal("Repo"), Validate: validateCumulusBucket,
			Doc: "the repository's bucket (cloud-client's vws.repository.s3bucket)"},
		lang.TargetAttribute{Name: "base_key", Type: cty.String, Default: cty.StringVal("VMS"), Validate: validateKeyPrefix,
			Doc: "the images' base key (vws.repository.s3basekey): images are BASE_KEY/CANONICALID/NAME"},
	)
	setAttr(s, "endpoint", func(a *lang.TargetAttribute) {
		a.Doc = "the Cumulus repository, cumulus://HOST:PORT (HTTPS) or http(s)://HOST:PORT; default: vws.repository of cloud.properties"
	})
	setAttr(s, "boot", func(a *lang.TargetAttribute) {
		a.Enum = []string{BootBIOS, BootHybrid}
		a.Doc = "the disk's boot loaders: bios or hybrid (Nimbus's KVM and Xen HVM guests boot from a BIOS)"
	})
	setAttr(s, "name", func(a *lang.TargetAttribute) {
		a.Validate = func(v cty.Value) error {
			if err := validateCloudName(v); err != nil {
				return err
			}
			if strings.ContainsAny(v.AsString(), "/ ") {
				return fmt.Errorf("%q: a Nimbus image name is an object name: no / or spaces", v.AsString())
			}
			return nil
		}
	})
	return s
}

// Spec implements Kind.
func (Nimbus) Spec(t *lang.Target) Spec {
	return &NimbusSpec{CloudSpec: s3CloudSpec(t, "metadata"), Endpoint: t.Str("endpoint"), Bucket: t.Str("bucket"), BaseKey: t.Str("base_key")}
}

// Adapt implements Adapter: NoCloud first (a seed a site attaches),
// then the Ec2 datasource on Nimbus's metadata service.
func (Nimbus) Adapt(_ Spec, image digest.Digest) []stages.Spec {
	return adaptCloud(image, "Nimbus", []string{"NoCloud", "Ec2"}, ec2Anywhere("Nimbus"))
}

// Boot implements Kind.
func (Nimbus) Boot(sp Spec) (*Boot, error) { return bootRaw[*NimbusSpec](sp, "nimbus") }

// Write implements Kind.
func (Nimbus) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, w, err := writeRaw[*NimbusSpec](ctx, in, sp, dir, "nimbus")
	if err != nil {
		return nil, err
	}
	s := s3Step(w, &spec.CloudSpec, spec.Bucket, "")
	s.Options = map[string]string{nimbus.OptBucket: spec.Bucket, nimbus.OptBaseKey: spec.BaseKey}
	steps := []register.Step{s}
	arts, err := writeRegistration(dir, in, "nimbus", &spec.CloudSpec, spec.Endpoint, steps, nimbusScript(spec, s), []Artifact{w.disk.Artifact})
	if err != nil {
		return nil, fmt.Errorf("nimbus target: %w", err)
	}
	return arts, nil
}

// nimbusScript is register.sh: the disk copied into the repository
// with the aws CLI (cloud-client's --transfer names the image after
// the file and sets no metadata), then how to start it.
func nimbusScript(spec *NimbusSpec, s register.Step) string {
	var b strings.Builder
	b.WriteString(scriptHead("into Nimbus's Cumulus repository", []register.Step{s}))
	endpoint := `"https://${NIMBUS_REPOSITORY:?set it to cloud.properties' vws.repository (HOST:PORT)}"`
	if e := spec.Endpoint; e != "" {
		endpoint = shquote.Quote(strings.Replace(e, "cumulus://", "https://", 1))
	}
	var meta []string
	for k, v := range nimbus.Metadata(s.Properties) {
		meta = append(meta, k+"="+v)
	}
	sort.Strings(meta)
	fmt.Fprintf(&b, "\naws --endpoint-url %s s3 cp %s \\\n\t%s\"${NIMBUS_CANONICAL_ID:?set it to your Cumulus canonical ID}\"%s \\\n\t--metadata %s\n",
		endpoint, shquote.Quote(s.Artifact), shquote.Quote("s3://"+spec.Bucket+"/"+strings.Trim(spec.BaseKey, "/")+"/"),
		shquote.Quote("/"+s.Name), shquote.Quote(strings.Join(meta, ",")))
	fmt.Fprintf(&b, "echo %s\n", shquote.Quote("disk: start it with cloud-client.sh --run --name "+s.Name+" --hours 1"))
	return b.String()
}

// checkNimbusMeta checks a template's metadata entry as S3 carries it
// in a header: the aws CLI's --metadata takes KEY=VALUE pairs split at
// commas.
func checkNimbusMeta(k, v string) error {
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("metadata %q: keys are lower-case letters, digits, - and _", k)
		}
	}
	if strings.ContainsAny(v, ",\r\n") || len(v) > 1024 {
		return fmt.Errorf("metadata %q: values have no comma or line break and at most 1024 bytes", k)
	}
	return nil
}

func validateCumulusBucket(v cty.Value) error {
	b := v.AsString()
	if b == "" || len(b) > 255 || strings.ContainsAny(b, "/ ") {
		return fmt.Errorf("%q is not a bucket name", b)
	}
	return nil
}
