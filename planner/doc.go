// Package planner compiles a lang.Config into a DAG of content-addressed
// stages. Every stage digest covers the stage's kind, its canonical
// parameters, the content of the files it reads and the digest of the
// stage below it, so images that share a pedigree share stages and a
// rebuild does only what changed.
package planner
