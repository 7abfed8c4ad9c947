package retention

import (
	"slices"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
)

func TestExpired(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// Scenario 1, entity /a: sessions 1..5 finished 5..1 days ago.
	// Scenario 1, entity /b: session 6, 30 days ago (the only one).
	// Scenario 2, entity /a: sessions 7, 8, 40 and 39 days ago.
	var sessions []catalog.Session
	for i := range 5 {
		sessions = append(sessions, catalog.Session{ID: uint64(i + 1), ScenarioID: 1, Entity: "/a", Finished: now.Add(-time.Duration(5-i) * day)})
	}
	sessions = append(sessions,
		catalog.Session{ID: 6, ScenarioID: 1, Entity: "/b", Finished: now.Add(-30 * day)},
		catalog.Session{ID: 7, ScenarioID: 2, Entity: "/a", Finished: now.Add(-40 * day)},
		catalog.Session{ID: 8, ScenarioID: 2, Entity: "/a", Finished: now.Add(-39 * day)},
	)
	for _, tc := range []struct {
		name  string
		rules Rules
		want  []uint64
	}{
		{"no rules", Rules{}, nil},
		{"keep last 2", Rules{KeepLast: 2}, []uint64{1, 2, 3}},
		{"keep last 1 keeps the newest of each", Rules{KeepLast: 1}, []uint64{7, 1, 2, 3, 4}},
		{"keep 3 days", Rules{KeepDays: 3}, []uint64{7, 1, 2}},
		{"both: each must allow", Rules{KeepLast: 4, KeepDays: 3}, []uint64{1}},
		{"keep 100 days", Rules{KeepDays: 100}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for _, s := range Expired(sessions, tc.rules, now) {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("expired %v, want %v", got, tc.want)
			}
		})
	}
}
