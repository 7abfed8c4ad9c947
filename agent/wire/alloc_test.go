package wire

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"

	"github.com/holdfast/holdfast/agent/change"
)

// allocated reports the bytes allocated by one call of fn.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// repeated seals a message of kind k whose fields are item repeated until
// the message is about size bytes.
func repeated(k Kind, item []byte, size int) []byte {
	n := max(1, (size-header-trailer)/len(item))
	return Marshal(rawMessage(append([]byte{byte(k)}, bytes.Repeat(item, n)...)))
}

// TestHostileAllocation feeds the decoder the messages that make it
// allocate most per byte received: items whose decoded form is many times
// their encoding. What it allocates must stay bounded whatever the sender
// claims, so that a peer cannot make a replica host run out of memory.
func TestHostileAllocation(t *testing.T) {
	problem := putBytes(nil, 3, []byte{0})[:1]                               // field 3, empty
	problem = append(problem, 0)                                             // length 0: an empty Problem
	entry := putBytes(nil, 2, putUint(putString(nil, ePath, "a"), eType, 1)) // smallest valid entry
	xattr := putBytes(nil, 2, append(putUint(putString(nil, ePath, "a"), eType, 1),
		putBytes(nil, eXattr, append(putString(nil, 1, "n"), 0x12, 0))...)) // an entry with one empty xattr
	const mib = 1 << 20
	cases := []struct {
		name  string
		msg   []byte
		limit uint64 // bytes the decoder may allocate
	}{
		{"max-size page of empty problems", repeated(KindScanPage, problem, MaxReply), 64 << 10},
		{"largest page of empty problems", repeated(KindScanPage, problem, maxScanItems*len(problem)), 8 * mib},
		{"max-size page of small entries", repeated(KindScanPage, entry, MaxReply), 64 << 10},
		{"largest page of small entries", repeated(KindScanPage, entry, maxScanItems*len(entry)), 24 * mib},
		{"max-size page of entries with an xattr", repeated(KindScanPage, xattr, MaxReply), 48 * mib},
		{"page as large as an apply", repeated(KindScanPage, problem, MaxMessage), 64 << 10},
		{"failure as large as an apply", repeated(KindFailure, putUint(nil, 3, 1), MaxMessage), 64 << 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := allocated(func() { _, _ = Unmarshal(c.msg) })
			t.Logf("%d-byte message: %d bytes allocated", len(c.msg), got)
			if got > c.limit {
				t.Errorf("%d-byte message made the decoder allocate %d bytes; at most %d", len(c.msg), got, c.limit)
			}
		})
	}
}

// TestLargeApplyCopies checks that a large Apply is not copied over and
// over while it is encoded and reassembled: that is the cost of every
// byte a remote replica receives.
func TestLargeApplyCopies(t *testing.T) {
	var m Apply
	for i := range 12 {
		m.Changes = append(m.Changes, change.Change{Seq: uint64(i + 1), Op: change.OpReplaceFile,
			Path: fmt.Sprintf("d/f%d", i), Data: bytes.Repeat([]byte{byte(i)}, 5<<20), Mode: 0o644})
	}
	var enc []byte
	got := allocated(func() { enc = Marshal(m) })
	if limit := uint64(len(enc)) * 11 / 10; got > limit {
		t.Errorf("Marshal of a %d-byte Apply allocated %d bytes; at most %d", len(enc), got, limit)
	}
	frames := Split(enc)
	var out []byte
	got = allocated(func() {
		var a Assembler
		for _, f := range frames {
			msg, done, err := a.Add(f)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				out = msg
			}
		}
	})
	if limit := uint64(len(enc)) * 9 / 4; got > limit {
		t.Errorf("reassembling a %d-byte message from %d fragments allocated %d bytes; at most %d", len(enc), len(frames), got, limit)
	}
	if !bytes.Equal(out, enc) {
		t.Fatal("reassembled message differs")
	}
}
