// Package cache is fgimg's local content-addressed store: blobs by
// digest, a record per stage digest, locking and verification.
//
// Layout under the store's root directory:
//
//	blobs/sha256/<hex>            immutable blobs (layers, artifacts, logs)
//	records/sha256/<hex>.json     one Record per stage or target digest
//	locks/<hex>                   flock(2) files, one per stage digest
//	locks/<hex>.use               shared flock(2)s of the builds using the stage (Hold)
//	locks/snapshots/<hex>         flock(2) files guarding snapshot unpacking
//	snapshots/<first 16 hex>      unpacked layers, usable as overlayfs lower dirs
//	snapshots/flat-<16 hex>       the bottom layers of a deep chain applied into one tree
//	logs/<stage>.log              the logs of failed stages (written by the engine)
//	tmp/<id>/                     one directory per open Store, flock(2)ed for its lifetime
//
// Crash safety rests on three rules. Every file is written in the opening
// Store's tmp directory, fsynced, renamed into place and its directory
// fsynced, so a blob, record or snapshot is either absent or complete. A
// record is written only after every blob it names has been committed,
// and Has also checks that those blobs exist, so a record never claims a
// result that is not there. A tmp directory whose lock is free belongs to
// a dead process, and Open removes it.
//
// The store is private to its owner (mode 0700 throughout: see
// prepareRoot), since snapshots hold images' setuid binaries and secrets.
//
// Several processes may share one store. Lock serialises work on one stage
// digest; blobs need no lock because equal digests mean equal content.
package cache
