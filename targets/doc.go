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
//   - its adaptation (optional, the Adapter interface): what the kind
//     changes in the image before writing it, as ordinary stages (package
//     stages) that the planner puts on top of the image's last stage,
//     content-addressed, cached, shown by plan and shared by every target
//     with the same adaptation of the same image; raw and qcow2 adapt
//     with a disk-adapt stage (stages.DiskAdapt: the fstab naming the
//     disk's file systems by the UUIDs derived from the image's ID, the
//     /boot/efi mount point and the ESP kernel hook), tar, oci and
//     netboot write the image as it is;
//   - its writer: the artifacts, with their media types, made in an
//     empty directory from an Input (the adapted image's stage layers,
//     bottom first, as uncompressed OCI layer tars in the cache, and its
//     root filesystem as a directory, for reading: a writer only writes)
//     and the Spec alone; the same input gives the same bytes, and times
//     come only from the layers and from SourceDateEpoch;
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
//
//   - oci: an OCI image layout with one gzip layer per stage, readable as
//     oci:DIR:latest; its manifest's annotations carry the image's name,
//     pedigree and metadata. Does not boot.
//
//   - raw: a bootable GPT disk, disk.raw (BuildDisk, on the image
//     adapted by AdaptDisk): an EFI system
//     partition with the kernel, the initrd and syslinux (BIOS) and
//     systemd-boot (UEFI) as boot asks, and an ext4 root file system
//     made by mkfs.ext4 -d; the boot menus carry the image's name.
//     Boots from the disk.
//
//   - qcow2: the raw kind's disk as qcow2 v3, disk.qcow2, converted
//     natively (package qcow2), optionally compressed. Boots from the disk.
//
//   - netboot: vmlinuz, initramfs.cpio[.gz|.zst] holding the whole image,
//     boot.ipxe and pxelinux.cfg, for stateless nodes. Boots the kernel
//     and initramfs.
//
//   - openstack, opennebula: the cloud kinds (cloud.go holds what they
//     share). They adapt the image with a cloud-init stage
//     (stages.CloudInit, shared by both clouds), a files stage naming
//     the cloud's datasource, and the disk's; write the disk as qcow2 or
//     raw through the disk code (and, for openstack with boot = "none",
//     the kernel and initrd for aki/ari images); and write the
//     registration steps: register.json (register.File, what fgimg
//     register performs) and register.sh (the cloud CLI's commands).
//     Boot from the disk.
//
//   - xcat, warewulf: the bare-metal kinds. xcat adapts the image for a
//     stateless xCAT node (fstab, DHCP on the boot interface, the
//     postscripts hook, its own definition in /etc/fgimg/osimage) and
//     writes xCAT's rootimgdir layout (kernel, rootimg.cpio.gz) and the
//     osimage's mkdef -z stanza; warewulf writes the root filesystem
//     tarball Warewulf imports. Both write register.json and register.sh
//     (the site's own commands: mkdef, chdef, mschedctl; wwctl).
//
//   - ec2, eucalyptus, nimbus: the cloud kinds that register through S3
//     (ec2.go, nimbus.go): the same adaptation with the Ec2 datasource
//     (ec2 adds the ENA, NVMe and Xen drivers; eucalyptus and nimbus set
//     strict_id off, nimbus puts NoCloud first), a raw disk, and one
//     step whose image name and staged object key carry the disk's
//     digest (register/ec2, register/nimbus perform it).
package targets
