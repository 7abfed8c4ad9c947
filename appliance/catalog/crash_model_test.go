package catalog

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The crash tests share one workload and one model of what must survive.
//
// The workload (crashWorkload) performs acknowledged writes and reports each
// as a line: "BEGIN <op> ..." before an operation whose effect the model must
// tolerate either way, "ACK <op> ..." after the catalog call returned. The
// model (crashModel) replays those lines and, after the crash, checks the
// reopened catalog: everything acknowledged is there and decodes, nothing is
// half-written, and sequences never go back.

const crashFiles = 20 // file versions per acknowledged file batch

// crashWorkload writes until stop is closed or a call fails. emit must not
// return before the line is recorded where the checker will see it.
func crashWorkload(c *Catalog, tag string, emit func(string), stop <-chan struct{}) error {
	names := map[int]string{} // scenario index -> current name
	ids := map[int]uint64{}
	var lastJob uint64
	w := c.NewFileVersionWriter()
	for i := 1; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		orig := fmt.Sprintf("%s-%d", tag, i)
		ents := []Entity{
			{Name: "e1", Kind: "volume", Detail: map[string]string{"created-as": orig}},
			{Name: "e2", Kind: "volume", Detail: map[string]string{"created-as": orig}},
			{Name: "e3", Kind: "volume", Detail: map[string]string{"created-as": orig}},
		}
		s, err := c.CreateScenario(Scenario{Name: orig, Type: "fileserver", Roots: []string{"/data/" + orig}}, ents)
		if err != nil {
			return err
		}
		names[i], ids[i] = orig, s.ID
		emit(fmt.Sprintf("ACK scenario %d %s", s.ID, orig))

		a, err := c.AppendActivity(ActivityEntry{JobID: lastJob, Code: "HF-I9999", Message: orig})
		if err != nil {
			return err
		}
		emit(fmt.Sprintf("ACK activity %d %d", a.Seq, a.JobID))

		j, err := c.CreateJob(Job{Name: orig, Kind: "backup", ScenarioIDs: []uint64{s.ID}})
		if err != nil {
			return err
		}
		lastJob = j.ID
		emit(fmt.Sprintf("ACK job %d", j.ID))

		ss, err := c.CreateSession(Session{JobID: j.ID, ScenarioID: s.ID, Entity: "e1"})
		if err != nil {
			return err
		}
		emit(fmt.Sprintf("ACK session %d %d", ss.ID, j.ID))

		for f := 0; f < crashFiles; f++ {
			v := FileVersion{Host: "fs01", Path: fmt.Sprintf("/%s/f%02d", orig, f), SessionID: ss.ID, Size: uint64(f)}
			if err := w.Add(v); err != nil {
				return err
			}
		}
		// Both ways of reaching an acknowledgement point.
		if i%2 == 0 {
			err = w.Commit(true)
		} else if err = w.Commit(false); err == nil {
			err = c.SyncPoint()
		}
		if err != nil {
			return err
		}
		emit(fmt.Sprintf("ACK files %d %s", ss.ID, orig))

		if i%5 == 0 && names[i-1] != "" { // rename the previous scenario
			k := i - 1
			s, err := c.ScenarioByID(ids[k])
			if err != nil {
				return err
			}
			s.Name = names[k] + "-renamed"
			emit(fmt.Sprintf("BEGIN rename %d %s %s", s.ID, names[k], s.Name))
			if err := c.UpdateScenario(s); err != nil {
				return err
			}
			names[k] = s.Name
			emit(fmt.Sprintf("ACK rename %d %s", s.ID, s.Name))
		}
		if i%4 == 0 && names[i-3] != "" { // delete an older one
			k := i - 3
			emit(fmt.Sprintf("BEGIN delete %d", ids[k]))
			if _, err := c.DeleteScenario(names[k]); err != nil {
				return err
			}
			emit(fmt.Sprintf("ACK delete %d", ids[k]))
			delete(names, k)
		}
	}
}

// scenarioExpect is what may be found for one scenario ID.
type scenarioExpect struct {
	names    map[string]bool // acceptable current names
	absentOK bool            // a delete may have committed
	deleted  bool            // a delete was acknowledged: must be absent
}

type crashModel struct {
	scenarios map[uint64]*scenarioExpect
	activity  map[uint64]uint64 // seq -> job ID; must be present
	jobs      map[uint64]bool
	sessions  map[uint64]uint64 // session -> job
	files     map[uint64]string // session -> directory name
	// Highest IDs present at the last check: later acknowledgements must
	// be above them, or an ID was reused.
	floor     map[string]uint64
	handedOut map[string]bool // "family id" of every acknowledged create
	acks      int
	verified  int
}

func newCrashModel() *crashModel {
	return &crashModel{
		scenarios: map[uint64]*scenarioExpect{},
		activity:  map[uint64]uint64{},
		jobs:      map[uint64]bool{},
		sessions:  map[uint64]uint64{},
		files:     map[uint64]string{},
		floor:     map[string]uint64{},
		handedOut: map[string]bool{},
	}
}

// apply replays one workload line.
func (m *crashModel) apply(line string) error {
	f := strings.Fields(line)
	if len(f) < 3 {
		return fmt.Errorf("bad line %q", line)
	}
	id, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return fmt.Errorf("bad line %q: %v", line, err)
	}
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	num := func(i int) uint64 { n, _ := strconv.ParseUint(arg(i), 10, 64); return n }
	if f[0] == "ACK" {
		m.acks++
		family := f[1]
		if family == "scenario" || family == "activity" || family == "job" || family == "session" {
			if id <= m.floor[family] {
				return fmt.Errorf("%s ID %d acknowledged, but %d was already in the catalog before: ID reused", family, id, m.floor[family])
			}
			k := family + " " + f[2]
			if m.handedOut[k] {
				return fmt.Errorf("%s ID %d acknowledged twice", family, id)
			}
			m.handedOut[k] = true
		}
	}
	switch f[0] + " " + f[1] {
	case "ACK scenario":
		m.scenarios[id] = &scenarioExpect{names: map[string]bool{arg(3): true}}
	case "ACK activity":
		m.activity[id] = num(3)
	case "ACK job":
		m.jobs[id] = true
	case "ACK session":
		m.sessions[id] = num(3)
	case "ACK files":
		m.files[id] = arg(3)
	case "BEGIN rename", "ACK rename", "BEGIN delete", "ACK delete":
		exp := m.scenarios[id]
		if exp == nil {
			return fmt.Errorf("%q: scenario %d was never acknowledged", line, id)
		}
		switch f[0] + " " + f[1] {
		case "BEGIN rename":
			exp.names[arg(4)] = true
		case "ACK rename":
			exp.names = map[string]bool{arg(3): true}
		case "BEGIN delete":
			exp.absentOK = true
		case "ACK delete":
			exp.deleted = true
		}
	default:
		return fmt.Errorf("unknown line %q", line)
	}
	return nil
}

// verify checks the reopened catalog against the model, then tightens the
// model to what it found: a record seen once must stay.
func (m *crashModel) verify(t *testing.T, c *Catalog) {
	t.Helper()
	m.verified++
	checkEveryRecord(t, c)

	// Scenarios: whole or absent, never partial.
	list, err := c.Scenarios()
	if err != nil {
		t.Fatalf("Scenarios: %v", err)
	}
	present := map[uint64]Scenario{}
	for _, s := range list {
		present[s.ID] = s
		byName, err := c.Scenario(s.Name)
		if err != nil || byName.ID != s.ID {
			t.Fatalf("scenario %d %q: name index gives %+v, %v", s.ID, s.Name, byName, err)
		}
		ents, err := c.Entities(s.ID)
		if err != nil {
			t.Fatalf("entities of %d: %v", s.ID, err)
		}
		if len(ents) != 3 || ents[0].Name != "e1" || ents[1].Name != "e2" || ents[2].Name != "e3" {
			t.Fatalf("scenario %d %q has entities %+v, want exactly e1 e2 e3", s.ID, s.Name, ents)
		}
		for _, e := range ents {
			if "/data/"+e.Detail["created-as"] != s.Roots[0] {
				t.Fatalf("scenario %d holds entity %+v of another scenario", s.ID, e)
			}
		}
	}
	if n := countPrefix(t, c, []byte(prefixScenarioKey)); n != len(list) {
		t.Fatalf("%d name index entries for %d scenarios", n, len(list))
	}
	if n := countPrefix(t, c, []byte(prefixEntity)); n != 3*len(list) {
		t.Fatalf("%d entity records for %d scenarios: orphans left behind", n, len(list))
	}
	for id, exp := range m.scenarios {
		s, ok := present[id]
		switch {
		case exp.deleted && ok:
			t.Fatalf("scenario %d %q is back after an acknowledged delete", id, s.Name)
		case !ok && !exp.absentOK && !exp.deleted:
			t.Fatalf("acknowledged scenario %d (%v) is missing", id, keys(exp.names))
		case ok && !exp.names[s.Name]:
			t.Fatalf("scenario %d is called %q, want one of %v", id, s.Name, keys(exp.names))
		}
	}

	// Activity, jobs, sessions, files.
	all, err := c.Activity(ActivityFilter{})
	if err != nil {
		t.Fatalf("Activity: %v", err)
	}
	seqs := map[uint64]bool{}
	for i, e := range all {
		if i > 0 && e.Seq <= all[i-1].Seq {
			t.Fatalf("activity out of order: %d after %d", e.Seq, all[i-1].Seq)
		}
		seqs[e.Seq] = true
	}
	jobsWithEntries := map[uint64]bool{}
	for seq, job := range m.activity {
		if !seqs[seq] {
			t.Fatalf("acknowledged activity entry %d is missing", seq)
		}
		if job != 0 {
			jobsWithEntries[job] = true
		}
	}
	for job := range jobsWithEntries {
		byJob, err := c.Activity(ActivityFilter{JobID: job})
		if err != nil {
			t.Fatalf("Activity(job %d): %v", job, err)
		}
		found := map[uint64]bool{}
		for _, e := range byJob {
			found[e.Seq] = true
		}
		for seq, j := range m.activity {
			if j == job && !found[seq] {
				t.Fatalf("activity %d of job %d missing from the job index", seq, job)
			}
		}
	}
	jobs, err := c.Jobs()
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	jobIDs := map[uint64]bool{}
	for _, j := range jobs {
		jobIDs[j.ID] = true
	}
	for id := range m.jobs {
		if !jobIDs[id] {
			t.Fatalf("acknowledged job %d is missing", id)
		}
	}
	for id, job := range m.sessions {
		s, err := c.Session(id)
		if err != nil || s.JobID != job {
			t.Fatalf("acknowledged session %d: %+v, %v", id, s, err)
		}
		of, err := c.SessionsOfJob(job)
		if err != nil || !containsSession(of, id) {
			t.Fatalf("session %d missing from job %d index: %+v, %v", id, job, of, err)
		}
	}
	for session, dir := range m.files {
		tree, err := c.FileTree("fs01", "/"+dir)
		if err != nil {
			t.Fatalf("FileTree(%s): %v", dir, err)
		}
		if len(tree) != crashFiles {
			t.Fatalf("acknowledged file batch of session %d has %d of %d versions", session, len(tree), crashFiles)
		}
		for _, v := range tree {
			if v.SessionID != session {
				t.Fatalf("file %s has session %d, want %d", v.Path, v.SessionID, session)
			}
		}
	}

	// Sequences are at or above every ID in use, so none can be reused.
	maxID := map[string]uint64{}
	for id := range present {
		maxID[seqScenario] = max(maxID[seqScenario], id)
	}
	for id := range m.scenarios { // deleted ones count too: their IDs stay used
		maxID[seqScenario] = max(maxID[seqScenario], id)
	}
	for seq := range seqs {
		maxID[seqActivity] = max(maxID[seqActivity], seq)
	}
	for id := range jobIDs {
		maxID[seqJob] = max(maxID[seqJob], id)
	}
	sessions := 0
	if err := scanPrefix(c.db, []byte(prefixSession), false, func(key, _ []byte) error {
		id, err := idFromKey(key, prefixSession)
		maxID[seqSession] = max(maxID[seqSession], id)
		sessions++
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for name, hi := range maxID {
		key := seqKey(name)
		raw, err := get(c.db, key)
		if err != nil {
			t.Fatalf("sequence %s: %v", name, err)
		}
		last, err := decodeSequence(key, raw)
		if err != nil {
			t.Fatal(err)
		}
		if last < hi {
			t.Fatalf("sequence %s is at %d but ID %d is in use", name, last, hi)
		}
	}

	// Tighten: what is there now must stay.
	for id, s := range present {
		if exp, ok := m.scenarios[id]; !ok || !exp.deleted {
			m.scenarios[id] = &scenarioExpect{names: map[string]bool{s.Name: true}}
		}
	}
	for id, exp := range m.scenarios {
		if _, ok := present[id]; !ok {
			exp.deleted = true
		}
	}
	for _, e := range all {
		m.activity[e.Seq] = e.JobID
	}
	for id := range jobIDs {
		m.jobs[id] = true
	}
	m.floor = map[string]uint64{
		"scenario": maxID[seqScenario], "activity": maxID[seqActivity],
		"job": maxID[seqJob], "session": maxID[seqSession],
	}
}

// checkEveryRecord decodes every key and value in the store by its family.
func checkEveryRecord(t *testing.T, c *Catalog) {
	t.Helper()
	n := 0
	err := scan(c.db, nil, nil, false, func(key, value []byte) error {
		n++
		l, f, err := parseKey(key)
		if err != nil {
			return fmt.Errorf("key %s: %v", FormatKey(key), err)
		}
		switch l.kind {
		case kindMeta:
			_, err = decodeMeta(key, value)
		case kindSequence:
			_, err = decodeSequence(key, value)
		case kindScenario:
			_, err = decodeScenario(key, value, f[0].u)
		case kindScenarioRef:
			_, err = decodeScenarioRef(key, value)
		case kindEntity:
			_, err = decodeEntity(key, value, f[0].u, f[1].s)
		case kindHost:
			_, err = decodeHost(key, value, f[0].s)
		case kindJob:
			_, err = decodeJob(key, value, f[0].u)
		case kindSession:
			_, err = decodeSession(key, value, f[0].u)
		case kindMedia:
			_, err = decodeMedia(key, value, f[0].u)
		case kindFileVersion:
			_, err = decodeFileVersion(key, value, f[0].s, f[1].s, f[2].u)
		case kindActivity:
			_, err = decodeActivity(key, value, f[0].u)
		case kindMarker:
			err = decodeMarker(key, value)
		default:
			err = errors.New("no decoder for this family")
		}
		return err
	})
	if err != nil {
		t.Fatalf("record %d of the store: %v", n, err)
	}
}

func containsSession(list []Session, id uint64) bool {
	for _, s := range list {
		if s.ID == id {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// randomDelay is a duration in [lo, hi).
func randomDelay(r interface{ Int64N(int64) int64 }, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}
