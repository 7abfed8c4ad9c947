package catalog

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Helpers for record families keyed by prefix + big-endian ID (jobs,
// sessions, media, activity), which are read and listed the same way.

type idDecoder[T any] func(key, value []byte, id uint64) (T, error)

func readByID[T any](r pebble.Reader, key []byte, id uint64, decode idDecoder[T]) (T, error) {
	raw, err := get(r, key)
	if err != nil {
		var zero T
		return zero, err
	}
	return decode(key, raw, id)
}

// idFromKey reads the ID that follows prefix in key.
func idFromKey(key []byte, prefix string) (uint64, error) {
	id, rest, err := decodeU64(key[len(prefix):])
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the ID", len(rest))
	}
	if err != nil {
		return 0, corruptf(key, "bad key: %v", err)
	}
	return id, nil
}

// listByID returns every record of one family in ID order.
func listByID[T any](r pebble.Reader, prefix string, decode idDecoder[T]) ([]T, error) {
	out := []T{}
	err := scanPrefix(r, []byte(prefix), false, func(key, value []byte) error {
		id, err := idFromKey(key, prefix)
		if err != nil {
			return err
		}
		v, err := decode(key, value, id)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// idsFromIndex returns the trailing IDs of the index keys under prefix
// (keys of the form prefix + ID, marker values), checking each marker.
func idsFromIndex(r pebble.Reader, prefix []byte, reverse bool, fn func(id uint64) error) error {
	return scanPrefix(r, prefix, reverse, func(key, value []byte) error {
		id, rest, err := decodeU64(key[len(prefix):])
		if err == nil && len(rest) != 0 {
			err = fmt.Errorf("%d bytes after the ID", len(rest))
		}
		if err != nil {
			return corruptf(key, "bad index key: %v", err)
		}
		if err := decodeMarker(key, value); err != nil {
			return err
		}
		return fn(id)
	})
}
