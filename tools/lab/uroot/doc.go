//go:build lab

// Package uroot is a separate Go module that only pins the u-root
// initramfs builder and u-root's init for the guest lab (tools/lab).
// Keeping them here keeps them out of holdfastd's go.mod: the main module
// never builds, vets or requires them. The lab runs `go tool u-root` in
// this directory with a uinit package from the main module, which this
// module reaches through its replace directive.
//
// The import below keeps the main module in this module's graph (and its
// go.sum) when `go mod tidy` runs here; the build tag keeps it out of
// every ordinary build.
package uroot

import _ "github.com/holdfast/holdfast/tools/lab/guest"
