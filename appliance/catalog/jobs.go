package catalog

import (
	"fmt"
	"time"
)

// CreateJob stores a new job, assigning its ID from the job sequence and
// setting Created when zero. Synced.
func (c *Catalog) CreateJob(j Job) (Job, error) {
	done, err := c.enterWrite()
	if err != nil {
		return Job{}, fmt.Errorf("create job %q: %w", j.Name, err)
	}
	defer done()
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	w := c.newBatch()
	j.ID = w.nextID(c, seqJob)
	if j.Created.IsZero() {
		j.Created = time.Now().UTC()
	}
	w.set(jobKey(j.ID), encodeJob(j))
	if err := w.commit(c, true); err != nil {
		return Job{}, fmt.Errorf("create job %q: %w", j.Name, err)
	}
	return j, nil
}

// PutJob replaces an existing job (state changes, results). It returns
// ErrNotFound for an ID CreateJob never handed out or that is gone, so a
// caller cannot plant an ID the sequence will hand out later. Synced.
func (c *Catalog) PutJob(j Job) error {
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("put job %d: %w", j.ID, err)
	}
	defer done()
	c.jobMu.Lock()
	defer c.jobMu.Unlock()
	key := jobKey(j.ID)
	if _, err := get(c.db, key); err != nil {
		return fmt.Errorf("put job %d: %w", j.ID, err)
	}
	w := c.newBatch()
	w.set(key, encodeJob(j))
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("put job %d: %w", j.ID, err)
	}
	return nil
}

// Job returns the job with the given ID.
func (c *Catalog) Job(id uint64) (Job, error) {
	done, err := c.enter()
	if err != nil {
		return Job{}, fmt.Errorf("read job %d: %w", id, err)
	}
	defer done()
	j, err := readByID(c.db, jobKey(id), id, decodeJob)
	if err != nil {
		return Job{}, fmt.Errorf("read job %d: %w", id, err)
	}
	return j, nil
}

// Jobs returns every job in ID (creation) order.
func (c *Catalog) Jobs() ([]Job, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer done()
	out, err := listByID(c.db, prefixJob, decodeJob)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}
