// Command fgimg compiles image templates into a stage graph and builds
// root filesystems, VM disks and netboot images from them.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
