package scenarios

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/holdfast/holdfast/appliance/activity"
	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Handlers finds the scenario handler plugin for a scenario type.
type Handlers interface {
	ScenarioHandler(typ string) (sdk.ScenarioHandler, error)
}

// Store is the part of the catalog scenarios live in.
type Store interface {
	CreateScenario(s catalog.Scenario, entities []catalog.Entity) (catalog.Scenario, error)
	Scenario(name string) (catalog.Scenario, error)
	Scenarios() ([]catalog.Scenario, error)
	DeleteScenario(name string) (catalog.Scenario, error)
	Entities(scenarioID uint64) ([]catalog.Entity, error)
}

// Recorder writes the activity log.
type Recorder interface {
	activity.Recorder
	RecordError(ctx context.Context, err error)
}

// Service creates, lists and removes scenarios.
type Service struct {
	store      Store
	handlers   Handlers
	rec        Recorder
	localHosts []string
	// Enrolled, when set, says whether an agent of that name is enrolled:
	// such hosts may be masters and replicas.
	Enrolled func(host string) bool
}

// New returns a Service. localHosts are the host names that mean this
// appliance (always including "localhost").
func New(store Store, handlers Handlers, rec Recorder, localHosts []string) *Service {
	return &Service{store: store, handlers: handlers, rec: rec, localHosts: localHosts}
}

// Detail is a scenario with its entities.
type Detail struct {
	Scenario catalog.Scenario
	Entities []catalog.Entity
}

// Create validates def, asks the scenario type's handler for the entities,
// and stores both in one synced catalog write. Every refusal is a
// *messages.Error and is recorded in the activity log.
func (s *Service) Create(ctx context.Context, def Definition) (Detail, error) {
	d, err := s.create(ctx, def)
	if err != nil {
		s.report(ctx, err)
	}
	return d, err
}

func (s *Service) create(ctx context.Context, def Definition) (Detail, error) {
	if err := def.NormalizeFor(Hosts{Local: s.localHosts, Enrolled: s.Enrolled}); err != nil {
		return Detail{}, messages.Wrap(err, messages.ScenarioInvalid, err.Error())
	}
	if !def.AssuredRecovery && !*def.Suspend {
		return Detail{}, messages.New(messages.ScenarioNoConsistency, def.Name)
	}
	if _, err := s.store.Scenario(def.Name); err == nil {
		return Detail{}, messages.New(messages.ScenarioExists, def.Name)
	} else if !errors.Is(err, catalog.ErrNotFound) {
		return Detail{}, catalogErr(err)
	}
	h, err := s.handlers.ScenarioHandler(def.Type)
	if err != nil {
		return Detail{}, err
	}
	rec := def.Record()
	var found []sdk.Entity
	if slices.Contains(s.localHosts, rec.MasterHost) {
		found, err = h.ListEntities(ctx, sdk.ScenarioConfig{Name: rec.Name, MasterHost: rec.MasterHost, Roots: rec.Roots})
		if err != nil {
			if messages.CodeOf(err) != "" {
				return Detail{}, err
			}
			return Detail{}, messages.Wrap(err, messages.EntitiesUnavailable, def.Name, err)
		}
	} else {
		// The handler discovers entities where the data is; on an agent
		// that discovery is not built yet, so each root is one entity
		// and says so, rather than the appliance guessing from its own
		// filesystem.
		for _, root := range rec.Roots {
			found = append(found, sdk.Entity{Name: root, Kind: "directory", Paths: []string{root},
				Detail: map[string]string{"host": rec.MasterHost, "discovery": "roots as given; volume discovery on agents is not built yet"}})
		}
	}
	entities := make([]catalog.Entity, len(found))
	for i, e := range found {
		entities[i] = catalog.Entity{Name: e.Name, Kind: e.Kind, Paths: e.Paths, Detail: e.Detail}
	}
	created, err := s.store.CreateScenario(rec, entities)
	if errors.Is(err, catalog.ErrExists) {
		return Detail{}, messages.New(messages.ScenarioExists, def.Name)
	}
	if err != nil {
		return Detail{}, catalogErr(err)
	}
	for i := range entities {
		entities[i].ScenarioID = created.ID
	}
	s.rec.Record(ctx, messages.ScenarioCreated, created.Name, created.ID, created.Type, len(entities))
	return Detail{Scenario: created, Entities: entities}, nil
}

// List returns every scenario, ordered by name. Damaged records are left
// out and recorded in the activity log.
func (s *Service) List(ctx context.Context) ([]catalog.Scenario, error) {
	l, err := s.store.Scenarios()
	if err != nil {
		err = catalogErr(err)
		s.report(ctx, err)
		if l != nil && messages.CodeOf(err) == messages.CatalogCorrupt {
			// The damage is in the activity log; the readable scenarios
			// are still worth showing.
			return l, nil
		}
	}
	return l, err
}

// Get returns one scenario and its entities.
func (s *Service) Get(ctx context.Context, name string) (Detail, error) {
	sc, err := s.store.Scenario(name)
	if err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return Detail{}, messages.New(messages.ScenarioNotFound, name)
		}
		err = scenarioReadErr(name, err)
		s.report(ctx, err)
		return Detail{}, err
	}
	ents, err := s.store.Entities(sc.ID)
	if err != nil {
		err = scenarioReadErr(name, err)
		s.report(ctx, err)
		return Detail{}, err
	}
	return Detail{Scenario: sc, Entities: ents}, nil
}

// Delete removes the scenario's catalog records only: its replicas, spool and
// backup sessions stay where they are, as operators expect from "remove from
// the backup server's database".
func (s *Service) Delete(ctx context.Context, name string) (catalog.Scenario, error) {
	sc, err := s.store.DeleteScenario(name)
	if errors.Is(err, catalog.ErrNotFound) {
		return catalog.Scenario{}, messages.New(messages.ScenarioNotFound, name)
	}
	if err != nil {
		err = catalogErr(err)
		s.report(ctx, err)
		return catalog.Scenario{}, err
	}
	s.rec.Record(ctx, messages.ScenarioDeleted, sc.Name, sc.ID)
	return sc, nil
}

// report records a refusal in the activity log. Lookups of names that do not
// exist are the caller's typo, not an event worth keeping.
func (s *Service) report(ctx context.Context, err error) {
	if messages.CodeOf(err) == messages.ScenarioNotFound {
		return
	}
	s.rec.RecordError(ctx, err)
}

func catalogErr(err error) error {
	if errors.Is(err, catalog.ErrCorrupt) {
		return messages.Wrap(err, messages.CatalogCorrupt, err)
	}
	return messages.Wrap(err, messages.CatalogWriteFailed, err)
}

func scenarioReadErr(name string, err error) error {
	if errors.Is(err, catalog.ErrCorrupt) {
		return messages.Wrap(err, messages.ScenarioDataUnreadable, name, err)
	}
	return fmt.Errorf("read scenario %q: %w", name, err)
}
