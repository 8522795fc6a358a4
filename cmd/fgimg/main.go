// Command fgimg compiles image templates into a stage graph and builds
// root filesystems, VM disks and netboot images from them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/fgimg/fgimg/stages/sandbox"
)

func main() {
	sandbox.Init() // when this process is a sandbox's init, it does its job and exits here
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
