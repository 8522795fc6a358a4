// Package hosttool is the one place where fgimg finds and runs a program
// of the build host (debootstrap, mkfs.ext4, syslinux, QEMU, …).
//
// Find looks a tool up on PATH and in the sbin directories a user's PATH
// often lacks. When a tool or host file is missing, the error names the
// package that provides it on the host's distribution (from
// /etc/os-release: apt names on Debian and Ubuntu, dnf names on Fedora
// and RHEL where known). Packages is that table; the Makefile's deps
// target installs the same packages, and a test checks that they agree.
//
// Command and Run start a tool in its own process group with a parent
// death signal, so that neither it nor anything it starts outlives
// fgimg, and kill the group when the context ends.
package hosttool
