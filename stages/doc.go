// Package stages defines each stage kind (bootstrap, from, packages,
// files, users, services, run) as a hashed spec: the canonical
// parameters that identify what the stage does.
package stages
