// Package diskstore is the appliance's disk-to-disk backup store: files are
// cut into content-defined chunks (package chunker) deduplicated across
// sessions, compressed with zstd, sealed with AES-256-GCM and appended to
// self-describing pack files. A session is a manifest stored like data plus
// a small sealed root file, so everything — the list of sessions, their
// entries, every chunk's place — can be rebuilt from the store directory
// alone. See docs/diskstore.md for the on-disk format and the reasons.
package diskstore
