// Package catalog is the appliance's catalog: the durable record of what
// Holdfast protects (scenarios and their entities, hosts), what it did (jobs,
// backup sessions, the activity log), where the data went (media) and which
// file versions each backup holds, so that operators can browse and restore.
//
// The catalog is one Pebble key-value store. Every record kind lives under its
// own short key prefix, and every value is a self-describing, checksummed
// envelope around a protowire payload, so that damage is reported as
// ErrCorrupt instead of being misread, and so that catalogs written by older
// or newer builds stay readable. docs/catalog.md describes the key schema, the
// encoding and the sync policy.
//
// A Catalog is safe for concurrent use by many goroutines.
package catalog
