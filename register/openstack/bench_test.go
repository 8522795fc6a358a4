package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
)

// BenchmarkRegisterVsOpenstackCLI uploads a 1 GiB qcow2 into the local
// Glance with register, beside `openstack image create --file` (the
// client operators use) on the same file. The bar: register takes at
// most the client's time (ratio ≤ 1).
func BenchmarkRegisterVsOpenstackCLI(b *testing.B) {
	testkit.Need(b, "openstack")
	_, out, o := env(b)
	src := filepath.Join(b.TempDir(), "disk.qcow2")
	registertest.Qcow2(b, src, 1<<30, 42)
	var fgimg, client time.Duration
	for i := range b.N {
		// A new image each time: the target's name differs.
		name := fmt.Sprintf("bench-big-%d-%d", time.Now().UnixNano(), i)
		registertest.Write(b, out, registertest.Disk(name), map[string]string{"disk.qcow2": filepath.Join(src)})
		start := time.Now()
		res := run(b, o, name)
		fgimg += time.Since(start)
		if res[0].Uploaded == 0 {
			b.Fatalf("register uploaded %d bytes", res[0].Uploaded)
		}
		start = time.Now()
		cmd := exec.Command("openstack", "image", "create", "--disk-format", "qcow2", "--container-format", "bare",
			"--file", filepath.Join(out, name, "disk.qcow2"), "-f", "json", name+"-cli")
		outb, err := cmd.Output()
		client += time.Since(start)
		var im struct{ ID string }
		if err != nil || json.Unmarshal(outb, &im) != nil {
			b.Fatalf("openstack image create: %v\n%s", err, outb)
		}
		// Both images are whole and active.
		c, err := Open(context.Background(), &register.File{})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range []string{res[0].Registrations[0].ImageID, im.ID} {
			if err := c.Delete(context.Background(), register.Image{ID: id}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(fgimg.Seconds()/float64(b.N), "s-fgimg")
	b.ReportMetric(client.Seconds()/float64(b.N), "s-openstack-cli")
	b.ReportMetric(fgimg.Seconds()/client.Seconds(), "ratio")
}

// BenchmarkNoopRegister10 registers 10 targets that are all in Glance
// already: the bar is 1 s, and zero bytes uploaded.
func BenchmarkNoopRegister10(b *testing.B) {
	_, out, o := env(b)
	src := filepath.Join(b.TempDir(), "disk.qcow2")
	var names []string
	for i := range 10 {
		registertest.Qcow2(b, src, 1<<20, uint64(1000+i))
		name := fmt.Sprintf("bench-noop-%d-%d", time.Now().UnixNano(), i)
		registertest.Write(b, out, registertest.Disk(name), map[string]string{"disk.qcow2": src})
		names = append(names, name)
	}
	o.Jobs = 4
	run(b, o, names...)
	b.ResetTimer()
	var bytes int64
	for range b.N {
		for _, r := range run(b, o, names...) {
			bytes += r.Uploaded
			for _, a := range r.Plan.Actions {
				if a.Op != register.OpSkip {
					b.Fatalf("a no-op register planned %s", a.Op)
				}
			}
		}
	}
	b.ReportMetric(float64(bytes), "bytes-uploaded")
}
