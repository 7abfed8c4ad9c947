package catalog

import (
	"fmt"
)

// CreateSession stores a new backup session of an existing job, assigning
// its ID from the session sequence. The session and its by-job index entry
// are written in one synced batch.
func (c *Catalog) CreateSession(s Session) (Session, error) {
	done, err := c.enterWrite()
	if err != nil {
		return Session{}, fmt.Errorf("create session of job %d: %w", s.JobID, err)
	}
	defer done()
	// The job is checked under the session lock, which DeleteJob holds
	// while it looks for the job's sessions: no session can be added to a
	// job being deleted.
	c.sessionMu.Lock()
	defer c.sessionMu.Unlock()
	if _, err := get(c.db, jobKey(s.JobID)); err != nil {
		return Session{}, fmt.Errorf("create session of job %d: job: %w", s.JobID, err)
	}
	w := c.newBatch()
	s.ID = w.nextID(c, seqSession)
	w.set(sessionKey(s.ID), encodeSession(s))
	w.set(sessionJobKey(s.JobID, s.ID), encodeMarker())
	if err := w.commit(c, true); err != nil {
		return Session{}, fmt.Errorf("create session of job %d: %w", s.JobID, err)
	}
	return s, nil
}

// Session returns the session with the given ID.
func (c *Catalog) Session(id uint64) (Session, error) {
	done, err := c.enter()
	if err != nil {
		return Session{}, fmt.Errorf("read session %d: %w", id, err)
	}
	defer done()
	s, err := readByID(c.db, sessionKey(id), id, decodeSession)
	if err != nil {
		return Session{}, fmt.Errorf("read session %d: %w", id, err)
	}
	return s, nil
}

// SessionsOfJob returns the sessions of one job in ID order, through the
// by-job index.
func (c *Catalog) SessionsOfJob(jobID uint64) ([]Session, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list sessions of job %d: %w", jobID, err)
	}
	defer done()
	snap := c.db.NewSnapshot()
	out := []Session{}
	err = idsFromIndex(snap, sessionJobPrefix(jobID), false, func(id uint64) error {
		s, err := readByID(snap, sessionKey(id), id, decodeSession)
		if err != nil {
			return fmt.Errorf("session %d: %w", id, err)
		}
		out = append(out, s)
		return nil
	})
	if cerr := snap.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("list sessions of job %d: %w", jobID, err)
	}
	return out, nil
}
