package catalog

import (
	"bytes"
	"fmt"
	"path"

	"github.com/cockroachdb/pebble/v2"
)

// Sessions returns every backup session in ID order.
func (c *Catalog) Sessions() ([]Session, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer done()
	out, err := listByID(c.db, prefixSession, decodeSession)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// SessionByStored returns the session recorded with the given store
// session ID (Session.Stored), or ErrNotFound. It scans the sessions: there
// are thousands, not millions, and the lookup serves rebuilds, not backups.
func (c *Catalog) SessionByStored(stored string) (Session, error) {
	list, err := c.Sessions()
	if err != nil {
		return Session{}, fmt.Errorf("session stored as %s: %w", stored, err)
	}
	for _, s := range list {
		if s.Stored == stored {
			return s, nil
		}
	}
	return Session{}, fmt.Errorf("session stored as %s: %w", stored, ErrNotFound)
}

// hostPath is one file of a session.
type hostPath struct{ host, path string }

// DeleteSession removes a session, its by-job index entry and every file
// version it recorded, with their name index entries when no other version
// of the file remains. The versions go first, in batches, and the session
// record last (synced): a crash part way leaves the session with some of
// its versions, and DeleteSession run again finishes the work.
func (c *Catalog) DeleteSession(id uint64) error {
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	defer done()
	c.sessionMu.Lock()
	defer c.sessionMu.Unlock()
	s, err := readByID(c.db, sessionKey(id), id, decodeSession)
	if err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	files, indexed, err := sessionFiles(c.db, id)
	if err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	if len(files) == 0 && s.Files > 0 {
		// Versions recorded before the files-by-session index existed.
		if files, err = sessionFilesByScan(c.db, id); err != nil {
			return fmt.Errorf("delete session %d: %w", id, err)
		}
	}
	var unnamed []hostPath
	probe, err := newVersionProbe(c.db)
	if err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	defer probe.close()
	w := c.newBatch()
	for _, f := range files {
		w.del(fileKey(f.host, f.path, id))
		if indexed {
			w.del(sessionFileKey(id, f.host, f.path))
		}
		other, err := probe.hasOther(f.host, f.path, id)
		if err != nil {
			w.b.Close()
			return fmt.Errorf("delete session %d: %w", id, err)
		}
		if !other {
			w.del(fileNameKey(path.Base(f.path), f.host, f.path))
			unnamed = append(unnamed, f)
		}
		if w.b.Len() >= fileBatchBytes {
			if err := w.commit(c, false); err != nil {
				return fmt.Errorf("delete session %d: %w", id, err)
			}
			w = c.newBatch()
		}
	}
	w.del(sessionKey(id))
	w.del(sessionJobKey(s.JobID, id))
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	// A backup may have added a version of a file whose name entry this
	// just removed, between the check and the commit: put those back.
	recheck, err := newVersionProbe(c.db)
	if err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	defer recheck.close()
	w = c.newBatch()
	for _, f := range unnamed {
		back, err := recheck.hasOther(f.host, f.path, 0)
		if err != nil {
			w.b.Close()
			return fmt.Errorf("delete session %d: recheck %s:%s: %w", id, f.host, f.path, err)
		}
		if back {
			w.set(fileNameKey(path.Base(f.path), f.host, f.path), encodeMarker())
		}
	}
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("delete session %d: %w", id, err)
	}
	return nil
}

// sessionFiles reads the files-by-session index of a session; indexed says
// whether it had any entry.
func sessionFiles(r pebble.Reader, id uint64) (files []hostPath, indexed bool, err error) {
	prefix := sessionFilePrefix(id)
	err = scanPrefix(r, prefix, false, func(key, value []byte) error {
		host, p, err := decodeHostPath(key[len(prefix):])
		if err != nil {
			return corruptf(key, "bad files-by-session key: %v", err)
		}
		files = append(files, hostPath{host, p})
		return nil
	})
	return files, len(files) > 0, err
}

// sessionFilesByScan finds a session's versions by reading every file key.
func sessionFilesByScan(r pebble.Reader, id uint64) ([]hostPath, error) {
	var files []hostPath
	err := scanPrefix(r, []byte(prefixFile), false, func(key, value []byte) error {
		host, rest, err := decodeEsc(key[len(prefixFile):])
		if err == nil {
			var p string
			if p, rest, err = decodeEsc(rest); err == nil {
				var inv uint64
				if inv, rest, err = decodeU64(rest); err == nil && len(rest) == 0 {
					if ^inv == id {
						files = append(files, hostPath{host, p})
					}
					return nil
				}
			}
		}
		return corruptf(key, "bad file version key: %v", err)
	})
	return files, err
}

// versionProbe answers, for one file after another, whether it has a
// version of a session other than one: a single iterator serves every
// file (an iterator per file costs ten times more over 100,000 files).
type versionProbe struct{ it *pebble.Iterator }

func newVersionProbe(r pebble.Reader) (*versionProbe, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte(prefixFile), UpperBound: prefixEnd([]byte(prefixFile))})
	if err != nil {
		return nil, err
	}
	return &versionProbe{it: it}, nil
}

func (p *versionProbe) close() error { return p.it.Close() }

// hasOther says whether host:path has a version of a session other than
// id; id 0 asks whether it has any version.
func (p *versionProbe) hasOther(host, path string, id uint64) (bool, error) {
	prefix := filePathPrefix(host, path)
	// Files come in key order and a session's files are mostly neighbours:
	// stepping forward a little is much cheaper than a seek, which reads
	// index blocks again.
	ok := p.it.Valid()
	if !ok || bytes.Compare(p.it.Key(), prefix) > 0 {
		ok = p.it.SeekGE(prefix) // never positioned, or asked to go back
	}
	for steps := 0; ok && bytes.Compare(p.it.Key(), prefix) < 0; steps++ {
		if steps == 16 {
			ok = p.it.SeekGE(prefix)
			break
		}
		ok = p.it.Next()
	}
	for ; ok; ok = p.it.Next() {
		key := p.it.Key()
		if len(key) < len(prefix) || string(key[:len(prefix)]) != string(prefix) {
			break
		}
		inv, _, err := decodeU64(key[len(prefix):])
		if err != nil {
			return false, corruptf(key, "bad file version key: %v", err)
		}
		if ^inv != id {
			return true, nil
		}
	}
	return false, p.it.Error()
}
