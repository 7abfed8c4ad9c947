// Package xattr holds what reading extended attributes needs beyond the
// system calls: their size can change between asking for it and reading.
package xattr

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Read calls get once with nil to learn the size, then with a buffer of
// that size, retrying a few times when the attribute grew in between
// (ERANGE). It returns nil for an empty value or list.
func Read(get func([]byte) (int, error)) ([]byte, error) {
	for tries := 0; ; tries++ {
		n, err := get(nil)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, nil
		}
		b := make([]byte, n)
		n, err = get(b)
		if errors.Is(err, unix.ERANGE) && tries < 8 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return b[:n], nil
	}
}
