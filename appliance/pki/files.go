package pki

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// maxFileSize bounds every file this package reads, so that a corrupted or
// hostile file cannot make the daemon allocate without limit.
const maxFileSize = 16 << 20

// readFileLimited reads a regular file of at most maxFileSize bytes.
func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // callers wrap; os errors already name the path
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("read %s: file larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// ErrKeyPermissions is returned when a private key file is readable or
// writable by group or others. Loading it anyway would hide the exposure.
var ErrKeyPermissions = errors.New("private key file is accessible by group or others")

// readPrivateKeyFile reads a private key file after checking that only its
// owner can access it.
func readPrivateKeyFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("private key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("private key %s has mode %04o: %w; run: chmod 600 %s",
			path, perm, ErrKeyPermissions, path)
	}
	return readFileLimited(path)
}

func fileExists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("stat %s: %w", path, err)
}
