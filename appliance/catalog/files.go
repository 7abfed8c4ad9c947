package catalog

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// fileBatchBytes bounds a FileVersionWriter batch. It stays well under
// Pebble's large-batch threshold (half the 4 MiB default memtable), above
// which a batch is handled as its own flushable and costs a memtable rotation.
const fileBatchBytes = 1 << 20

// FileVersionWriter records the file versions of a running backup. Adds are
// batched and committed without fsync, because a backup writes millions of
// them and only its acknowledgement point needs durability: the caller calls
// Commit(true) or Catalog.SyncPoint there. Versions added but not yet
// committed are lost on a crash, as is the backup they belong to.
//
// A FileVersionWriter is safe for concurrent use, though one per backup
// stream is the intended use.
type FileVersionWriter struct {
	c  *Catalog
	mu sync.Mutex
	b  *pebble.Batch
}

// NewFileVersionWriter returns a writer with nothing pending.
func (c *Catalog) NewFileVersionWriter() *FileVersionWriter {
	return &FileVersionWriter{c: c}
}

// Add stages one file version and its name index entry. When the pending
// batch grows past about 1 MiB it is committed (without sync) on the spot.
func (w *FileVersionWriter) Add(v FileVersion) error {
	if err := validateFileVersion(v); err != nil {
		return fmt.Errorf("add file version: %w", err)
	}
	done, err := w.c.enterWrite()
	if err != nil {
		return fmt.Errorf("add file version %s:%s: %w", v.Host, v.Path, err)
	}
	defer done()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b == nil {
		w.b = w.c.db.NewBatch()
	}
	if err := errors.Join(
		w.b.Set(fileKey(v.Host, v.Path, v.SessionID), encodeFileVersion(v), nil),
		w.b.Set(fileNameKey(path.Base(v.Path), v.Host, v.Path), encodeMarker(), nil),
		w.b.Set(sessionFileKey(v.SessionID, v.Host, v.Path), encodeMarker(), nil),
	); err != nil {
		return fmt.Errorf("add file version %s:%s: %w", v.Host, v.Path, err)
	}
	if w.b.Len() >= fileBatchBytes {
		b := w.b
		w.b = nil
		if err := w.c.commit(b, false); err != nil {
			return fmt.Errorf("add file version %s:%s: commit batch: %w", v.Host, v.Path, err)
		}
	}
	return nil
}

// Commit writes the pending versions in one batch. With sync it also makes
// them, and everything committed before them, durable; it does so even when
// nothing is pending, so Commit(true) is always an acknowledgement point.
func (w *FileVersionWriter) Commit(sync bool) error {
	done, err := w.c.enterWrite()
	if err != nil {
		return fmt.Errorf("commit file versions: %w", err)
	}
	defer done()
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.b
	w.b = nil
	switch {
	case b != nil && !b.Empty():
		err = w.c.commit(b, sync)
	case b != nil:
		err = b.Close()
		if err == nil && sync {
			err = w.c.db.LogData(nil, pebble.Sync)
		}
	case sync:
		err = w.c.db.LogData(nil, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("commit file versions: %w", err)
	}
	return nil
}

// Discard drops the pending versions, for a backup that is abandoned.
func (w *FileVersionWriter) Discard() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.b
	w.b = nil
	if b == nil {
		return nil
	}
	done, err := w.c.enter()
	if err != nil {
		// The store is closed; the batch was never applied and is garbage.
		return nil
	}
	defer done()
	if err := b.Close(); err != nil {
		return fmt.Errorf("discard file versions: %w", err)
	}
	return nil
}

func validateFileVersion(v FileVersion) error {
	switch {
	case v.Host == "":
		return invalidf("file version has no host")
	case !path.IsAbs(v.Path) || path.Clean(v.Path) != v.Path:
		// FileTree relies on clean, slash-separated absolute paths.
		return invalidf("file version path %q is not a clean absolute path", v.Path)
	case v.SessionID == 0:
		return invalidf("file version of %q has no session", v.Path)
	}
	return nil
}

// FileVersions returns every stored version of one file, newest session
// first. A path with no versions gives an empty list, not an error.
func (c *Catalog) FileVersions(host, p string) ([]FileVersion, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("file versions of %s:%s: %w", host, p, err)
	}
	defer done()
	out := []FileVersion{}
	err = scanPrefix(c.db, filePathPrefix(host, p), false, func(key, value []byte) error {
		v, err := decodeFileKeyed(key, value, host, p)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("file versions of %s:%s: %w", host, p, err)
	}
	return out, nil
}

// decodeFileKeyed decodes a file version whose key is known to start with
// filePathPrefix(host, p), taking the session from the rest of the key.
func decodeFileKeyed(key, value []byte, host, p string) (FileVersion, error) {
	rest := key[len(filePathPrefix(host, p)):]
	inv, rest, err := decodeU64(rest)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the session", len(rest))
	}
	if err != nil {
		return FileVersion{}, corruptf(key, "bad file version key: %v", err)
	}
	return decodeFileVersion(key, value, host, p, ^inv)
}

// FileTree returns the direct children of dirPath on host, each at its latest
// version, ordered by path. A child directory that holds backed-up files but
// has no version of its own is listed with SessionID 0, so a browser can
// still descend into it.
func (c *Catalog) FileTree(host, dirPath string) ([]FileVersion, error) {
	if !path.IsAbs(dirPath) {
		return nil, fmt.Errorf("file tree of %s:%s: %w", host, dirPath, invalidf("directory path is not absolute"))
	}
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("file tree of %s:%s: %w", host, dirPath, err)
	}
	defer done()
	out, err := fileTree(c.db, host, dirPath)
	if err != nil {
		return nil, fmt.Errorf("file tree of %s:%s: %w", host, dirPath, err)
	}
	return out, nil
}

func fileTree(r pebble.Reader, host, dirPath string) (out []FileVersion, err error) {
	childPrefix := path.Clean(dirPath)
	if childPrefix != "/" {
		childPrefix += "/"
	}
	hostKey := appendEsc([]byte(prefixFile), host)
	lower := appendEscPrefix(append([]byte(nil), hostKey...), childPrefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return nil, err
	}
	defer func() {
		err = errors.Join(err, it.Error(), it.Close())
	}()
	out = []FileVersion{}
	listed := make(map[string]bool)
	// Keys come in path order, each path's versions newest first. Every
	// child costs one seek past its other versions or its subtree, so deep
	// trees below the children are never walked.
	for ok := it.First(); ok; {
		key := it.Key()
		p, rest, err := decodeEsc(key[len(hostKey):])
		if err != nil {
			return nil, corruptf(key, "bad file version key: %v", err)
		}
		rel, found := strings.CutPrefix(p, childPrefix)
		if !found {
			return nil, corruptf(key, "key outside directory %q", childPrefix)
		}
		if rel == "" { // the root directory's own versions, listing "/"
			ok = it.SeekGE(prefixEnd(filePathPrefix(host, p)))
			continue
		}
		name, _, deeper := strings.Cut(rel, "/")
		if deeper {
			if !listed[name] {
				listed[name] = true
				out = append(out, FileVersion{Host: host, Path: childPrefix + name})
			}
			ok = it.SeekGE(prefixEnd(appendEscPrefix(append([]byte(nil), hostKey...), childPrefix+name+"/")))
			continue
		}
		if len(rest) != 8 {
			return nil, corruptf(key, "bad file version key: %d bytes after the path", len(rest))
		}
		value, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", FormatKey(key), err)
		}
		v, err := decodeFileVersion(key, value, host, p, ^uint64FromKey(rest))
		if err != nil {
			return nil, err
		}
		listed[name] = true
		out = append(out, v)
		ok = it.SeekGE(prefixEnd(filePathPrefix(host, p)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func uint64FromKey(b []byte) uint64 {
	v, _, _ := decodeU64(b) // callers have checked the length
	return v
}

// FindByName returns the latest version of every file whose base name
// matches pattern (path.Match syntax), ordered by name, then host, then path;
// at most limit of them when limit > 0. It scans the name index from the
// pattern's literal prefix, so a pattern that starts with a literal ("rep*")
// reads only the matching part of the index.
func (c *Catalog) FindByName(pattern string, limit int) ([]FileVersion, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("find files named %q: %w", pattern, invalidf("%v", err))
	}
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("find files named %q: %w", pattern, err)
	}
	defer done()
	snap := c.db.NewSnapshot()
	out, err := findByName(snap, pattern, limit)
	if cerr := snap.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("find files named %q: %w", pattern, err)
	}
	return out, nil
}

// literalPrefix is the part of a path.Match pattern before its first
// metacharacter: every matching name starts with it.
func literalPrefix(pattern string) string {
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		return pattern[:i]
	}
	return pattern
}

// nameMatcher returns a test of base names against a checked path.Match
// pattern. A pattern whose only metacharacter is "*" (the usual "*.pdf",
// "report*2026*") is matched by its literal pieces, which is several times
// faster than path.Match on the hundreds of thousands of names a pattern
// starting with a wildcard has to test.
func nameMatcher(pattern string) func(string) bool {
	if strings.ContainsAny(pattern, `?[\/`) {
		return func(name string) bool {
			ok, _ := path.Match(pattern, name) // checked before the scan
			return ok
		}
	}
	parts := strings.Split(pattern, "*")
	first, last, middle := parts[0], parts[len(parts)-1], parts[1:max(len(parts)-1, 1)]
	if len(parts) == 1 {
		return func(name string) bool { return name == pattern }
	}
	return func(name string) bool {
		if strings.Contains(name, "/") {
			ok, _ := path.Match(pattern, name) // "*" never spans a "/"; base names hold none
			return ok
		}
		if len(name) < len(first)+len(last) || !strings.HasPrefix(name, first) || !strings.HasSuffix(name, last) {
			return false
		}
		rest := name[len(first) : len(name)-len(last)]
		for _, m := range middle {
			i := strings.Index(rest, m)
			if i < 0 {
				return false
			}
			rest = rest[i+len(m):]
		}
		return true
	}
}

func findByName(r pebble.Reader, pattern string, limit int) ([]FileVersion, error) {
	out := []FileVersion{}
	match := nameMatcher(pattern)
	lower := appendEscPrefix([]byte(prefixFileName), literalPrefix(pattern))
	err := scanPrefix(r, lower, false, func(key, value []byte) error {
		base, rest, err := decodeEsc(key[len(prefixFileName):])
		if err != nil {
			return corruptf(key, "bad name index key: %v", err)
		}
		if !match(base) {
			return nil
		}
		host, p, err := decodeHostPath(rest)
		if err != nil {
			return corruptf(key, "bad name index key: %v", err)
		}
		if err := decodeMarker(key, value); err != nil {
			return err
		}
		v, err := latestVersion(r, host, p)
		if errors.Is(err, ErrNotFound) {
			return corruptf(key, "name index entry without a file version")
		}
		if err != nil {
			return err
		}
		out = append(out, v)
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		return nil
	})
	return out, err
}

// decodeHostPath reads the host and path that end a name index key.
func decodeHostPath(rest []byte) (host, p string, err error) {
	if host, rest, err = decodeEsc(rest); err != nil {
		return
	}
	if p, rest, err = decodeEsc(rest); err != nil {
		return
	}
	if len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the path", len(rest))
	}
	return
}

// latestVersion returns the newest version of one file.
func latestVersion(r pebble.Reader, host, p string) (FileVersion, error) {
	var v FileVersion
	found := false
	err := scanPrefix(r, filePathPrefix(host, p), false, func(key, value []byte) error {
		var err error
		v, err = decodeFileKeyed(key, value, host, p)
		if err != nil {
			return err
		}
		found = true
		return errStop
	})
	if err != nil {
		return FileVersion{}, err
	}
	if !found {
		return FileVersion{}, ErrNotFound
	}
	return v, nil
}
