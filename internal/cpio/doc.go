// Package cpio writes (and reads back) cpio archives in the "newc" format
// (magic "070701"), the one the Linux kernel unpacks as an initramfs.
//
// Writer is a streaming archive writer: a header, then exactly Size bytes
// of data, for each entry, then the "TRAILER!!!" entry; every header and
// every body is padded to 4 bytes. WriteTree archives a whole directory
// tree the way the kernel's init/initramfs.c wants it: entries sorted with
// parents before children, inodes renumbered from 1 in output order, hard
// links as hard links (every name shares the inode and the number of
// names; the first name carries the data and the later ones have size 0,
// which the kernel links and GNU cpio defers), device nodes with their
// rdev numbers, symlinks with their targets as data, owners and modes
// kept and modification times clamped to an epoch, so the same tree
// always gives the same bytes whatever its host inode numbers. Reader
// parses newc archives, for tests and tools that check what was written.
package cpio
