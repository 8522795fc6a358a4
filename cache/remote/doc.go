// Package remote is fgimg's shared repository: stage results and target
// artifacts stored where every machine and CI runner can reach them, so
// that none rebuilds what another has built.
//
// The storage seam is Backend, exactly what oras-go's remote.Repository
// offers for one OCI repository: an oras.Target (blobs, manifests, tags)
// that can list its tags. Everything fgimg stores is laid out above that
// seam, in this package, so that every back end (an OCI registry; S3 in
// a package of its own) holds the same objects:
//
//	stage-<hex>    a stage result: an OCI image manifest (spec 1.1) with
//	               artifactType ArtifactStage, the stage's Record as its
//	               config and its layer as its one layer
//	target-<hex>   a target write: artifactType ArtifactTarget, the Record
//	               as config, the artifacts as layers, annotations carrying
//	               the catalog fields
//	ref-<hex>      a referrer of a target (manifest.json, registration
//	               records, a runner's usage): a manifest whose subject is
//	               the target's, tagged by its own digest
//	sha256-<hex>   the referrers index of the OCI tag schema, for back ends
//	               without the referrers API (distribution 2.8 and 3.x)
//
// Every manifest is tagged, because a registry's garbage collector
// deletes untagged manifests, referrers included, while a fallback index
// naming them stays behind.
//
// Where things go: REF names a base (HOST[:PORT]/PATH for a registry);
// an image and everything made from it live in one repository below it
// chosen by the image's permission (see Namespace), so that the
// registry's own access control decides who may read and write. fgimg
// enforces nothing itself.
package remote
