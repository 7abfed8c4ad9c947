//go:build !unix

package spool

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only opens the lock file where flock does not exist: the agent
// runs on Unix masters, and this keeps the package building elsewhere.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}
