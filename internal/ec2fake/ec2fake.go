// Package ec2fake is a protocol-level fake of the Amazon EC2 Query API
// (version 2016-11-15), for testing fgimg's EC2 and Eucalyptus
// registration with the real aws-sdk-go-v2 client pointed at it. It was
// written from AWS's EC2 API reference and answers, in the API's XML,
// the actions image registration uses:
//
//   - DescribeImages (Owner, ImageId.N, Filter.N: name, state, tag-key,
//     tag:KEY), DescribeSnapshots (SnapshotId.N), and
//     DescribeImportSnapshotTasks (ImportTaskId.N, or every task);
//   - ImportSnapshot: reads the object the DiskContainer's UserBucket
//     names from a real S3 server (the one the test runs), so a missing
//     object or bucket fails the task, and checks the bytes are the
//     Format declared (VMDK and VHD by their magic); the task advances
//     pending → active → completed over Steps describes, and a snapshot
//     appears when it completes;
//   - RegisterImage from a snapshot (InvalidAMIName.Duplicate,
//     InvalidAMIName.Malformed, InvalidSnapshot.NotFound), the image
//     pending for one describe and then available;
//   - RegisterImage from a bundle (ImageLocation BUCKET/KEY of its
//     manifest, the instance-store path of euca2ools and the EC2 AMI
//     tools): the manifest must be in the S3 server and parse, its
//     signature verify with UserCert (the user's certificate, which the
//     cloud holds), and every part beside it match the manifest's SHA-1
//     (InvalidManifest otherwise, as EC2 answers); with CloudKey set the
//     bundle is also decrypted and unbundled, its image's digest and size
//     checked. The manifest's type makes the image an ami, aki or ari;
//     KernelId and RamdiskId must name an aki and an ari
//     (InvalidAMIID.NotFound);
//   - DeregisterImage, DeleteSnapshot (InvalidSnapshot.InUse while an
//     image refers to it), CreateTags;
//
// with the documented error codes (InvalidParameterValue,
// MissingParameter, InvalidAMIID.NotFound/Malformed,
// InvalidSnapshot.NotFound, TagLimitExceeded, AuthFailure,
// InvalidAction) in the <Response><Errors> envelope.
//
// What it does not emulate: an unbundled image is not kept (the bundle
// stays in S3 and nothing reads it again, where EC2 and Eucalyptus
// decrypt and cache it when an instance first starts); the manifest's
// <user> is not checked against the account, nor the user's
// certificate's validity dates or issuer; ImageLocation is read when the
// image is registered, not when it is launched. It checks that a request carries a SigV4
// Authorization header with the expected access key, not the
// signature itself (the S3 server it reads from does check SigV4); one
// account owns everything (Owner=self and Owner=ID are the same); no
// pagination (MaxResults and NextToken are ignored); no IAM (the
// vmimport role), KMS, regions or availability zones; DescribeImages
// filters other than those above are refused rather than ignored; the
// import does not convert or inspect file systems, and snapshots hold
// no data (their size is the object's, rounded up to GiB).
package ec2fake

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/internal/s3client"
)

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Owner is the account ID that owns every image and snapshot.
const Owner = "123456789012"

// Fake is an EC2 endpoint; serve it with httptest.NewServer.
type Fake struct {
	// AccessKey is the access key requests must be signed with.
	AccessKey string
	// Steps is how many DescribeImportSnapshotTasks calls a task takes
	// to complete (default 2).
	Steps int

	// UserCert is the certificate bundles' manifests must be signed
	// with; CloudKey, if set, the cloud's private key the fake unbundles
	// them with. A bundle is refused while UserCert is nil.
	UserCert *x509.Certificate
	CloudKey *rsa.PrivateKey

	s3 s3client.Config

	mu        sync.Mutex
	seq       int
	images    map[string]*image
	snapshots map[string]*snapshot
	tasks     map[string]*task
	taskOrder []string
	failNext  map[string]string // action → error code, once
	failTask  string            // the next import task fails with this message
	calls     map[string]int
}

type image struct {
	id, name, arch, root, bootMode, virt, description string
	location, imageType, kernel, ramdisk              string // from a bundle
	snapshot                                          string
	ena                                               bool
	describes                                         int
	created                                           time.Time
	tags                                              map[string]string
}

type snapshot struct {
	id   string
	size int64 // GiB
	tags map[string]string
}

type task struct {
	id, description, bucket, key, format string
	polls                                int
	status, message, snapshot            string
	size                                 int64
	fail                                 string
	tags                                 map[string]string
}

// New returns a fake whose imports read objects from the S3 server s3.
func New(accessKey string, s3 s3client.Config) *Fake {
	return &Fake{AccessKey: accessKey, s3: s3, Steps: 2,
		images: map[string]*image{}, snapshots: map[string]*snapshot{}, tasks: map[string]*task{},
		failNext: map[string]string{}, calls: map[string]int{}}
}

// FailNext makes the next call of action fail with the error code.
func (f *Fake) FailNext(action, code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[action] = code
}

// FailTask makes the next import task fail (status deleted) with msg,
// as VM Import does with a disk it cannot read.
func (f *Fake) FailTask(msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failTask = msg
}

// Calls reports how many times action was called.
func (f *Fake) Calls(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

// Image is an image as a test inspects it.
type Image struct {
	ID, Name, Snapshot, Architecture, BootMode, RootDevice string
	ENA                                                    bool
	Tags                                                   map[string]string
	// Of a bundle: its ImageLocation, type, kernel and ramdisk.
	Location, Type, Kernel, Ramdisk string
}

// Images lists the registered images, by ID.
func (f *Fake) Images() []Image {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Image
	for _, im := range f.images {
		out = append(out, Image{ID: im.id, Name: im.name, Snapshot: im.snapshot, Architecture: im.arch,
			BootMode: im.bootMode, RootDevice: im.root, ENA: im.ena, Tags: clone(im.tags),
			Location: im.location, Type: im.imageType, Kernel: im.kernel, Ramdisk: im.ramdisk})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Snapshots lists the snapshots' IDs with their tags.
func (f *Fake) Snapshots() map[string]map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]string{}
	for id, s := range f.snapshots {
		out[id] = clone(s.tags)
	}
	return out
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// apiError is an EC2 error response.
type apiError struct {
	status        int
	code, message string
}

func errf(code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

var credential = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/\d{8}/[^/]+/ec2/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$`)

func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("fake-%d", time.Now().UnixNano())
	if r.Method != http.MethodPost {
		writeError(w, reqID, &apiError{http.StatusBadRequest, "InvalidAction", "the Query API takes POST requests here"})
		return
	}
	m := credential.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil || r.Header.Get("X-Amz-Date") == "" {
		writeError(w, reqID, &apiError{http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"})
		return
	}
	if m[1] != f.AccessKey {
		writeError(w, reqID, &apiError{http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, reqID, errf("InvalidParameterValue", "%v", err))
		return
	}
	q := r.PostForm
	action := q.Get("Action")
	f.mu.Lock()
	f.calls[action]++
	code, fail := f.failNext[action]
	delete(f.failNext, action)
	f.mu.Unlock()
	if fail {
		st := http.StatusBadRequest
		if code == "InternalError" || code == "Unavailable" {
			st = http.StatusServiceUnavailable
		}
		writeError(w, reqID, &apiError{st, code, "injected by the test"})
		return
	}
	var body any
	var aerr *apiError
	switch action {
	case "DescribeImages":
		body, aerr = f.describeImages(q)
	case "DescribeSnapshots":
		body, aerr = f.describeSnapshots(q)
	case "ImportSnapshot":
		body, aerr = f.importSnapshot(r.Context(), q)
	case "DescribeImportSnapshotTasks":
		body, aerr = f.describeTasks(q)
	case "RegisterImage":
		body, aerr = f.registerImage(r.Context(), q)
	case "DeregisterImage":
		body, aerr = f.deregisterImage(q)
	case "DeleteSnapshot":
		body, aerr = f.deleteSnapshot(q)
	case "CreateTags":
		body, aerr = f.createTags(q)
	default:
		aerr = errf("InvalidAction", "The action %s is not valid for this web service.", action)
	}
	if aerr != nil {
		writeError(w, reqID, aerr)
		return
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	fmt.Fprintf(&buf, "<%sResponse xmlns=%q>\n<requestId>%s</requestId>\n", action, xmlns, reqID)
	enc := xml.NewEncoder(&buf)
	var err error
	if es, ok := body.(elems); ok {
		for _, e := range es {
			if err = enc.EncodeElement(e.v, xml.StartElement{Name: xml.Name{Local: e.name}}); err != nil {
				break
			}
		}
	} else {
		err = enc.Encode(body)
	}
	if err == nil {
		err = enc.Flush()
	}
	if err != nil {
		writeError(w, reqID, &apiError{http.StatusInternalServerError, "InternalError", err.Error()})
		return
	}
	fmt.Fprintf(&buf, "\n</%sResponse>\n", action)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, reqID string, e *apiError) {
	var msg bytes.Buffer
	xml.EscapeText(&msg, []byte(e.message))
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, "%s<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>",
		xml.Header, e.code, msg.String(), reqID)
}

// list reads a Query API list: prefix.1, prefix.2, ...
func list(q map[string][]string, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := q[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

func get(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// tagSpecs reads TagSpecification.N for resourceType; other types are
// refused, as AWS does.
func tagSpecs(q map[string][]string, allowed ...string) (map[string]map[string]string, *apiError) {
	out := map[string]map[string]string{}
	for i := 1; ; i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		rt := get(q, p+".ResourceType")
		if rt == "" {
			return out, nil
		}
		if !slices.Contains(allowed, rt) {
			return nil, errf("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		tags, err := readTags(q, p+".Tag")
		if err != nil {
			return nil, err
		}
		out[rt] = tags
	}
}

func readTags(q map[string][]string, prefix string) (map[string]string, *apiError) {
	tags := map[string]string{}
	for j := 1; ; j++ {
		k, ok := q[prefix+"."+strconv.Itoa(j)+".Key"]
		if !ok {
			break
		}
		key, val := k[0], get(q, prefix+"."+strconv.Itoa(j)+".Value")
		switch {
		case key == "" || len(key) > 128:
			return nil, errf("InvalidParameterValue", "Tag keys must be between 1 and 128 characters: %q", key)
		case len(val) > 256:
			return nil, errf("InvalidParameterValue", "Tag values must be at most 256 characters: %q", key)
		case strings.HasPrefix(strings.ToLower(key), "aws:"):
			return nil, errf("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		}
		tags[key] = val
	}
	if len(tags) > 50 {
		return nil, errf("TagLimitExceeded", "The maximum number of tags per resource is 50")
	}
	return tags, nil
}

func (f *Fake) newID(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s-%017x", prefix, f.seq)
}

// XML shapes of the responses.
type (
	tagXML struct {
		Key   string `xml:"key"`
		Value string `xml:"value"`
	}
	ebsXML struct {
		SnapshotID          string `xml:"snapshotId"`
		VolumeSize          int64  `xml:"volumeSize"`
		DeleteOnTermination bool   `xml:"deleteOnTermination"`
		VolumeType          string `xml:"volumeType"`
	}
	bdmXML struct {
		DeviceName string `xml:"deviceName"`
		Ebs        ebsXML `xml:"ebs"`
	}
	imageXML struct {
		XMLName            xml.Name `xml:"item"`
		ImageID            string   `xml:"imageId"`
		ImageLocation      string   `xml:"imageLocation"`
		ImageState         string   `xml:"imageState"`
		ImageOwnerID       string   `xml:"imageOwnerId"`
		CreationDate       string   `xml:"creationDate"`
		IsPublic           bool     `xml:"isPublic"`
		Architecture       string   `xml:"architecture"`
		ImageType          string   `xml:"imageType"`
		Name               string   `xml:"name"`
		Description        string   `xml:"description,omitempty"`
		RootDeviceType     string   `xml:"rootDeviceType"`
		RootDeviceName     string   `xml:"rootDeviceName"`
		BlockDeviceMapping []bdmXML `xml:"blockDeviceMapping>item"`
		VirtualizationType string   `xml:"virtualizationType"`
		TagSet             []tagXML `xml:"tagSet>item"`
		EnaSupport         bool     `xml:"enaSupport"`
		BootMode           string   `xml:"bootMode,omitempty"`
		KernelID           string   `xml:"kernelId,omitempty"`
		RamdiskID          string   `xml:"ramdiskId,omitempty"`
	}
	taskDetailXML struct {
		Description   string  `xml:"description,omitempty"`
		DiskImageSize float64 `xml:"diskImageSize,omitempty"`
		Format        string  `xml:"format"`
		Progress      string  `xml:"progress,omitempty"`
		SnapshotID    string  `xml:"snapshotId,omitempty"`
		Status        string  `xml:"status"`
		StatusMessage string  `xml:"statusMessage,omitempty"`
		UserBucket    struct {
			S3Bucket string `xml:"s3Bucket"`
			S3Key    string `xml:"s3Key"`
		} `xml:"userBucket"`
	}
	taskXML struct {
		XMLName            xml.Name      `xml:"item"`
		ImportTaskID       string        `xml:"importTaskId"`
		Description        string        `xml:"description,omitempty"`
		SnapshotTaskDetail taskDetailXML `xml:"snapshotTaskDetail"`
		TagSet             []tagXML      `xml:"tagSet>item"`
	}
	snapshotXML struct {
		XMLName    xml.Name `xml:"item"`
		SnapshotID string   `xml:"snapshotId"`
		Status     string   `xml:"status"`
		OwnerID    string   `xml:"ownerId"`
		VolumeSize int64    `xml:"volumeSize"`
		Progress   string   `xml:"progress"`
		TagSet     []tagXML `xml:"tagSet>item"`
	}
	returnXML struct {
		XMLName xml.Name `xml:"return"`
		Value   bool     `xml:",chardata"`
	}
)

func tagList(m map[string]string) []tagXML {
	var out []tagXML
	for _, k := range sortedKeys(m) {
		out = append(out, tagXML{k, m[k]})
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var amiID = regexp.MustCompile(`^a[mkr]i-[0-9a-f]{8,17}$`)

func (f *Fake) describeImages(q map[string][]string) (any, *apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range list(q, "Owner") {
		if o != "self" && o != Owner {
			return struct {
				XMLName xml.Name `xml:"imagesSet"`
			}{}, nil
		}
	}
	ids := list(q, "ImageId")
	for _, id := range ids {
		if !amiID.MatchString(id) {
			return nil, errf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", id)
		}
		if f.images[id] == nil {
			return nil, errf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
	}
	type filter struct {
		name   string
		values []string
	}
	var filters []filter
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		n := get(q, p+".Name")
		if n == "" {
			break
		}
		if n != "name" && n != "state" && n != "tag-key" && !strings.HasPrefix(n, "tag:") {
			return nil, errf("InvalidParameterValue", "The filter '%s' is not supported by this fake", n)
		}
		filters = append(filters, filter{n, list(q, p+".Value")})
	}
	var items []imageXML
	for _, id := range sortedImageIDs(f.images) {
		im := f.images[id]
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		state := "available"
		if im.describes == 0 {
			state = "pending"
		}
		ok := true
		for _, fl := range filters {
			var v string
			has := true
			switch {
			case fl.name == "name":
				v = im.name
			case fl.name == "state":
				v = state
			case fl.name == "tag-key":
				_, has = im.tags[fl.values[0]]
				v = fl.values[0]
			default:
				v, has = im.tags[strings.TrimPrefix(fl.name, "tag:")]
			}
			ok = ok && has && slices.ContainsFunc(fl.values, func(p string) bool { return wildcard(p, v) })
		}
		if !ok {
			continue
		}
		im.describes++
		x := imageXML{
			ImageID: id, ImageLocation: Owner + "/" + im.name, ImageState: state, ImageOwnerID: Owner,
			CreationDate: im.created.UTC().Format("2006-01-02T15:04:05.000Z"), Architecture: im.arch,
			ImageType: "machine", Name: im.name, Description: im.description, RootDeviceType: "ebs",
			RootDeviceName: im.root, VirtualizationType: im.virt, TagSet: tagList(im.tags), EnaSupport: im.ena,
			BootMode: im.bootMode,
		}
		if im.location != "" {
			x.ImageLocation, x.ImageType, x.RootDeviceType = im.location, im.imageType, "instance-store"
			x.KernelID, x.RamdiskID = im.kernel, im.ramdisk
		} else {
			x.BlockDeviceMapping = []bdmXML{{DeviceName: im.root, Ebs: ebsXML{SnapshotID: im.snapshot, VolumeSize: f.snapshotSize(im.snapshot), DeleteOnTermination: true, VolumeType: "gp3"}}}
		}
		items = append(items, x)
	}
	return struct {
		XMLName xml.Name   `xml:"imagesSet"`
		Items   []imageXML `xml:"item"`
	}{Items: items}, nil
}

func (f *Fake) snapshotSize(id string) int64 {
	if s := f.snapshots[id]; s != nil {
		return s.size
	}
	return 0
}

func sortedImageIDs(m map[string]*image) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// wildcard matches v against an EC2 filter value, where * and ? are
// wildcards.
func wildcard(pattern, v string) bool {
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	ok, _ := regexp.MatchString(re, v)
	return ok
}

func (f *Fake) describeSnapshots(q map[string][]string) (any, *apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := list(q, "SnapshotId")
	var items []snapshotXML
	for _, id := range ids {
		s := f.snapshots[id]
		if s == nil {
			return nil, errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		}
		items = append(items, snapshotXML{SnapshotID: id, Status: "completed", OwnerID: Owner, VolumeSize: s.size, Progress: "100%", TagSet: tagList(s.tags)})
	}
	return struct {
		XMLName xml.Name      `xml:"snapshotSet"`
		Items   []snapshotXML `xml:"item"`
	}{Items: items}, nil
}

// diskFormats are ImportSnapshot's formats and how to recognise them.
var diskFormats = map[string]func(head, tail []byte) bool{
	"RAW":  func(_, _ []byte) bool { return true },
	"VMDK": func(head, _ []byte) bool { return bytes.HasPrefix(head, []byte("KDMV")) },
	"VHD":  func(_, tail []byte) bool { return bytes.HasPrefix(tail, []byte("conectix")) },
}

func (f *Fake) importSnapshot(ctx context.Context, q map[string][]string) (any, *apiError) {
	bucket, key := get(q, "DiskContainer.UserBucket.S3Bucket"), get(q, "DiskContainer.UserBucket.S3Key")
	format := strings.ToUpper(get(q, "DiskContainer.Format"))
	switch {
	case get(q, "DiskContainer.Url") != "":
		return nil, errf("InvalidParameterValue", "this fake imports from a UserBucket only")
	case bucket == "" || key == "":
		return nil, errf("MissingParameter", "The request must contain the parameter DiskContainer.UserBucket")
	case format == "":
		return nil, errf("MissingParameter", "The request must contain the parameter DiskContainer.Format")
	case diskFormats[format] == nil:
		return nil, errf("InvalidParameterValue", "Value (%s) for parameter DiskContainer.Format is invalid. Supported formats: RAW, VHD, VMDK", format)
	}
	specs, aerr := tagSpecs(q, "import-snapshot-task")
	if aerr != nil {
		return nil, aerr
	}
	f.mu.Lock()
	t := &task{id: f.newID("import-snap"), description: get(q, "Description"), bucket: bucket, key: key,
		format: format, status: "active", message: "pending", tags: specs["import-snapshot-task"], fail: f.failTask}
	f.failTask = ""
	f.tasks[t.id] = t
	f.taskOrder = append(f.taskOrder, t.id)
	f.mu.Unlock()
	// VM Import reads the object as it starts: a missing one fails the
	// task, with VM Import's own wording.
	size, err := f.readObject(ctx, bucket, key, format)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case err != nil && t.fail == "":
		t.fail = "ClientError: Unable to access the disk image in S3: " + err.Error()
	case err == nil:
		t.size = size
	}
	x := f.taskXML(t)
	return elems{{"importTaskId", t.id}, {"description", t.description}, {"snapshotTaskDetail", x.SnapshotTaskDetail},
		{"tagSet", struct {
			Items []tagXML `xml:"item"`
		}{x.TagSet}}}, nil
}

// elems are a response's sibling elements, in order.
type elems []struct {
	name string
	v    any
}

// readObject reads the whole object, as an import does, and checks its
// format; it returns the object's size.
func (f *Fake) readObject(ctx context.Context, bucket, key, format string) (int64, error) {
	c, err := s3client.New(ctx, f.s3)
	if err != nil {
		return 0, err
	}
	body, _, err := c.Open(ctx, bucket, key)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(body, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return 0, err
	}
	head = head[:n]
	tail := append([]byte(nil), head...)
	buf := make([]byte, 1<<20)
	size := int64(n)
	for {
		m, err := body.Read(buf)
		if m > 0 {
			size += int64(m)
			tail = append(tail, buf[:m]...)
			if len(tail) > 512 {
				tail = tail[len(tail)-512:]
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if len(tail) >= 512 {
		tail = tail[len(tail)-512:]
	}
	if size == 0 {
		return 0, fmt.Errorf("the object is empty")
	}
	if !diskFormats[format](head, tail) {
		return 0, fmt.Errorf("the disk is not in the %s format", format)
	}
	return size, nil
}

func (f *Fake) taskXML(t *task) taskXML {
	d := taskDetailXML{Description: t.description, Format: t.format, Status: t.status, StatusMessage: t.message,
		SnapshotID: t.snapshot, DiskImageSize: float64(t.size)}
	if t.status == "active" {
		d.Progress = strconv.Itoa(min(100, 10+80*t.polls/max(f.Steps, 1)))
	}
	d.UserBucket.S3Bucket, d.UserBucket.S3Key = t.bucket, t.key
	return taskXML{ImportTaskID: t.id, Description: t.description, SnapshotTaskDetail: d, TagSet: tagList(t.tags)}
}

func (f *Fake) describeTasks(q map[string][]string) (any, *apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := list(q, "ImportTaskId")
	if len(ids) == 0 {
		ids = f.taskOrder
	}
	var items []taskXML
	for _, id := range ids {
		t := f.tasks[id]
		if t == nil {
			return nil, errf("InvalidConversionTaskId.Malformed", "The import task ID '%s' does not exist", id)
		}
		f.advance(t)
		items = append(items, f.taskXML(t))
	}
	return struct {
		XMLName xml.Name  `xml:"importSnapshotTaskSet"`
		Items   []taskXML `xml:"item"`
	}{Items: items}, nil
}

// advance moves an active task one poll on: it fails (status deleted,
// as AWS reports a failed import) or, after Steps polls, completes with
// a new snapshot.
func (f *Fake) advance(t *task) {
	if t.status != "active" {
		return
	}
	t.polls++
	switch {
	case t.fail != "" && t.polls >= 1:
		t.status, t.message = "deleted", t.fail
	case t.polls >= f.Steps:
		s := &snapshot{id: f.newID("snap"), size: (t.size + 1<<30 - 1) >> 30, tags: map[string]string{}}
		f.snapshots[s.id] = s
		t.status, t.message, t.snapshot = "completed", "", s.id
	case t.polls == 1:
		t.message = "validating"
	default:
		t.message = "converting"
	}
}

var amiName = regexp.MustCompile(`^[a-zA-Z0-9()\[\] ./\-'@_]{3,128}$`)

func (f *Fake) registerImage(ctx context.Context, q map[string][]string) (any, *apiError) {
	name := get(q, "Name")
	switch {
	case name == "":
		return nil, errf("MissingParameter", "The request must contain the parameter name")
	case !amiName.MatchString(name):
		return nil, errf("InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'")
	case get(q, "ImageLocation") != "":
		return f.registerBundle(ctx, q, name)
	}
	arch := get(q, "Architecture")
	if arch == "" {
		arch = "i386" // the API's default
	}
	if !slices.Contains([]string{"i386", "x86_64", "arm64"}, arch) {
		return nil, errf("InvalidParameterValue", "Value (%s) for parameter architecture is invalid.", arch)
	}
	boot := get(q, "BootMode")
	if boot != "" && !slices.Contains([]string{"legacy-bios", "uefi", "uefi-preferred"}, boot) {
		return nil, errf("InvalidParameterValue", "Value (%s) for parameter bootMode is invalid.", boot)
	}
	if arch == "arm64" && boot == "legacy-bios" {
		return nil, errf("InvalidParameterCombination", "arm64 AMIs boot with uefi only")
	}
	virt := get(q, "VirtualizationType")
	if virt == "" {
		virt = "paravirtual"
	}
	root := get(q, "RootDeviceName")
	if root == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter rootDeviceName")
	}
	snap := ""
	for i := 1; ; i++ {
		p := "BlockDeviceMapping." + strconv.Itoa(i)
		dev := get(q, p+".DeviceName")
		if dev == "" {
			break
		}
		if dev == root {
			snap = get(q, p+".Ebs.SnapshotId")
		}
	}
	if snap == "" {
		return nil, errf("InvalidBlockDeviceMapping", "The root device %s has no block device mapping with a snapshot", root)
	}
	specs, aerr := tagSpecs(q, "image", "snapshot")
	if aerr != nil {
		return nil, aerr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.snapshots[snap] == nil {
		return nil, errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", snap)
	}
	for _, im := range f.images {
		if im.name == name {
			return nil, errf("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, im.id)
		}
	}
	im := &image{id: f.newID("ami"), name: name, arch: arch, root: root, bootMode: boot, virt: virt,
		description: get(q, "Description"), snapshot: snap, ena: get(q, "EnaSupport") == "true",
		created: time.Now(), tags: specs["image"]}
	if im.tags == nil {
		im.tags = map[string]string{}
	}
	for k, v := range specs["snapshot"] {
		f.snapshots[snap].tags[k] = v
	}
	f.images[im.id] = im
	return struct {
		XMLName xml.Name `xml:"imageId"`
		ID      string   `xml:",chardata"`
	}{ID: im.id}, nil
}

func (f *Fake) deregisterImage(q map[string][]string) (any, *apiError) {
	id := get(q, "ImageId")
	if !amiID.MatchString(id) {
		return nil, errf("InvalidAMIID.Malformed", "Invalid id: %q (expecting \"ami-...\")", id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.images[id] == nil {
		return nil, errf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	delete(f.images, id)
	return returnXML{Value: true}, nil
}

func (f *Fake) deleteSnapshot(q map[string][]string) (any, *apiError) {
	id := get(q, "SnapshotId")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.snapshots[id] == nil {
		return nil, errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	for _, im := range f.images {
		if im.snapshot == id {
			return nil, errf("InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, im.id)
		}
	}
	delete(f.snapshots, id)
	return returnXML{Value: true}, nil
}

func (f *Fake) createTags(q map[string][]string) (any, *apiError) {
	ids := list(q, "ResourceId")
	if len(ids) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter resourceIdSet")
	}
	tags, aerr := readTags(q, "Tag")
	if aerr != nil {
		return nil, aerr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		var m map[string]string
		switch {
		case f.images[id] != nil:
			m = f.images[id].tags
		case f.snapshots[id] != nil:
			m = f.snapshots[id].tags
		case amiID.MatchString(id):
			return nil, errf("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		case strings.HasPrefix(id, "snap-"):
			return nil, errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
		default:
			return nil, errf("InvalidID", "The ID '%s' is not valid", id)
		}
		if len(m)+len(tags) > 50 {
			return nil, errf("TagLimitExceeded", "The maximum number of tags per resource is 50")
		}
		for k, v := range tags {
			m[k] = v
		}
	}
	return returnXML{Value: true}, nil
}

// registerBundle registers an instance-store image from the bundle
// whose manifest ImageLocation names.
func (f *Fake) registerBundle(ctx context.Context, q map[string][]string, name string) (any, *apiError) {
	loc := get(q, "ImageLocation")
	bucket, key, ok := strings.Cut(loc, "/")
	if !ok || bucket == "" || !strings.HasSuffix(key, ".manifest.xml") {
		return nil, errf("InvalidParameterValue", "ImageLocation %q is not BUCKET/KEY.manifest.xml", loc)
	}
	if f.UserCert == nil {
		return nil, errf("InvalidManifest", "the fake has no user certificate to verify manifests with")
	}
	c, err := s3client.New(ctx, f.s3)
	if err != nil {
		return nil, &apiError{http.StatusInternalServerError, "InternalError", err.Error()}
	}
	read := func(k string) (io.ReadCloser, error) {
		body, _, err := c.Open(ctx, bucket, k)
		return body, err
	}
	body, err := read(key)
	if err != nil {
		return nil, errf("InvalidManifest", "HTTP 404 (Not Found) response for URL %s: %v", loc, err)
	}
	raw, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		return nil, errf("InvalidManifest", "reading %s: %v", loc, err)
	}
	m, err := eucabundle.Read(raw, f.UserCert)
	if err != nil {
		return nil, errf("InvalidManifest", "%v", err)
	}
	dir := ""
	if i := strings.LastIndex(key, "/"); i >= 0 {
		dir = key[:i+1]
	}
	part := func(name string) (io.ReadCloser, error) { return read(dir + name) }
	for _, p := range m.Parts() {
		rc, err := part(p.Filename)
		if err != nil {
			return nil, errf("InvalidManifest", "part %s: %v", p.Filename, err)
		}
		err = eucabundle.CheckPart(p, rc)
		rc.Close()
		if err != nil {
			return nil, errf("InvalidManifest", "%v", err)
		}
	}
	if f.CloudKey != nil {
		if err := m.Unbundle(f.CloudKey, part, io.Discard); err != nil {
			return nil, errf("InvalidManifest", "unbundling: %v", err)
		}
	}
	prefix := map[string]string{"machine": "ami", "kernel": "aki", "ramdisk": "ari"}[m.Image.Type]
	if prefix == "" {
		return nil, errf("InvalidManifest", "image type %q", m.Image.Type)
	}
	arch := get(q, "Architecture")
	if arch == "" {
		arch = m.Machine.Architecture
	}
	specs, aerr := tagSpecs(q, "image")
	if aerr != nil {
		return nil, aerr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	kernel, ramdisk := get(q, "KernelId"), get(q, "RamdiskId")
	for _, r := range []struct{ id, want string }{{kernel, "kernel"}, {ramdisk, "ramdisk"}} {
		if r.id == "" {
			continue
		}
		if im := f.images[r.id]; im == nil || im.imageType != r.want {
			return nil, errf("InvalidAMIID.NotFound", "The %s image id '[%s]' does not exist", r.want, r.id)
		}
	}
	for _, im := range f.images {
		if im.name == name {
			return nil, errf("InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, im.id)
		}
	}
	im := &image{id: f.newID(prefix), name: name, arch: arch, virt: "paravirtual", description: get(q, "Description"),
		location: loc, imageType: m.Image.Type, kernel: kernel, ramdisk: ramdisk, root: "/dev/sda1",
		created: time.Now(), tags: specs["image"]}
	if im.tags == nil {
		im.tags = map[string]string{}
	}
	f.images[im.id] = im
	return struct {
		XMLName xml.Name `xml:"imageId"`
		ID      string   `xml:",chardata"`
	}{ID: im.id}, nil
}
