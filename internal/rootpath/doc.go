// Package rootpath resolves paths inside a root filesystem: an image's
// tree on disk, or a tree held in memory while layers are squashed.
//
// There are two modes, and every caller names the one it means:
//
//   - [Beneath]: the path must stay strictly beneath the root. An
//     absolute symlink, or a ".." that would climb above the root, is an
//     error wrapping [ErrEscape]. This is the mode for archives and
//     layers, whose names come from someone else (layer apply, squash).
//   - [InRoot]: the path is resolved as a process chrooted into the root
//     would see it (as the kernel does inside the booted image): an
//     absolute symlink starts again at the root and ".." stops there.
//     This is the mode for an image's own paths (stages writing files,
//     disks and netboot finding the kernel, the sandbox's resolv.conf).
//
// On disk the kernel's openat2 (RESOLVE_BENEATH, RESOLVE_IN_ROOT) does
// the work when it is available; otherwise, and for anything openat2
// cannot do (creating missing directories, stopping before the final
// component), [Walk] steps one component at a time, never letting the
// kernel follow a symlink. The same Walk resolves the in-memory tree, so
// both see one set of rules.
package rootpath
