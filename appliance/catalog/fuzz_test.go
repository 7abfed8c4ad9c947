package catalog

import (
	"bytes"
	"reflect"
	"testing"
)

// The decoders read whatever is on disk, so they must survive any bytes.
// Each target checks that decoding never panics and that a record that does
// decode re-encodes to something that decodes to the same record.

func fuzzRecord[T any](f *testing.F, key []byte, seed []byte, decode func(key, value []byte) (T, error), encode func(T) []byte) {
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add(flip(seed, len(seed)/2))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, value []byte) {
		v, err := decode(key, value)
		if err != nil {
			return
		}
		v2, err := decode(key, encode(v))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-encoding changed the record:\n%#v\n%#v", v, v2)
		}
	})
}

// fuzzPayload wraps fuzz input in a valid envelope, so the fuzzer spends its
// time in the payload decoder instead of on the checksum.
func fuzzPayload[T any](f *testing.F, kind recordKind, key []byte, seed []byte, decode func(key, value []byte) (T, error), encode func(T) []byte) {
	fuzzRecord(f, key, seed, func(key, value []byte) (T, error) {
		if len(value) > 0 && value[0] == 0 {
			return decode(key, seal(kind, value[1:])) // payload-only mode
		}
		return decode(key, value)
	}, encode)
	f.Add(append([]byte{0}, seed[3:len(seed)-4]...))
}

func FuzzDecodeMeta(f *testing.F) {
	key := []byte(keySchema)
	fuzzPayload(f, kindMeta, key, encodeMeta(1), decodeMeta, encodeMeta)
}

func FuzzDecodeSequence(f *testing.F) {
	key := seqKey(seqJob)
	fuzzPayload(f, kindSequence, key, encodeSequence(99), decodeSequence, encodeSequence)
}

func FuzzDecodeScenarioRef(f *testing.F) {
	key := scenarioNameKey("x")
	fuzzPayload(f, kindScenarioRef, key, encodeScenarioRef(7), decodeScenarioRef, encodeScenarioRef)
}

func FuzzDecodeMarker(f *testing.F) {
	key := sessionJobKey(1, 2)
	decode := func(k, v []byte) (struct{}, error) { return struct{}{}, decodeMarker(k, v) }
	fuzzPayload(f, kindMarker, key, encodeMarker(), decode, func(struct{}) []byte { return encodeMarker() })
}

func FuzzDecodeScenario(f *testing.F) {
	decode := func(k, v []byte) (Scenario, error) { return decodeScenario(k, v, 7) }
	fuzzPayload(f, kindScenario, scenarioKey(7), encodeScenario(sampleScenario()), decode, encodeScenario)
}

func FuzzDecodeEntity(f *testing.F) {
	decode := func(k, v []byte) (Entity, error) { return decodeEntity(k, v, 7, "vol-srv") }
	fuzzPayload(f, kindEntity, entityKey(7, "vol-srv"), encodeEntity(sampleEntity()), decode, encodeEntity)
}

func FuzzDecodeHost(f *testing.F) {
	decode := func(k, v []byte) (Host, error) { return decodeHost(k, v, "fs01") }
	fuzzPayload(f, kindHost, hostKey("fs01"), encodeHost(sampleHost()), decode, encodeHost)
}

func FuzzDecodeRecoveryTest(f *testing.F) {
	decode := func(k, v []byte) (RecoveryTest, error) { return decodeRecoveryTest(k, v, 7, 5) }
	fuzzPayload(f, kindRecoveryTest, recoveryTestKey(7, 5), encodeRecoveryTest(sampleRecoveryTest()), decode, encodeRecoveryTest)
}

func FuzzDecodeJob(f *testing.F) {
	decode := func(k, v []byte) (Job, error) { return decodeJob(k, v, 42) }
	fuzzPayload(f, kindJob, jobKey(42), encodeJob(sampleJob()), decode, encodeJob)
}

func FuzzDecodeSession(f *testing.F) {
	decode := func(k, v []byte) (Session, error) { return decodeSession(k, v, 9) }
	fuzzPayload(f, kindSession, sessionKey(9), encodeSession(sampleSession()), decode, encodeSession)
}

func FuzzDecodeMedia(f *testing.F) {
	decode := func(k, v []byte) (Media, error) { return decodeMedia(k, v, 3) }
	fuzzPayload(f, kindMedia, mediaKey(3), encodeMedia(sampleMedia()), decode, encodeMedia)
}

func FuzzDecodeFileVersion(f *testing.F) {
	fv := sampleFileVersion()
	decode := func(k, v []byte) (FileVersion, error) { return decodeFileVersion(k, v, fv.Host, fv.Path, fv.SessionID) }
	fuzzPayload(f, kindFileVersion, fileKey(fv.Host, fv.Path, fv.SessionID), encodeFileVersion(fv), decode, encodeFileVersion)
}

func FuzzDecodeActivity(f *testing.F) {
	decode := func(k, v []byte) (ActivityEntry, error) { return decodeActivity(k, v, 1000) }
	fuzzPayload(f, kindActivity, activityKey(1000), encodeActivity(sampleActivity()), decode, encodeActivity)
}

// FuzzDecodeKey feeds arbitrary keys to the key parser and FormatKey. A key
// that parses must re-encode to exactly the same bytes: the escape has one
// canonical form, which is what keeps prefix scans and index lookups exact.
func FuzzDecodeKey(f *testing.F) {
	for _, tc := range codecCases() {
		f.Add(tc.key)
	}
	f.Add(fileNameKey("a\x00b", "h", "/a\x00b"))
	f.Add(sessionFileKey(3, "h\x00", "/a\x00b"))
	f.Add(entityKey(1, "\x00\x00"))
	f.Add([]byte("f/\x00"))
	f.Fuzz(func(t *testing.T, key []byte) {
		_ = FormatKey(key)
		l, fields, err := parseKey(key)
		if err != nil {
			return
		}
		if again := encodeKey(l, fields); !bytes.Equal(again, key) {
			t.Fatalf("key %q re-encodes as %q", key, again)
		}
	})
}

// FuzzDecodeEscapedString checks the string escape on its own: any string
// round-trips, and decoding arbitrary bytes never panics.
func FuzzDecodeEscapedString(f *testing.F) {
	f.Add([]byte("plain"), []byte("rest"))
	f.Add([]byte("a\x00b\x00"), []byte{0x00, 0x01})
	f.Add([]byte{}, []byte{0xFF})
	f.Fuzz(func(t *testing.T, s, rest []byte) {
		enc := append(appendEsc(nil, string(s)), rest...)
		got, tail, err := decodeEsc(enc)
		if err != nil || got != string(s) || !bytes.Equal(tail, rest) {
			t.Fatalf("decodeEsc(appendEsc(%q)+%q) = %q, %q, %v", s, rest, got, tail, err)
		}
		_, _, _ = decodeEsc(s) // arbitrary input: must not panic
	})
}
