package s3client_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/s3test"
	"github.com/fgimg/fgimg/internal/testkit"
)

// BenchmarkUpload1GB uploads a 1 GB file to the local versitygw with
// s3client and with `aws s3 cp` (Debian's awscli), alternating, each to
// a new key; the bar is s3client at most 1.0× the AWS CLI's time.
func BenchmarkUpload1GB(b *testing.B) {
	awsBin, err := exec.LookPath("aws")
	if err != nil {
		testkit.Missing(b, fmt.Errorf("aws (Debian's awscli) is not installed"))
	}
	s := s3test.Start(b)
	s.MakeBucket(b, "bench")
	c := s.Client(b)
	ctx := context.Background()
	p := filepath.Join(b.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{1}), 1<<30); err != nil {
		b.Fatal(err)
	}
	f.Close()
	env := append(os.Environ(), s.Env()...)
	env = append(env, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "HOME="+b.TempDir())
	var ours, theirs time.Duration
	b.ResetTimer()
	for i := range b.N {
		key := fmt.Sprintf("fgimg-%d", i)
		t0 := time.Now()
		if err := c.Upload(ctx, "bench", key, p, nil, nil); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		c.Delete(ctx, "bench", key)

		key = fmt.Sprintf("aws-%d", i)
		cmd := exec.Command(awsBin, "--endpoint-url", s.Endpoint, "s3", "cp", "--only-show-errors", p, "s3://bench/"+key)
		cmd.Env = env
		t0 = time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("aws s3 cp: %v\n%s", err, out)
		}
		theirs += time.Since(t0)
		c.Delete(ctx, "bench", key)
	}
	b.StopTimer()
	b.ReportMetric(ours.Seconds()/float64(b.N), "s3client-s")
	b.ReportMetric(theirs.Seconds()/float64(b.N), "aws-s3-cp-s")
	b.ReportMetric(float64(ours)/float64(theirs), "x-of-aws")
}
