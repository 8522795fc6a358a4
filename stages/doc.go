// Package stages defines each stage kind (bootstrap, from, packages,
// files, users, services, run, and disk-adapt, the adaptation of an
// image to a disk that targets ask for) as a hashed spec: the canonical
// parameters that identify what the stage does, and runs it on a root
// filesystem with [Run].
//
// Origin stages fill an empty directory: debootstrap and mmdebstrap run
// as host tools in the sandbox (sandbox.Spec.Target: the host's /usr and
// /etc read-only, the directory at /target), debootstrap's second stage
// inside the new image (then downloaded packages, package lists and the
// build host's /etc/resolv.conf and /etc/hostname are removed), a tar
// bootstrap is extracted with the layer package, and from
// pulls an OCI image. The other stages change a mounted overlay: packages,
// users, services and run call the image's own tools (apt-get, dnf, yum
// or apk; useradd or busybox adduser; systemctl; /bin/sh) through
// sandbox.Run, and files and disk-adapt write from Go.
//
// Paths that Go code writes or reads in an image are resolved as the
// image sees them (rootpath.InRoot), one component at a time: an absolute
// symlink leads to its target inside the image, and ".." stops at the
// image's root, as in a chroot, never leading out to the host.
//
// A command that fails yields a [*CommandError] naming the command in the
// user's terms and quoting the tool's own error lines ("E:" lines of apt,
// "No match for argument" of dnf, "ERROR:" of apk), not just its exit
// status; everything the command printed is in the stage's log.
package stages
