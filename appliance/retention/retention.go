// Package retention decides which backup sessions have expired and runs
// prune jobs: expired sessions are deleted from the catalog, then from the
// disk store, and the store's garbage collection reclaims the chunks no
// session names any more.
package retention

import (
	"cmp"
	"slices"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// Rules are the retention rules of the configuration's [store] section.
// Zero turns a rule off; with both off nothing expires.
type Rules struct {
	KeepLast int // sessions kept per scenario and entity
	KeepDays int // days a session is kept after it finished
}

// Off says whether no rule is set.
func (r Rules) Off() bool { return r.KeepLast <= 0 && r.KeepDays <= 0 }

type group struct {
	scenario uint64
	host     string
	entity   string
}

// Expired returns the sessions the rules allow to delete at now: a session
// goes only when every rule that is set allows it (it is not among the
// newest KeepLast of its scenario and entity, and it finished more than
// KeepDays days ago), and the newest session of each scenario and entity
// is always kept, so no entity is ever left without a backup. Oldest
// first.
func Expired(sessions []catalog.Session, r Rules, now time.Time) []catalog.Session {
	if r.Off() {
		return nil
	}
	groups := map[group][]catalog.Session{}
	for _, s := range sessions {
		g := group{s.ScenarioID, s.MasterHost, s.Entity}
		groups[g] = append(groups[g], s)
	}
	var out []catalog.Session
	for _, list := range groups {
		// Newest first.
		slices.SortFunc(list, func(a, b catalog.Session) int {
			if c := b.Finished.Compare(a.Finished); c != 0 {
				return c
			}
			return cmp.Compare(b.ID, a.ID)
		})
		for i, s := range list {
			if i == 0 {
				continue
			}
			if r.KeepLast > 0 && i < r.KeepLast {
				continue
			}
			if r.KeepDays > 0 && !s.Finished.Before(now.Add(-time.Duration(r.KeepDays)*24*time.Hour)) {
				continue
			}
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b catalog.Session) int {
		if c := a.Finished.Compare(b.Finished); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}
