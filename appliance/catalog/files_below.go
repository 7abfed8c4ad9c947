package catalog

import (
	"fmt"
	"path"
	"strings"
)

// VersionsBelow calls fn with every stored version of p and of every file
// below it on host, in path order, each path's versions newest session
// first. A restore by tree picks each file's version from them.
func (c *Catalog) VersionsBelow(host, p string, fn func(FileVersion) error) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("versions below %s:%s: %w", host, p, invalidf("path is not a clean absolute path"))
	}
	done, err := c.enter()
	if err != nil {
		return fmt.Errorf("versions below %s:%s: %w", host, p, err)
	}
	defer done()
	snap := c.db.NewSnapshot()
	defer snap.Close()
	// The path itself (a file), then everything below it (a directory).
	err = scanPrefix(snap, filePathPrefix(host, p), false, func(key, value []byte) error {
		v, err := decodeFileKeyed(key, value, host, p)
		if err != nil {
			return err
		}
		return fn(v)
	})
	if err != nil {
		return fmt.Errorf("versions below %s:%s: %w", host, p, err)
	}
	dir := strings.TrimSuffix(p, "/") + "/"
	hostKey := appendEsc([]byte(prefixFile), host)
	lower := appendEscPrefix(append([]byte(nil), hostKey...), dir)
	err = scanPrefix(snap, lower, false, func(key, value []byte) error {
		fp, rest, err := decodeEsc(key[len(hostKey):])
		if err != nil {
			return corruptf(key, "bad file version key: %v", err)
		}
		if len(rest) != 8 {
			return corruptf(key, "bad file version key: %d bytes after the path", len(rest))
		}
		v, err := decodeFileVersion(key, value, host, fp, ^uint64FromKey(rest))
		if err != nil {
			return err
		}
		return fn(v)
	})
	if err != nil {
		return fmt.Errorf("versions below %s:%s: %w", host, p, err)
	}
	return nil
}
