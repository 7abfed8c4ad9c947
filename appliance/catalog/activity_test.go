package catalog

import (
	"reflect"
	"testing"
	"time"
)

func TestActivityFilter(t *testing.T) {
	c := openTest(t, t.TempDir())
	base := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	entries := []ActivityEntry{
		{JobID: 0, Severity: Info, Code: "HF-I1001"},    // seq 1
		{JobID: 5, Severity: Info, Code: "HF-I3001"},    // 2
		{JobID: 5, Severity: Warning, Code: "HF-W3005"}, // 3
		{JobID: 6, Severity: Error, Code: "HF-E4001"},   // 4
		{JobID: 5, Severity: Error, Code: "HF-E4001"},   // 5
		{JobID: 0, Severity: Warning, Code: "HF-W3005"}, // 6
		{JobID: 5, Severity: Info, Code: "HF-I3001"},    // 7
	}
	for i, e := range entries {
		e.Time = base.Add(time.Duration(i) * time.Hour)
		e.Host, e.Message = "appliance", "entry"
		got, err := c.AppendActivity(e)
		if err != nil {
			t.Fatal(err)
		}
		if got.Seq != uint64(i+1) {
			t.Fatalf("entry %d got seq %d", i, got.Seq)
		}
	}
	tests := []struct {
		name string
		f    ActivityFilter
		want []uint64
	}{
		{"all", ActivityFilter{}, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"by job", ActivityFilter{JobID: 5}, []uint64{2, 3, 5, 7}},
		{"unknown job", ActivityFilter{JobID: 99}, []uint64{}},
		{"by code", ActivityFilter{Code: "HF-W3005"}, []uint64{3, 6}},
		{"by job and code", ActivityFilter{JobID: 5, Code: "HF-E4001"}, []uint64{5}},
		{"min warning", ActivityFilter{MinSeverity: Warning}, []uint64{3, 4, 5, 6}},
		{"min error", ActivityFilter{MinSeverity: Error}, []uint64{4, 5}},
		{"since", ActivityFilter{Since: base.Add(4 * time.Hour)}, []uint64{5, 6, 7}},
		{"since, inclusive", ActivityFilter{Since: base.Add(6 * time.Hour)}, []uint64{7}},
		{"limit keeps newest", ActivityFilter{Limit: 3}, []uint64{5, 6, 7}},
		{"limit above count", ActivityFilter{Limit: 100}, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"job limit", ActivityFilter{JobID: 5, Limit: 2}, []uint64{5, 7}},
		{"severity limit", ActivityFilter{MinSeverity: Warning, Limit: 2}, []uint64{5, 6}},
		{"everything", ActivityFilter{JobID: 5, MinSeverity: Warning, Since: base.Add(3 * time.Hour), Limit: 1}, []uint64{5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Activity(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			seqs := []uint64{}
			for _, e := range got {
				seqs = append(seqs, e.Seq)
			}
			if !reflect.DeepEqual(seqs, tc.want) {
				t.Fatalf("Activity(%+v) = %v, want %v", tc.f, seqs, tc.want)
			}
		})
	}

	all, err := c.Activity(ActivityFilter{JobID: 6})
	if err != nil {
		t.Fatal(err)
	}
	want := ActivityEntry{Seq: 4, Time: base.Add(3 * time.Hour), JobID: 6, Severity: Error, Code: "HF-E4001", Host: "appliance", Message: "entry"}
	if len(all) != 1 || !reflect.DeepEqual(all[0], want) {
		t.Fatalf("entry = %+v, want %+v", all, want)
	}
}

func TestActivityDefaults(t *testing.T) {
	c := openTest(t, t.TempDir())
	before := time.Now()
	e, err := c.AppendActivity(ActivityEntry{Message: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Severity != Info || e.Time.Before(before.Add(-time.Second)) || e.Seq != 1 {
		t.Fatalf("defaults not applied: %+v", e)
	}
	if n := countPrefix(t, c, []byte(prefixActivityJob)); n != 0 {
		t.Fatalf("%d job index entries for an entry without a job", n)
	}
}
