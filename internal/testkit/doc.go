// Package testkit makes fixtures for fgimg's tests: a tiny working root
// filesystem from the host's busybox-static, OCI image layouts built from
// filesystem-mutating functions, and plain rootfs tarballs. Like
// go-containerregistry's random package, it exists so that every test
// that needs an image or a tree gets a real one in a line.
package testkit
