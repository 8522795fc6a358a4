// The fgimg command: flags, output, exit codes, and the one place where
// templates, the planner and the cache are wired together.
//
// Exit codes: 0 success, 1 a problem in the input or the build, 2 a
// usage error, 3 files that need formatting (fmt -check), 70 a bug (fgimg
// panicked), 130 and 143 stopped by SIGINT or SIGTERM (build and boot,
// which clean up first, exit 1).
package main
