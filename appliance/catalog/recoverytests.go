package catalog

import (
	"fmt"
	"time"
)

// CreateRecoveryTest stores the result of an Assured Recovery test,
// assigning its ID and setting Started when zero. Synced: the result is
// what a backup's consistency claim rests on. Tests are history: they stay
// when their scenario is deleted, as sessions do.
func (c *Catalog) CreateRecoveryTest(t RecoveryTest) (RecoveryTest, error) {
	if t.ScenarioID == 0 {
		return RecoveryTest{}, fmt.Errorf("create recovery test: %w", invalidf("scenario ID is 0"))
	}
	done, err := c.enterWrite()
	if err != nil {
		return RecoveryTest{}, fmt.Errorf("create recovery test of scenario %d: %w", t.ScenarioID, err)
	}
	defer done()
	c.testMu.Lock()
	defer c.testMu.Unlock()
	w := c.newBatch()
	t.ID = w.nextID(c, seqRecoveryTest)
	if t.Started.IsZero() {
		t.Started = time.Now().UTC()
	}
	w.set(recoveryTestKey(t.ScenarioID, t.ID), encodeRecoveryTest(t))
	if err := w.commit(c, true); err != nil {
		return RecoveryTest{}, fmt.Errorf("create recovery test of scenario %d: %w", t.ScenarioID, err)
	}
	return t, nil
}

// RecoveryTests returns the tests of a scenario, newest first; at most
// limit of them when limit > 0.
func (c *Catalog) RecoveryTests(scenarioID uint64, limit int) ([]RecoveryTest, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list recovery tests of scenario %d: %w", scenarioID, err)
	}
	defer done()
	out := []RecoveryTest{}
	prefix := recoveryTestPrefix(scenarioID)
	err = scanPrefix(c.db, prefix, false, func(key, value []byte) error {
		if limit > 0 && len(out) >= limit {
			return errStop
		}
		inv, rest, err := decodeU64(key[len(prefix):])
		if err == nil && len(rest) != 0 {
			err = fmt.Errorf("%d bytes after the ID", len(rest))
		}
		if err != nil {
			return corruptf(key, "bad key: %v", err)
		}
		t, err := decodeRecoveryTest(key, value, scenarioID, ^inv)
		if err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list recovery tests of scenario %d: %w", scenarioID, err)
	}
	return out, nil
}
