package catalog

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound is wrapped in every "no such record" result.
	ErrNotFound = errors.New("catalog: not found")
	// ErrExists means a scenario name is already taken.
	ErrExists = errors.New("catalog: already exists")
	// ErrCorrupt is wrapped when a stored record fails its checksum or cannot
	// be decoded; the error text names the key and what was wrong.
	ErrCorrupt = errors.New("catalog: corrupt record")
	// ErrInvalid is wrapped when a caller passes a record the catalog cannot
	// store (an empty name, a duplicate entity...), so API layers can map it
	// to a client error rather than a server fault.
	ErrInvalid = errors.New("catalog: invalid record")
	// ErrReadOnly is returned by writes to a catalog opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("catalog: opened read-only")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("catalog: closed")
)

// corruptf builds an ErrCorrupt error that names the key in printable form,
// so an operator reading the activity log knows which record is damaged.
func corruptf(key []byte, format string, args ...any) error {
	return fmt.Errorf("%w: key %s: %s", ErrCorrupt, FormatKey(key), fmt.Sprintf(format, args...))
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}
