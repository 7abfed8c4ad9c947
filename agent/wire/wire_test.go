package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/treesync"
	"github.com/holdfast/holdfast/plugins/sdk"
)

var update = flag.Bool("update", false, "rewrite golden files")

// samples holds one message of every kind, with every field set.
func samples() map[string]Message {
	return map[string]Message{
		"hello":       Hello{Version: ProtocolVersion, Scenario: "payroll", Replica: "dr-1"},
		"hello-reply": HelloReply{LastApplied: 41},
		"apply": Apply{Changes: []change.Change{
			{Seq: 42, Op: change.OpWrite, Path: "a/b.txt", Offset: 3, Data: []byte("hello"), Captured: 1_700_000_000_000_000_000},
			{Seq: 43, Op: change.OpRename, Path: "a/b.txt", NewPath: "a/c.txt"},
		}},
		"applied": Applied{LastApplied: 43},
		"failure": Failure{Code: CodeEscape, Change: true, Seq: 44, Op: change.OpRename, Path: "x/y", NewPath: "z",
			Text: "apply rename x/y -> z (seq 44): path escapes the replica root", LastApplied: 43},
		"signature-request": SignatureRequest{Path: "big/file.bin", ID: 7, Offset: 1 << 20},
		"signature-page":    SignaturePage{ID: 7, Total: 3 << 20, Offset: 1 << 20, Data: []byte("HFsg-part")},
		"scan-request":      ScanRequest{ID: 9, From: 1000},
		"scan-page": ScanPage{ID: 9, Next: 1002, More: true,
			Entries: []treesync.Entry{
				{Path: "d", Type: treesync.Dir, Mode: 0o755, UID: 1000, GID: 1000, MTime: 1_700_000_000_123_456_789,
					Dev: 2049, Ino: 12, Nlink: 2, Birth: 1_600_000_000_000_000_000, Unlisted: true},
				{Path: "d/f", Type: treesync.File, Size: 5, Mode: 0o4644, MTime: 1, Dev: 2049, Ino: 13, Nlink: 1,
					Xattrs: map[string][]byte{"user.a": []byte("1"), "user.empty": {}}, XattrsUnread: true},
				{Path: "d/l", Type: treesync.Symlink, Size: 1, Target: "f", Dev: 2049, Ino: 14, Nlink: 1},
			},
			Problems: []Problem{{Path: ".", Text: "open: permission denied"}}},
	}
}

func TestRoundTripAndGolden(t *testing.T) {
	for name, m := range samples() {
		t.Run(name, func(t *testing.T) {
			if m.Kind().String() != name {
				t.Errorf("kind %v named %q", m.Kind(), name)
			}
			enc := Marshal(m)
			got, err := Unmarshal(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, m)
			}
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, enc, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./agent/wire -update)", err)
			}
			if !bytes.Equal(enc, want) {
				t.Errorf("encoding changed; if deliberate, bump formatVersion and run -update")
			}
			// What was written by this version must stay readable.
			old, err := Unmarshal(want)
			if err != nil || !reflect.DeepEqual(old, m) {
				t.Errorf("golden file decodes to %#v, %v", old, err)
			}
		})
	}
}

func TestUnmarshalRejects(t *testing.T) {
	good := Marshal(Hello{Version: 1, Scenario: "s", Replica: "r"})
	reseal := func(body []byte) []byte {
		return Marshal(rawMessage(body))
	}
	cases := map[string][]byte{
		"empty":         nil,
		"short":         good[:5],
		"bad checksum":  append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^1),
		"bad magic":     resealWhole(append([]byte{0x00}, good[1:len(good)-4]...)),
		"newer format":  resealWhole(append([]byte{magic, 9}, good[2:len(good)-4]...)),
		"unknown kind":  resealWhole([]byte{magic, formatVersion, 200}),
		"escaping path": reseal(append([]byte{byte(KindSignatureRequest)}, putString(nil, 1, "../etc/passwd")...)),
		"long text":     reseal(append([]byte{byte(KindHello)}, putString(nil, 2, string(make([]byte, MaxText+1)))...)),
		"bad change":    reseal(append([]byte{byte(KindApply)}, putBytes(nil, 1, []byte("not a change"))...)),
		"entry no type": reseal(append([]byte{byte(KindScanPage)}, putBytes(nil, 2, putString(nil, ePath, "a"))...)),
		"page past end": reseal(append([]byte{byte(KindSignaturePage)}, putBytes(putUint(nil, 2, 2), 4, []byte("abc"))...)),
		"no code":       reseal([]byte{byte(KindFailure)}),
		"truncated tag": reseal([]byte{byte(KindApplied), 0x08}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if m, err := Unmarshal(b); !errors.Is(err, ErrInvalid) {
				t.Errorf("got %#v, %v; want ErrInvalid", m, err)
			}
		})
	}
}

// rawMessage lets a test seal arbitrary fields: its first byte is the
// kind, the rest the fields.
type rawMessage []byte

func (r rawMessage) Kind() Kind                   { return Kind(r[0]) }
func (r rawMessage) appendFields(b []byte) []byte { return append(b, r[1:]...) }

// resealWhole appends a valid checksum to a message body.
func resealWhole(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
}

func TestSplitAndAssemble(t *testing.T) {
	for _, size := range []int{0, 1, FragmentData - 1, FragmentData, FragmentData + 1, 3*FragmentData + 17} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		frames := Split(msg)
		if want := max(1, (size+FragmentData-1)/FragmentData); len(frames) != want {
			t.Errorf("size %d: %d frames, want %d", size, len(frames), want)
		}
		var a Assembler
		for i, f := range frames {
			if len(f) > sdk.MaxFramePayload {
				t.Fatalf("size %d: frame %d of %d bytes", size, i, len(f))
			}
			got, done, err := a.Add(f)
			if err != nil {
				t.Fatal(err)
			}
			if done != (i == len(frames)-1) {
				t.Fatalf("size %d: frame %d done=%v", size, i, done)
			}
			if done && !bytes.Equal(got, msg) {
				t.Fatalf("size %d: reassembled message differs", size)
			}
		}
		if a.Pending() {
			t.Errorf("size %d: assembler still pending", size)
		}
		// A message abandoned half way is dropped by the next one.
		if len(frames) > 1 {
			a.Add(frames[0])
			if got, done, err := a.Add(Split([]byte("next"))[0]); err != nil || !done || string(got) != "next" {
				t.Errorf("size %d: after an abandoned message got %q, %v, %v", size, got, done, err)
			}
		}
	}
}

func TestAssembleLimit(t *testing.T) {
	var a Assembler
	more := append([]byte{fragMagic, fragVersion, flagMore}, make([]byte, FragmentData)...)
	_, _, err := a.Add(append([]byte{fragMagic, fragVersion, flagMore | flagFirst}, make([]byte, FragmentData)...))
	for i := 0; err == nil && i <= MaxMessage/FragmentData+1; i++ {
		_, _, err = a.Add(more)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v after more than MaxMessage bytes; want ErrInvalid", err)
	}
	if a.Pending() {
		t.Error("assembler kept the refused message")
	}
	for name, f := range map[string][]byte{
		"short": {fragMagic}, "magic": {0, fragVersion, 0}, "version": {fragMagic, 2, 0}, "flags": {fragMagic, fragVersion, 6}, "no start": {fragMagic, fragVersion, 0},
		"long": make([]byte, sdk.MaxFramePayload+1),
	} {
		if _, _, err := a.Add(f); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v; want ErrInvalid", name, err)
		}
	}
}

// FuzzUnmarshal feeds whole messages, checksum included, so nearly every
// input stops at the checksum: FuzzFields explores the field decoders.
// Behind the checksum the only new coverage random mutation finds is in
// the loop counts of hash/crc32, which depend on the length alone; the
// fuzzing engine then minimizes such an input for up to -fuzzminimizetime
// (60 s by default), trying O(n²) shorter candidates none of which keeps
// that coverage, and shows 0 execs/s meanwhile. The decoder is not what is
// slow (testdata/fuzz/FuzzUnmarshal holds such an input); run it with
// -fuzzminimizetime 1s to keep it fuzzing.
func FuzzUnmarshal(f *testing.F) {
	for _, m := range samples() {
		f.Add(Marshal(m))
	}
	f.Add([]byte{magic, formatVersion, byte(KindScanPage), 0x12, 0x00, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Unmarshal(b)
		if err != nil {
			return
		}
		// What decodes must encode to something that decodes the same.
		again, err := Unmarshal(Marshal(m))
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoding changed the message:\n%#v\n%#v", m, again)
		}
	})
}

func FuzzAssemble(f *testing.F) {
	f.Add([]byte{fragMagic, fragVersion, flagMore | flagFirst, 1, 2}, []byte{fragMagic, fragVersion, 0, 3})
	f.Add([]byte{fragMagic, fragVersion, flagFirst}, []byte{})
	f.Fuzz(func(t *testing.T, p1, p2 []byte) {
		var a Assembler
		var total []byte
		for _, p := range [][]byte{p1, p2} {
			msg, done, err := a.Add(p)
			if err != nil {
				total = nil
				continue
			}
			if p[2]&flagFirst != 0 {
				total = nil
			}
			total = append(total, p[fragHeader:]...)
			if done {
				if !bytes.Equal(msg, total) {
					t.Fatalf("message %x, want %x", msg, total)
				}
				total = nil
			}
		}
	})
}

// FuzzFields seals whatever fields the fuzzer makes with a valid checksum,
// so that it explores the field decoders rather than the checksum.
func FuzzFields(f *testing.F) {
	for _, m := range samples() {
		enc := Marshal(m)
		f.Add(byte(m.Kind()), enc[header:len(enc)-trailer])
	}
	f.Fuzz(func(t *testing.T, kind byte, fields []byte) {
		m, err := Unmarshal(resealWhole(append([]byte{magic, formatVersion, kind}, fields...)))
		if err != nil {
			return
		}
		again, err := Unmarshal(Marshal(m))
		if err != nil {
			t.Fatalf("re-encoded %#v does not decode: %v", m, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoding changed the message:\n%#v\n%#v", m, again)
		}
	})
}
