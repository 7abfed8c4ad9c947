package diskstore

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	// ErrWrongPassword: no key slot of the store opens with the password.
	ErrWrongPassword = errors.New("wrong password: no password slot of the store key file opens with it")
	// ErrWrongKey: the appliance key given does not open the store.
	ErrWrongKey = errors.New("wrong appliance key: no appliance slot of the store key file opens with it")
	// ErrCorrupt: bytes read from the store are not what was written.
	ErrCorrupt = errors.New("store data corrupt")
	// ErrNoSpace: the store's filesystem is full.
	ErrNoSpace = errors.New("no space left on the store's filesystem")
	// ErrNotFound: no such session or entry.
	ErrNotFound = errors.New("not found")
	// ErrLocked: another process has the store open.
	ErrLocked = errors.New("store is in use by another process")
)

// ioErr wraps an I/O error with context and, when the filesystem is full,
// with ErrNoSpace so callers can tell that case apart.
func ioErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%s: %w: %w", msg, ErrNoSpace, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// corrupt builds an ErrCorrupt error.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
