//go:build !linux

package capture

import (
	"errors"
	"fmt"
)

// Watch is only implemented on Linux (inotify and fanotify).
func Watch(root string, opts Options) (Watcher, error) {
	return nil, fmt.Errorf("capture: watching %s: %w", root, errors.ErrUnsupported)
}
