// Package targets turns a built root filesystem into artifacts: root
// filesystem tarballs, OCI image layouts, raw and qcow2 disks and netboot
// kernel plus initramfs.
//
// A Writer (For returns one per target kind) makes one target's artifacts
// in an empty directory from an Input: the image's description and its
// stage layers, bottom first, as uncompressed OCI layer tars in the
// cache. Every writer gives the same bytes for the same input; times come
// only from the layers and from SourceDateEpoch.
//
// The tar target squashes the layers (Squash) into one root filesystem
// tarball, compressed with parallel gzip (klauspost/pgzip) or zstd
// (klauspost/compress) at settings whose output does not depend on the
// number of cores. The oci target writes an OCI image layout with one
// gzip layer per stage, readable as oci:DIR:latest.
package targets
