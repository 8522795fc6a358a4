// Package targets declares the target kinds: what fgimg makes of a built
// image. Each kind is one unit (the Kind interface), in one file, listed
// once in kinds.go:
//
//   - its schema: the attributes a template may give it, with types,
//     defaults, enums and validation, which lang checks and reports as
//     diagnostics at the attribute (lang imports nothing of fgimg's: the
//     schemas reach it through lang.LoadOptions.TargetKinds);
//   - its Spec: the hashed part of a target, its attributes and every
//     name or piece of metadata it writes into its artifacts, so that
//     the target's digest changes exactly when its artifacts may;
//   - its writer: the artifacts, with their media types, made in an
//     empty directory from an Input (the image's stage layers, bottom
//     first, as uncompressed OCI layer tars in the cache, and a scratch
//     copy of its root filesystem) and the Spec alone; the same input
//     gives the same bytes, and times come only from the layers and from
//     SourceDateEpoch;
//   - how it boots (Boot): a disk of a media type and format, or a
//     kernel and initramfs, and with which firmware; fgimg boot finds
//     the artifacts by these media types in manifest.json.
//
// The kinds:
//
//   - tar: the root filesystem as one tarball, rootfs.tar[.gz|.zst],
//     squashed from the layers (Squash) and compressed with parallel
//     gzip (klauspost/pgzip) or zstd (klauspost/compress) at settings
//     whose output does not depend on the number of cores. Does not boot.
//   - oci: an OCI image layout with one gzip layer per stage, readable as
//     oci:DIR:latest; its manifest's annotations carry the image's name,
//     pedigree and metadata. Does not boot.
//   - raw: a bootable GPT disk, disk.raw (BuildDisk): an EFI system
//     partition with the kernel, the initrd and syslinux (BIOS) and
//     systemd-boot (UEFI) as boot asks, and an ext4 root file system
//     made by mkfs.ext4 -d; the boot menus carry the image's name.
//     Boots from the disk.
//   - qcow2: the raw kind's disk as qcow2 v3, disk.qcow2, converted
//     natively (package qcow2), optionally compressed. Boots from the disk.
//   - netboot: vmlinuz, initramfs.cpio[.gz|.zst] holding the whole image,
//     boot.ipxe and pxelinux.cfg, for stateless nodes. Boots the kernel
//     and initramfs.
//
// The infrastructure kinds the language names (openstack, opennebula,
// eucalyptus, nimbus, ec2, xcat) are reserved: a template using one gets
// a diagnostic until their unit is written.
package targets
