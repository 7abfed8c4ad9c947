// Package version holds the release identifier stamped into every binary at
// build time (see the Makefile's LDFLAGS).
package version

// Version is set with -ldflags "-X .../version.Version=..."; "dev" otherwise.
var Version = "dev"
