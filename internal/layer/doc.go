// Package layer reads and writes OCI image layers (tar archives) for
// fgimg's stages.
//
// WriteTree archives a whole directory tree; WriteDiff archives an
// overlayfs upper directory, turning overlay whiteouts (character device
// 0/0) into ".wh.<name>" entries and opaque directories into
// ".wh..wh..opq" entries. Both write PAX archives in a canonical order
// (depth first, names within a directory sorted byte-wise) with numeric
// owners, whole-second modification times optionally clamped to
// SOURCE_DATE_EPOCH, extended attributes as SCHILY.xattr records and hard
// links as hard links, so the same tree always gives the same bytes.
// File contents are streamed, never held in memory.
//
// Apply extracts a layer (uncompressed, gzip or zstd) into a directory,
// honouring OCI whiteouts, or, with ApplyOptions.Overlay, recording them
// the way overlayfs expects of a lower directory. Every path is resolved
// beneath the target directory (openat2 RESOLVE_BENEATH, or an equivalent
// component-by-component walk where openat2 is unavailable): names with
// ".." components, absolute names and paths that would pass through a
// symlink leading outside the directory are rejected with ErrUnsafePath
// and nothing is written for them.
package layer
