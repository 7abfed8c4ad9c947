package catalog

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// CreateScenario stores a new scenario with its entities. It assigns s.ID
// from the scenario sequence, sets Created and Updated when zero, and writes
// the scenario, its name index entry, its entities and the sequence in one
// synced batch: after a crash either all of them exist or none does. It
// returns ErrExists if the name is taken.
func (c *Catalog) CreateScenario(s Scenario, entities []Entity) (Scenario, error) {
	if err := validateScenario(s); err != nil {
		return Scenario{}, fmt.Errorf("create scenario %q: %w", s.Name, err)
	}
	if err := validateEntities(entities); err != nil {
		return Scenario{}, fmt.Errorf("create scenario %q: %w", s.Name, err)
	}
	done, err := c.enterWrite()
	if err != nil {
		return Scenario{}, fmt.Errorf("create scenario %q: %w", s.Name, err)
	}
	defer done()
	c.scenarioMu.Lock()
	defer c.scenarioMu.Unlock()

	if err := c.nameFree(s.Name); err != nil {
		return Scenario{}, fmt.Errorf("create scenario %q: %w", s.Name, err)
	}
	w := c.newBatch()
	s.ID = w.nextID(c, seqScenario)
	now := time.Now().UTC()
	if s.Created.IsZero() {
		s.Created = now
	}
	if s.Updated.IsZero() {
		s.Updated = now
	}
	w.set(scenarioKey(s.ID), encodeScenario(s))
	w.set(scenarioNameKey(s.Name), encodeScenarioRef(s.ID))
	for _, e := range entities {
		w.set(entityKey(s.ID, e.Name), encodeEntity(e))
	}
	if err := w.commit(c, true); err != nil {
		return Scenario{}, fmt.Errorf("create scenario %q: %w", s.Name, err)
	}
	return s, nil
}

// nameFree returns ErrExists if a scenario already has name. The caller holds
// scenarioMu so the answer stays true until its batch commits.
func (c *Catalog) nameFree(name string) error {
	_, err := get(c.db, scenarioNameKey(name))
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, ErrNotFound):
		return nil
	}
	return fmt.Errorf("check name index: %w", err)
}

func validateScenario(s Scenario) error {
	if s.Name == "" {
		return invalidf("scenario name is empty")
	}
	return nil
}

func validateEntities(entities []Entity) error {
	seen := make(map[string]bool, len(entities))
	for _, e := range entities {
		if e.Name == "" {
			return invalidf("entity name is empty")
		}
		if seen[e.Name] {
			return invalidf("entity %q listed twice", e.Name)
		}
		seen[e.Name] = true
	}
	return nil
}

// Scenario returns the scenario called name.
func (c *Catalog) Scenario(name string) (Scenario, error) {
	done, err := c.enter()
	if err != nil {
		return Scenario{}, fmt.Errorf("read scenario %q: %w", name, err)
	}
	defer done()
	// A snapshot keeps the index lookup and the record read consistent with
	// each other while a rename or delete commits.
	snap := c.db.NewSnapshot()
	s, err := c.scenarioByName(snap, name)
	if cerr := snap.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Scenario{}, fmt.Errorf("read scenario %q: %w", name, err)
	}
	return s, nil
}

func (c *Catalog) scenarioByName(r pebble.Reader, name string) (Scenario, error) {
	key := scenarioNameKey(name)
	raw, err := get(r, key)
	if err != nil {
		return Scenario{}, err
	}
	id, err := decodeScenarioRef(key, raw)
	if err != nil {
		return Scenario{}, err
	}
	s, err := readScenario(r, id)
	if errors.Is(err, ErrNotFound) {
		return Scenario{}, corruptf(key, "name index points to missing scenario %d", id)
	}
	if err != nil {
		return Scenario{}, err
	}
	if s.Name != name {
		return Scenario{}, corruptf(key, "name index points to scenario %d, which is called %q", id, s.Name)
	}
	return s, nil
}

func readScenario(r pebble.Reader, id uint64) (Scenario, error) {
	key := scenarioKey(id)
	raw, err := get(r, key)
	if err != nil {
		return Scenario{}, err
	}
	return decodeScenario(key, raw, id)
}

// ScenarioByID returns the scenario with the given ID.
func (c *Catalog) ScenarioByID(id uint64) (Scenario, error) {
	done, err := c.enter()
	if err != nil {
		return Scenario{}, fmt.Errorf("read scenario %d: %w", id, err)
	}
	defer done()
	s, err := readScenario(c.db, id)
	if err != nil {
		return Scenario{}, fmt.Errorf("read scenario %d: %w", id, err)
	}
	return s, nil
}

// Scenarios returns every scenario, ordered by name. Damaged records are
// skipped and reported together in an error wrapping ErrCorrupt, returned
// beside the scenarios that could be read.
func (c *Catalog) Scenarios() ([]Scenario, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list scenarios: %w", err)
	}
	defer done()
	out := []Scenario{}
	var damaged []error
	err = scanPrefix(c.db, []byte(prefixScenario), false, func(key, value []byte) error {
		id, err := idFromKey(key, prefixScenario)
		if err == nil {
			var s Scenario
			if s, err = decodeScenario(key, value, id); err == nil {
				out = append(out, s)
				return nil
			}
		}
		if errors.Is(err, ErrCorrupt) {
			// One damaged record must not hide every other scenario.
			damaged = append(damaged, err)
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list scenarios: %w", err)
	}
	// Stored by ID so IDs can be allocated in order; callers want names.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(damaged) > 0 {
		return out, fmt.Errorf("list scenarios: %w", errors.Join(damaged...))
	}
	return out, nil
}

// UpdateScenario replaces the stored scenario with the same ID. A name change
// moves the name index entry in the same batch; ErrExists if the new name is
// taken. Created is kept from the stored record when s.Created is zero;
// Updated is set to now.
func (c *Catalog) UpdateScenario(s Scenario) error {
	if err := validateScenario(s); err != nil {
		return fmt.Errorf("update scenario %d: %w", s.ID, err)
	}
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("update scenario %d: %w", s.ID, err)
	}
	defer done()
	c.scenarioMu.Lock()
	defer c.scenarioMu.Unlock()

	old, err := readScenario(c.db, s.ID)
	if err != nil {
		return fmt.Errorf("update scenario %d: %w", s.ID, err)
	}
	w := c.newBatch()
	if old.Name != s.Name {
		if err := c.nameFree(s.Name); err != nil {
			w.err = fmt.Errorf("rename to %q: %w", s.Name, err)
		}
		w.del(scenarioNameKey(old.Name))
		w.set(scenarioNameKey(s.Name), encodeScenarioRef(s.ID))
	}
	if s.Created.IsZero() {
		s.Created = old.Created
	}
	s.Updated = time.Now().UTC()
	w.set(scenarioKey(s.ID), encodeScenario(s))
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("update scenario %d: %w", s.ID, err)
	}
	return nil
}

// DeleteScenario removes the scenario called name, its name index entry and
// its entities in one synced batch, and returns what it removed. Sessions and
// file versions of the scenario are history and stay.
func (c *Catalog) DeleteScenario(name string) (Scenario, error) {
	done, err := c.enterWrite()
	if err != nil {
		return Scenario{}, fmt.Errorf("delete scenario %q: %w", name, err)
	}
	defer done()
	c.scenarioMu.Lock()
	defer c.scenarioMu.Unlock()

	s, err := c.scenarioByName(c.db, name)
	if err != nil {
		return Scenario{}, fmt.Errorf("delete scenario %q: %w", name, err)
	}
	w := c.newBatch()
	if w.err == nil {
		w.err = scanPrefix(c.db, entityPrefix(s.ID), false, func(key, _ []byte) error {
			w.del(key)
			return w.err
		})
	}
	w.del(scenarioKey(s.ID))
	w.del(scenarioNameKey(name))
	if err := w.commit(c, true); err != nil {
		return Scenario{}, fmt.Errorf("delete scenario %q: %w", name, err)
	}
	return s, nil
}

// Entities returns the entities of a scenario, ordered by name. It returns
// ErrNotFound if the scenario does not exist.
func (c *Catalog) Entities(scenarioID uint64) ([]Entity, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list entities of scenario %d: %w", scenarioID, err)
	}
	defer done()
	snap := c.db.NewSnapshot()
	out, err := entitiesOf(snap, scenarioID)
	if cerr := snap.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("list entities of scenario %d: %w", scenarioID, err)
	}
	return out, nil
}

func entitiesOf(r pebble.Reader, scenarioID uint64) ([]Entity, error) {
	if _, err := get(r, scenarioKey(scenarioID)); err != nil {
		return nil, err
	}
	prefix := entityPrefix(scenarioID)
	out := []Entity{}
	err := scanPrefix(r, prefix, false, func(key, value []byte) error {
		name, rest, err := decodeEsc(key[len(prefix):])
		if err == nil && len(rest) != 0 {
			err = fmt.Errorf("%d bytes after entity name", len(rest))
		}
		if err != nil {
			return corruptf(key, "bad entity key: %v", err)
		}
		e, err := decodeEntity(key, value, scenarioID, name)
		if err != nil {
			return err
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// ReplaceEntities makes entities the complete entity list of a scenario, in
// one synced batch.
func (c *Catalog) ReplaceEntities(scenarioID uint64, entities []Entity) error {
	if err := validateEntities(entities); err != nil {
		return fmt.Errorf("replace entities of scenario %d: %w", scenarioID, err)
	}
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("replace entities of scenario %d: %w", scenarioID, err)
	}
	defer done()
	c.scenarioMu.Lock()
	defer c.scenarioMu.Unlock()

	if _, err := get(c.db, scenarioKey(scenarioID)); err != nil {
		return fmt.Errorf("replace entities of scenario %d: %w", scenarioID, err)
	}
	w := c.newBatch()
	// Deleting first and setting after is safe in one batch: Pebble applies
	// a batch in order, so a name that stays ends up set.
	w.err = scanPrefix(c.db, entityPrefix(scenarioID), false, func(key, _ []byte) error {
		w.del(key)
		return w.err
	})
	for _, e := range entities {
		w.set(entityKey(scenarioID, e.Name), encodeEntity(e))
	}
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("replace entities of scenario %d: %w", scenarioID, err)
	}
	return nil
}
