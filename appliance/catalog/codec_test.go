package catalog

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// codecCase ties one record value to its key, its encoding and its decoder.
type codecCase struct {
	name   string // also the golden file name for the full samples
	key    []byte
	value  any
	encode func() []byte
	decode func(key, value []byte) (any, error)
}

func any2[T any](v T, err error) (any, error) { return v, err }

// codecCases returns a full sample and an all-zero record of every kind.
func codecCases() []codecCase {
	var cases []codecCase
	add := func(name string, key []byte, value any, encode func() []byte, decode func(key, value []byte) (any, error)) {
		cases = append(cases, codecCase{name, key, value, encode, decode})
	}
	add("meta", []byte(keySchema), uint64(schemaVersion),
		func() []byte { return encodeMeta(schemaVersion) },
		func(k, v []byte) (any, error) { return any2(decodeMeta(k, v)) })
	add("sequence", seqKey(seqJob), uint64(1234567),
		func() []byte { return encodeSequence(1234567) },
		func(k, v []byte) (any, error) { return any2(decodeSequence(k, v)) })
	add("scenario-ref", scenarioNameKey("payroll"), uint64(7),
		func() []byte { return encodeScenarioRef(7) },
		func(k, v []byte) (any, error) { return any2(decodeScenarioRef(k, v)) })
	add("marker", sessionJobKey(42, 9), struct{}{},
		func() []byte { return encodeMarker() },
		func(k, v []byte) (any, error) { return struct{}{}, decodeMarker(k, v) })

	s := sampleScenario()
	add("scenario", scenarioKey(s.ID), s,
		func() []byte { return encodeScenario(s) },
		func(k, v []byte) (any, error) { return any2(decodeScenario(k, v, 7)) })
	add("scenario-empty", scenarioKey(8), Scenario{ID: 8},
		func() []byte { return encodeScenario(Scenario{ID: 8}) },
		func(k, v []byte) (any, error) { return any2(decodeScenario(k, v, 8)) })

	e := sampleEntity()
	add("entity", entityKey(e.ScenarioID, e.Name), e,
		func() []byte { return encodeEntity(e) },
		func(k, v []byte) (any, error) { return any2(decodeEntity(k, v, 7, "vol-srv")) })
	add("entity-empty", entityKey(7, "x"), Entity{ScenarioID: 7, Name: "x"},
		func() []byte { return encodeEntity(Entity{ScenarioID: 7, Name: "x"}) },
		func(k, v []byte) (any, error) { return any2(decodeEntity(k, v, 7, "x")) })

	h := sampleHost()
	add("host", hostKey(h.Name), h,
		func() []byte { return encodeHost(h) },
		func(k, v []byte) (any, error) { return any2(decodeHost(k, v, "fs01")) })
	add("host-empty", hostKey("h"), Host{Name: "h"},
		func() []byte { return encodeHost(Host{Name: "h"}) },
		func(k, v []byte) (any, error) { return any2(decodeHost(k, v, "h")) })

	rt := sampleRecoveryTest()
	add("recovery-test", recoveryTestKey(rt.ScenarioID, rt.ID), rt,
		func() []byte { return encodeRecoveryTest(rt) },
		func(k, v []byte) (any, error) { return any2(decodeRecoveryTest(k, v, 7, 5)) })

	j := sampleJob()
	add("job", jobKey(j.ID), j,
		func() []byte { return encodeJob(j) },
		func(k, v []byte) (any, error) { return any2(decodeJob(k, v, 42)) })
	add("job-empty", jobKey(1), Job{ID: 1},
		func() []byte { return encodeJob(Job{ID: 1}) },
		func(k, v []byte) (any, error) { return any2(decodeJob(k, v, 1)) })

	ss := sampleSession()
	add("session", sessionKey(ss.ID), ss,
		func() []byte { return encodeSession(ss) },
		func(k, v []byte) (any, error) { return any2(decodeSession(k, v, 9)) })
	add("session-empty", sessionKey(1), Session{ID: 1},
		func() []byte { return encodeSession(Session{ID: 1}) },
		func(k, v []byte) (any, error) { return any2(decodeSession(k, v, 1)) })

	m := sampleMedia()
	add("media", mediaKey(m.ID), m,
		func() []byte { return encodeMedia(m) },
		func(k, v []byte) (any, error) { return any2(decodeMedia(k, v, 3)) })
	add("media-empty", mediaKey(1), Media{ID: 1},
		func() []byte { return encodeMedia(Media{ID: 1}) },
		func(k, v []byte) (any, error) { return any2(decodeMedia(k, v, 1)) })

	fv := sampleFileVersion()
	add("file-version", fileKey(fv.Host, fv.Path, fv.SessionID), fv,
		func() []byte { return encodeFileVersion(fv) },
		func(k, v []byte) (any, error) {
			return any2(decodeFileVersion(k, v, "fs01", "/srv/payroll/2025/november.xlsx", 9))
		})
	old := FileVersion{Host: "h", Path: "/old", SessionID: 1, MTime: time.Date(1601, 1, 1, 0, 0, 0, 1, time.UTC)}
	add("file-version-old-mtime", fileKey("h", "/old", 1), old,
		func() []byte { return encodeFileVersion(old) },
		func(k, v []byte) (any, error) { return any2(decodeFileVersion(k, v, "h", "/old", 1)) })

	a := sampleActivity()
	add("activity", activityKey(a.Seq), a,
		func() []byte { return encodeActivity(a) },
		func(k, v []byte) (any, error) { return any2(decodeActivity(k, v, 1000)) })
	add("activity-empty", activityKey(1), ActivityEntry{Seq: 1},
		func() []byte { return encodeActivity(ActivityEntry{Seq: 1}) },
		func(k, v []byte) (any, error) { return any2(decodeActivity(k, v, 1)) })
	return cases
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range codecCases() {
		t.Run(tc.name, func(t *testing.T) {
			enc := tc.encode()
			got, err := tc.decode(tc.key, enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.value) {
				t.Fatalf("round trip changed the record:\n got  %#v\n want %#v", got, tc.value)
			}
			// Deterministic: encoding twice gives the same bytes (map order).
			if again := tc.encode(); string(again) != string(enc) {
				t.Fatalf("encoding is not deterministic")
			}
		})
	}
}

// TestGolden pins the encoded bytes of one sample of each record kind, so a
// format change is a deliberate act (go test -run TestGolden -update), and
// checks that the pinned bytes still decode to the sample.
func TestGolden(t *testing.T) {
	for _, tc := range codecCases() {
		if strings.Contains(tc.name, "-empty") || strings.Contains(tc.name, "-old") {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.name+".golden")
			enc := tc.encode()
			if *update {
				if err := os.WriteFile(path, []byte(hex.Dump(enc)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if got := hex.Dump(enc); got != string(want) {
				t.Fatalf("encoding of %s changed; if deliberate, run with -update and document it.\ngot:\n%s\nwant:\n%s", tc.name, got, want)
			}
			stored, err := undump(string(want))
			if err != nil {
				t.Fatalf("parse golden file: %v", err)
			}
			got, err := tc.decode(tc.key, stored)
			if err != nil {
				t.Fatalf("decode golden bytes: %v", err)
			}
			if !reflect.DeepEqual(got, tc.value) {
				t.Fatalf("golden bytes decode to %#v, want %#v", got, tc.value)
			}
		})
	}
}

// undump parses hex.Dump output back into bytes.
func undump(s string) ([]byte, error) {
	var out []byte
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if len(line) < 10 {
			continue
		}
		// "00000000  ca 01 03 ...  |...|": the hex columns sit between the
		// offset and the ASCII gutter.
		body := line[10:]
		if i := strings.Index(body, "|"); i >= 0 {
			body = body[:i]
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(body), ""))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// TestEnvelopeDamage checks that every kind of envelope damage is reported as
// ErrCorrupt naming the key, never as a panic or a wrong record.
func TestEnvelopeDamage(t *testing.T) {
	key := scenarioKey(7)
	good := encodeScenario(sampleScenario())
	withHeader := func(magic, version, kind byte) []byte {
		body := append([]byte{magic, version, kind}, good[3:len(good)-4]...)
		return appendCRC(body)
	}
	tests := []struct {
		name  string
		value []byte
		want  string
	}{
		{"empty", nil, "shorter than an empty envelope"},
		{"short", good[:5], "shorter than an empty envelope"},
		{"flipped payload byte", flip(good, 10), "checksum mismatch"},
		{"flipped crc byte", flip(good, len(good)-1), "checksum mismatch"},
		{"truncated", good[:len(good)-1], "checksum mismatch"},
		{"bad magic", withHeader(0x00, envelopeVersion, byte(kindScenario)), "bad magic"},
		{"future envelope", withHeader(envelopeMagic, 2, byte(kindScenario)), "envelope version 2"},
		{"wrong kind", withHeader(envelopeMagic, envelopeVersion, byte(kindJob)), "record kind job where the key expects scenario"},
		{"bad payload", appendCRC([]byte{envelopeMagic, envelopeVersion, byte(kindScenario), 0x0A, 0x50}), "decode scenario payload"},
		{"wrong wire type", appendCRC([]byte{envelopeMagic, envelopeVersion, byte(kindScenario), 0x08, 0x01}), "wrong wire type"},
		{"end group", appendCRC([]byte{envelopeMagic, envelopeVersion, byte(kindScenario), 0x0C}), "decode scenario payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeScenario(key, tc.value, 7)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), "s/7") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name key s/7 and say %q", err, tc.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x40
	return out
}

// appendCRC finishes a hand-built envelope with a correct checksum, so the
// test reaches the check it means to exercise.
func appendCRC(body []byte) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
}
