package catalog

import (
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// AppendActivity adds an entry to the activity log and returns it with its
// sequence number. A zero Time becomes now and a zero Severity becomes Info.
// The entry, its by-job index entry (when JobID is set) and the sequence are
// one synced batch: an entry the caller saw acknowledged survives a crash.
func (c *Catalog) AppendActivity(e ActivityEntry) (ActivityEntry, error) {
	done, err := c.enterWrite()
	if err != nil {
		return ActivityEntry{}, fmt.Errorf("append activity %s: %w", e.Code, err)
	}
	defer done()
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.Severity == 0 {
		e.Severity = Info
	}
	c.activityMu.Lock()
	defer c.activityMu.Unlock()
	w := c.newBatch()
	e.Seq = w.nextID(c, seqActivity)
	w.set(activityKey(e.Seq), encodeActivity(e))
	if e.JobID != 0 {
		w.set(activityJobKey(e.JobID, e.Seq), encodeMarker())
	}
	if err := w.commit(c, true); err != nil {
		return ActivityEntry{}, fmt.Errorf("append activity %s: %w", e.Code, err)
	}
	return e, nil
}

// Activity returns the entries that pass f, oldest first. With f.Limit set it
// keeps the newest Limit matches, scanning backwards so it can stop as soon
// as it has them. With f.JobID set it reads only that job's entries through
// the by-job index.
func (c *Catalog) Activity(f ActivityFilter) ([]ActivityEntry, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	defer done()
	snap := c.db.NewSnapshot()
	out, err := activity(snap, f)
	if cerr := snap.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("read activity: %w", err)
	}
	return out, nil
}

func activity(r pebble.Reader, f ActivityFilter) ([]ActivityEntry, error) {
	out := []ActivityEntry{}
	keep := func(e ActivityEntry) error {
		if (f.Code != "" && e.Code != f.Code) ||
			e.Severity < f.MinSeverity ||
			(!f.Since.IsZero() && e.Time.Before(f.Since)) {
			return nil
		}
		out = append(out, e)
		if f.Limit > 0 && len(out) >= f.Limit {
			return errStop
		}
		return nil
	}
	var err error
	if f.JobID != 0 {
		err = idsFromIndex(r, activityJobPrefix(f.JobID), true, func(seq uint64) error {
			key := activityKey(seq)
			e, err := readByID(r, key, seq, decodeActivity)
			if err != nil {
				return fmt.Errorf("entry %d from job %d index: %w", seq, f.JobID, err)
			}
			if e.JobID != f.JobID {
				return corruptf(activityJobKey(f.JobID, seq), "index entry points to an entry of job %d", e.JobID)
			}
			return keep(e)
		})
	} else {
		err = scanPrefix(r, []byte(prefixActivity), true, func(key, value []byte) error {
			seq, err := idFromKey(key, prefixActivity)
			if err != nil {
				return err
			}
			e, err := decodeActivity(key, value, seq)
			if err != nil {
				return err
			}
			return keep(e)
		})
	}
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}
