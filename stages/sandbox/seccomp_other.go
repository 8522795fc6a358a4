//go:build !amd64 && !arm64

package sandbox

import (
	"fmt"
	"runtime"
)

func seccompABIs() ([]seccompABI, error) {
	return nil, fmt.Errorf("no seccomp filter for %s: build commands cannot be confined on this architecture", runtime.GOARCH)
}
