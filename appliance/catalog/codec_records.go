package catalog

import (
	"fmt"
	"time"
)

// Record encoders and decoders. Field numbers are part of the on-disk format
// and are listed in docs/catalog.md: never reuse or renumber one, only add.
// Fields the key already holds (IDs, names, host and path of file versions)
// are not repeated in the value; decoders take them from the caller, which
// read them from the key.

// decodeRecord opens the envelope and runs fn over the payload fields,
// turning any failure into an ErrCorrupt that names the key.
func decodeRecord(key, value []byte, kind recordKind, fn func(f field) error) error {
	payload, err := open(key, value, kind)
	if err != nil {
		return err
	}
	if err := decodeFields(payload, fn); err != nil {
		return corruptf(key, "decode %s payload: %v", kind, err)
	}
	return nil
}

// Meta (the schema-version record): 1 = schema version.
func encodeMeta(version uint64) []byte {
	return seal(kindMeta, putUint(nil, 1, version))
}

func decodeMeta(key, value []byte) (uint64, error) {
	var v uint64
	err := decodeRecord(key, value, kindMeta, func(f field) (err error) {
		if f.num == 1 {
			v, err = f.uint64()
		}
		return err
	})
	return v, err
}

// Sequence: 1 = last value handed out.
func encodeSequence(last uint64) []byte {
	return seal(kindSequence, putUint(nil, 1, last))
}

func decodeSequence(key, value []byte) (uint64, error) {
	var v uint64
	err := decodeRecord(key, value, kindSequence, func(f field) (err error) {
		if f.num == 1 {
			v, err = f.uint64()
		}
		return err
	})
	return v, err
}

// ScenarioRef (the unique-name index): 1 = scenario ID.
func encodeScenarioRef(id uint64) []byte {
	return seal(kindScenarioRef, putUint(nil, 1, id))
}

func decodeScenarioRef(key, value []byte) (uint64, error) {
	var v uint64
	err := decodeRecord(key, value, kindScenarioRef, func(f field) (err error) {
		if f.num == 1 {
			v, err = f.uint64()
		}
		return err
	})
	return v, err
}

// Marker values carry nothing: the key is the whole record. They still get
// an envelope so that every value in the store can be checked the same way.
func encodeMarker() []byte { return seal(kindMarker, nil) }

func decodeMarker(key, value []byte) error {
	return decodeRecord(key, value, kindMarker, func(field) error { return nil })
}

// Scenario: 1 name, 2 type, 3 master_host, 4 roots (repeated), 5 replicas
// (repeated {1 host, 2 target}), 6 assured_recovery, 7 suspend,
// 8 snapshots_keep, 9 state, 10 created, 11 updated, 12 sync_mode. The ID
// is in the key.
// The name is stored too because the key is by ID.
func encodeScenario(s Scenario) []byte {
	var b []byte
	b = putString(b, 1, s.Name)
	b = putString(b, 2, s.Type)
	b = putString(b, 3, s.MasterHost)
	b = putStrings(b, 4, s.Roots)
	for _, r := range s.Replicas {
		var msg []byte
		msg = putString(msg, 1, r.Host)
		msg = putString(msg, 2, r.Target)
		b = putMessage(b, 5, msg)
	}
	b = putBool(b, 6, s.AssuredRecovery)
	b = putBool(b, 7, s.Suspend)
	b = putUint(b, 8, uint64(s.SnapshotsKeep))
	b = putString(b, 9, string(s.State))
	b = putTime(b, 10, s.Created)
	b = putTime(b, 11, s.Updated)
	b = putString(b, 12, s.SyncMode)
	return seal(kindScenario, b)
}

func decodeScenario(key, value []byte, id uint64) (Scenario, error) {
	s := Scenario{ID: id}
	err := decodeRecord(key, value, kindScenario, func(f field) (err error) {
		switch f.num {
		case 1:
			s.Name, err = f.str()
		case 2:
			s.Type, err = f.str()
		case 3:
			s.MasterHost, err = f.str()
		case 4:
			var r string
			r, err = f.str()
			s.Roots = append(s.Roots, r)
		case 5:
			var r Replica
			r.Host, r.Target, err = f.pair()
			s.Replicas = append(s.Replicas, r)
		case 6:
			s.AssuredRecovery, err = f.bool()
		case 7:
			s.Suspend, err = f.bool()
		case 8:
			s.SnapshotsKeep, err = f.uint32()
		case 9:
			var st string
			st, err = f.str()
			s.State = ScenarioState(st)
		case 10:
			s.Created, err = f.time()
		case 11:
			s.Updated, err = f.time()
		case 12:
			s.SyncMode, err = f.str()
		}
		return err
	})
	return s, err
}

// Entity: 1 kind, 2 paths (repeated), 3 detail (repeated {1 key, 2 value}).
// Scenario ID and name are in the key.
func encodeEntity(e Entity) []byte {
	var b []byte
	b = putString(b, 1, e.Kind)
	b = putStrings(b, 2, e.Paths)
	b = putStringMap(b, 3, e.Detail)
	return seal(kindEntity, b)
}

func decodeEntity(key, value []byte, scenarioID uint64, name string) (Entity, error) {
	e := Entity{ScenarioID: scenarioID, Name: name}
	err := decodeRecord(key, value, kindEntity, func(f field) (err error) {
		switch f.num {
		case 1:
			e.Kind, err = f.str()
		case 2:
			var p string
			p, err = f.str()
			e.Paths = append(e.Paths, p)
		case 3:
			var k, v string
			k, v, err = f.pair()
			if e.Detail == nil {
				e.Detail = make(map[string]string)
			}
			e.Detail[k] = v
		}
		return err
	})
	return e, err
}

// Host: 1 address, 2 roles (repeated), 3 enrolled. The name is in the key.
func encodeHost(h Host) []byte {
	var b []byte
	b = putString(b, 1, h.Address)
	b = putStrings(b, 2, h.Roles)
	b = putTime(b, 3, h.Enrolled)
	return seal(kindHost, b)
}

func decodeHost(key, value []byte, name string) (Host, error) {
	h := Host{Name: name}
	err := decodeRecord(key, value, kindHost, func(f field) (err error) {
		switch f.num {
		case 1:
			h.Address, err = f.str()
		case 2:
			var r string
			r, err = f.str()
			h.Roles = append(h.Roles, r)
		case 3:
			h.Enrolled, err = f.time()
		}
		return err
	})
	return h, err
}

// Job: 1 parent_id, 2 kind, 3 name, 4 state, 5 result, 6 owner,
// 7 scenario_ids (packed), 8 created, 9 started, 10 finished, 11 spec.
func encodeJob(j Job) []byte {
	var b []byte
	b = putUint(b, 1, j.ParentID)
	b = putString(b, 2, j.Kind)
	b = putString(b, 3, j.Name)
	b = putString(b, 4, string(j.State))
	b = putString(b, 5, string(j.Result))
	b = putString(b, 6, j.Owner)
	b = putUints(b, 7, j.ScenarioIDs)
	b = putTime(b, 8, j.Created)
	b = putTime(b, 9, j.Started)
	b = putTime(b, 10, j.Finished)
	b = putBytes(b, 11, j.Spec)
	return seal(kindJob, b)
}

func decodeJob(key, value []byte, id uint64) (Job, error) {
	j := Job{ID: id}
	err := decodeRecord(key, value, kindJob, func(f field) (err error) {
		var s string
		switch f.num {
		case 1:
			j.ParentID, err = f.uint64()
		case 2:
			j.Kind, err = f.str()
		case 3:
			j.Name, err = f.str()
		case 4:
			s, err = f.str()
			j.State = JobState(s)
		case 5:
			s, err = f.str()
			j.Result = JobResult(s)
		case 6:
			j.Owner, err = f.str()
		case 7:
			j.ScenarioIDs, err = f.appendUints(j.ScenarioIDs)
		case 8:
			j.Created, err = f.time()
		case 9:
			j.Started, err = f.time()
		case 10:
			j.Finished, err = f.time()
		case 11:
			j.Spec, err = f.bytes()
		}
		return err
	})
	return j, err
}

// Session: 1 job_id, 2 scenario_id, 3 entity, 4 master_host, 5 media_id,
// 6 consistency, 7 started, 8 finished, 9 files, 10 bytes, 11 stored.
func encodeSession(s Session) []byte {
	var b []byte
	b = putUint(b, 1, s.JobID)
	b = putUint(b, 2, s.ScenarioID)
	b = putString(b, 3, s.Entity)
	b = putString(b, 4, s.MasterHost)
	b = putUint(b, 5, s.MediaID)
	b = putString(b, 6, s.Consistency)
	b = putTime(b, 7, s.Started)
	b = putTime(b, 8, s.Finished)
	b = putUint(b, 9, s.Files)
	b = putUint(b, 10, s.Bytes)
	b = putString(b, 11, s.Stored)
	return seal(kindSession, b)
}

func decodeSession(key, value []byte, id uint64) (Session, error) {
	s := Session{ID: id}
	err := decodeRecord(key, value, kindSession, func(f field) (err error) {
		switch f.num {
		case 1:
			s.JobID, err = f.uint64()
		case 2:
			s.ScenarioID, err = f.uint64()
		case 3:
			s.Entity, err = f.str()
		case 4:
			s.MasterHost, err = f.str()
		case 5:
			s.MediaID, err = f.uint64()
		case 6:
			s.Consistency, err = f.str()
		case 7:
			s.Started, err = f.time()
		case 8:
			s.Finished, err = f.time()
		case 9:
			s.Files, err = f.uint64()
		case 10:
			s.Bytes, err = f.uint64()
		case 11:
			s.Stored, err = f.str()
		}
		return err
	})
	return s, err
}

// Media: 1 kind, 2 label, 3 barcode, 4 pool, 5 capacity_bytes,
// 6 used_bytes, 7 created.
func encodeMedia(m Media) []byte {
	var b []byte
	b = putString(b, 1, m.Kind)
	b = putString(b, 2, m.Label)
	b = putString(b, 3, m.Barcode)
	b = putString(b, 4, m.Pool)
	b = putUint(b, 5, m.CapacityBytes)
	b = putUint(b, 6, m.UsedBytes)
	b = putTime(b, 7, m.Created)
	return seal(kindMedia, b)
}

func decodeMedia(key, value []byte, id uint64) (Media, error) {
	m := Media{ID: id}
	err := decodeRecord(key, value, kindMedia, func(f field) (err error) {
		switch f.num {
		case 1:
			m.Kind, err = f.str()
		case 2:
			m.Label, err = f.str()
		case 3:
			m.Barcode, err = f.str()
		case 4:
			m.Pool, err = f.str()
		case 5:
			m.CapacityBytes, err = f.uint64()
		case 6:
			m.UsedBytes, err = f.uint64()
		case 7:
			m.Created, err = f.time()
		}
		return err
	})
	return m, err
}

// FileVersion: 1 size, 2 mode, 3 mtime, 4 media_id, 5 offset. Host, path and
// session ID are in the key; there will be millions of these, so the value
// holds nothing the key already says.
func encodeFileVersion(v FileVersion) []byte {
	var b []byte
	b = putUint(b, 1, v.Size)
	b = putUint(b, 2, uint64(v.Mode))
	b = putTime(b, 3, v.MTime)
	b = putUint(b, 4, v.MediaID)
	b = putUint(b, 5, v.Offset)
	return seal(kindFileVersion, b)
}

func decodeFileVersion(key, value []byte, host, path string, sessionID uint64) (FileVersion, error) {
	v := FileVersion{Host: host, Path: path, SessionID: sessionID}
	err := decodeRecord(key, value, kindFileVersion, func(f field) (err error) {
		switch f.num {
		case 1:
			v.Size, err = f.uint64()
		case 2:
			v.Mode, err = f.uint32()
		case 3:
			v.MTime, err = f.time()
		case 4:
			v.MediaID, err = f.uint64()
		case 5:
			v.Offset, err = f.uint64()
		}
		return err
	})
	return v, err
}

// Activity: 1 time, 2 job_id, 3 severity, 4 code, 5 host, 6 message. The
// sequence number is in the key.
func encodeActivity(e ActivityEntry) []byte {
	var b []byte
	b = putTime(b, 1, e.Time)
	b = putUint(b, 2, e.JobID)
	b = putUint(b, 3, uint64(e.Severity))
	b = putString(b, 4, e.Code)
	b = putString(b, 5, e.Host)
	b = putString(b, 6, e.Message)
	return seal(kindActivity, b)
}

func decodeActivity(key, value []byte, seq uint64) (ActivityEntry, error) {
	e := ActivityEntry{Seq: seq}
	err := decodeRecord(key, value, kindActivity, func(f field) (err error) {
		switch f.num {
		case 1:
			e.Time, err = f.time()
		case 2:
			e.JobID, err = f.uint64()
		case 3:
			var v uint64
			v, err = f.uint64()
			if err == nil && v > 0xFF {
				err = fmt.Errorf("severity %d out of range", v)
			}
			e.Severity = Severity(v)
		case 4:
			e.Code, err = f.str()
		case 5:
			e.Host, err = f.str()
		case 6:
			e.Message, err = f.str()
		}
		return err
	})
	return e, err
}

// RecoveryTest: 1 replica, 2 snapshot, 3 started, 4 duration (ns),
// 5 passed, 6 checked, 7 problems (repeated), 8 error, 9 view. Scenario and
// test IDs are in the key.
func encodeRecoveryTest(t RecoveryTest) []byte {
	var b []byte
	b = putString(b, 1, t.Replica)
	b = putString(b, 2, t.Snapshot)
	b = putTime(b, 3, t.Started)
	b = putUint(b, 4, uint64(max(t.Duration, 0)))
	b = putBool(b, 5, t.Passed)
	b = putUint(b, 6, t.Checked)
	b = putStrings(b, 7, t.Problems)
	b = putString(b, 8, t.Error)
	b = putString(b, 9, t.View)
	return seal(kindRecoveryTest, b)
}

func decodeRecoveryTest(key, value []byte, scenarioID, id uint64) (RecoveryTest, error) {
	t := RecoveryTest{ID: id, ScenarioID: scenarioID}
	err := decodeRecord(key, value, kindRecoveryTest, func(f field) (err error) {
		switch f.num {
		case 1:
			t.Replica, err = f.str()
		case 2:
			t.Snapshot, err = f.str()
		case 3:
			t.Started, err = f.time()
		case 4:
			var ns uint64
			ns, err = f.uint64()
			if err == nil && ns > 1<<62 {
				err = fmt.Errorf("duration %d ns out of range", ns)
			}
			t.Duration = time.Duration(ns)
		case 5:
			t.Passed, err = f.bool()
		case 6:
			t.Checked, err = f.uint64()
		case 7:
			var p string
			p, err = f.str()
			t.Problems = append(t.Problems, p)
		case 8:
			t.Error, err = f.str()
		case 9:
			t.View, err = f.str()
		}
		return err
	})
	return t, err
}
