// Package qcow2 converts a raw disk image into a qcow2 (version 3) image,
// natively: no qemu-img at build time.
//
// The layout is written in one sequential pass over the raw file, so
// memory stays bounded whatever the disk's size:
//
//	cluster 0           header (version 3, 16-bit refcounts, zlib)
//	clusters 1..        L1 table (reserved up front, filled in at the end)
//	...                 data clusters in guest order; each L2 table is
//	                    written right after the last data cluster it maps,
//	                    and each refcount block as soon as the host range
//	                    it counts lies wholly behind the write position
//	end                 refcount table and the last refcount blocks
//
// All-zero guest clusters are left unallocated: holes in the raw file are
// skipped with SEEK_DATA/SEEK_HOLE, and clusters read and found all-zero
// are dropped too. With Options.Compress each cluster is deflated (raw
// deflate with a 4 KiB window, as QEMU inflates with windowBits -12) by a
// pool of workers and the results are written in guest order, packed at
// byte granularity; a cluster that does not shrink by at least a sector
// is stored uncompressed instead. The output depends only on the raw
// file's contents and the options, never on the number of workers.
//
// Memory is a fixed pool of 1 MiB jobs, a few L2 and refcount tables,
// and 8 bytes per 512 MiB of virtual disk (the L1 table).
//
// The on-disk format is QEMU's docs/interop/qcow2.txt.
package qcow2
