package openstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/gophercloud/gophercloud/v2"
)

// Glance's 5xx and dropped connections are retried; its 4xx are not;
// either way the message is Glance's own, without gophercloud's wrapping.
func TestFaultsAreClassifiedWithTheCloudsMessage(t *testing.T) {
	c := &Cloud{name: `openstack cloud "lab"`}
	html := []byte("<html><head><title>503 Service Unavailable</title></head><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>")
	for _, tc := range []struct {
		err       error
		temporary bool
		msg       string
	}{
		{gophercloud.ErrUnexpectedResponseCode{Method: "PUT", URL: "http://g/v2/images/1/file", Actual: 503, Body: html}, true,
			"PUT http://g/v2/images/1/file: HTTP 503: 503 Service Unavailable 503 Service Unavailable No server is available to handle this request."},
		{gophercloud.ErrUnexpectedResponseCode{Method: "POST", URL: "http://g/v2/images", Actual: 413, Body: []byte(`{"message": "Image storage media is full"}`)}, false,
			"HTTP 413: Image storage media is full"},
		{fmt.Errorf("Put: %w", syscall.ECONNRESET), true, "connection reset by peer"},
		{errors.New("no such host"), false, "no such host"},
	} {
		err := c.fault("uploading", tc.err)
		if register.IsTemporary(err) != tc.temporary || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), `openstack cloud "lab": uploading: `) {
			t.Errorf("fault(%v) = %v (temporary %v); want temporary %v with %q", tc.err, err, register.IsTemporary(err), tc.temporary, tc.msg)
		}
	}
}

// Glance takes any bytes under any disk_format: fgimg declares only what
// the artifact is.
func TestDeclaredFormatMustBeTheArtifacts(t *testing.T) {
	dir := t.TempDir()
	q, raw := filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "disk.raw")
	registertest.Qcow2(t, q, 64<<10, 1)
	registertest.Random(t, raw, 64<<10, 1)
	for _, tc := range []struct {
		path, format string
		ok           bool
	}{{q, "qcow2", true}, {raw, "raw", true}, {raw, "qcow2", false}, {q, "raw", false}, {raw, "aki", true}} {
		f, err := os.Open(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		err = checkFormat(f, tc.format)
		f.Close()
		if (err == nil) != tc.ok {
			t.Errorf("%s declared %s: %v", filepath.Base(tc.path), tc.format, err)
		}
	}
}
