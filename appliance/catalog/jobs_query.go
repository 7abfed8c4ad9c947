package catalog

import (
	"fmt"
)

// DeleteJob removes a job record. It refuses (ErrInvalid) a job that backup
// sessions still point to, because those sessions are how an operator finds
// what the job saved; and returns ErrNotFound for an unknown ID. Synced.
func (c *Catalog) DeleteJob(id uint64) error {
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("delete job %d: %w", id, err)
	}
	defer done()
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	c.sessionMu.Lock()
	defer c.sessionMu.Unlock()
	key := jobKey(id)
	if _, err := get(c.db, key); err != nil {
		return fmt.Errorf("delete job %d: %w", id, err)
	}
	hasSessions := false
	err = scanPrefix(c.db, sessionJobPrefix(id), false, func(_, _ []byte) error {
		hasSessions = true
		return errStop
	})
	if err != nil {
		return fmt.Errorf("delete job %d: look for its sessions: %w", id, err)
	}
	if hasSessions {
		return fmt.Errorf("delete job %d: %w", id, invalidf("backup sessions still belong to the job; keep it while they do"))
	}
	w := c.newBatch()
	w.del(key)
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("delete job %d: %w", id, err)
	}
	return nil
}
