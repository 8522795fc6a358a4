package layer

import (
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/fsat"
)

// noOpenat2 is set once openat2 turns out to be unavailable (old kernel
// or a seccomp filter); tests set it to exercise the fallback walk.
var noOpenat2 atomic.Bool

const maxSymlinks = 40 // as the kernel's MAXSYMLINKS

// openBeneath opens rel relative to the directory root, following symlinks
// only while they stay beneath root. A path that would leave root (an
// absolute symlink, or ".." above root) fails with EXDEV. A final symlink
// is followed like any other; pass O_NOFOLLOW in flags to refuse it.
func openBeneath(root int, rel string, flags int) (int, error) {
	if !noOpenat2.Load() {
		how := unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		}
		for range 16 {
			fd, err := unix.Openat2(root, rel, &how)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue // a concurrent rename or mount; retry
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	return walkBeneath(root, rel, flags)
}

// walkBeneath is openBeneath done in user space, one component at a time
// with O_NOFOLLOW, reading each symlink and refusing any that would leave
// root.
func walkBeneath(root int, rel string, flags int) (fd int, err error) {
	stack := []int{root} // directories walked through; stack[0] is not ours
	defer func() {
		for _, d := range stack[1:] {
			unix.Close(d)
		}
	}()
	comps := strings.Split(rel, "/")
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			if len(comps) == 0 {
				return unix.Openat(stack[len(stack)-1], ".", flags|unix.O_CLOEXEC, 0)
			}
			continue
		case "..":
			if len(stack) == 1 {
				return -1, unix.EXDEV
			}
			unix.Close(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			if len(comps) == 0 {
				return unix.Openat(stack[len(stack)-1], ".", flags|unix.O_CLOEXEC, 0)
			}
			continue
		}
		cur := stack[len(stack)-1]
		var st unix.Stat_t
		if err := unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if err == unix.ENOENT && len(comps) == 0 {
				// Let the final open create it, if asked to.
				return unix.Openat(cur, c, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
			}
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if len(comps) == 0 && flags&unix.O_NOFOLLOW != 0 {
				return -1, unix.ELOOP
			}
			if links++; links > maxSymlinks {
				return -1, unix.ELOOP
			}
			target, err := fsat.Readlink(cur, c)
			if err != nil {
				return -1, err
			}
			if strings.HasPrefix(target, "/") {
				return -1, unix.EXDEV
			}
			comps = append(strings.Split(target, "/"), comps...)
			continue
		}
		if len(comps) == 0 {
			return unix.Openat(cur, c, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, unix.ENOTDIR
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		stack = append(stack, next)
	}
	return unix.Openat(stack[len(stack)-1], ".", flags|unix.O_CLOEXEC, 0)
}
