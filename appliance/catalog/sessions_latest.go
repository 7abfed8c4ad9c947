package catalog

import (
	"errors"
	"fmt"
)

// LatestSession returns the newest session of one entity of a scenario
// that has a disk-store copy, or ErrNotFound. An incremental backup reads
// it to find the previous version of every file.
func (c *Catalog) LatestSession(scenarioID uint64, entity string) (Session, error) {
	done, err := c.enter()
	if err != nil {
		return Session{}, fmt.Errorf("latest session of scenario %d %s: %w", scenarioID, entity, err)
	}
	defer done()
	errFound := errors.New("found")
	var out Session
	// Sessions are keyed by increasing ID, so the first match walking
	// backwards is the newest. The scan is linear in sessions, which are
	// few (one per entity per backup) next to file versions.
	err = scanPrefix(c.db, []byte(prefixSession), true, func(key, value []byte) error {
		id, err := idFromKey(key, prefixSession)
		if err != nil {
			return err
		}
		s, err := decodeSession(key, value, id)
		if err != nil {
			return err
		}
		if s.ScenarioID == scenarioID && s.Entity == entity && s.Stored != "" {
			out = s
			return errFound
		}
		return nil
	})
	switch {
	case errors.Is(err, errFound):
		return out, nil
	case err != nil:
		return Session{}, fmt.Errorf("latest session of scenario %d %s: %w", scenarioID, entity, err)
	}
	return Session{}, fmt.Errorf("latest session of scenario %d %s: %w", scenarioID, entity, ErrNotFound)
}
