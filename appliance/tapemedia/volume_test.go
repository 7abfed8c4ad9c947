package tapemedia

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/holdfast/holdfast/appliance/tapeformat"
	"github.com/holdfast/holdfast/drivers/changer"
	"github.com/holdfast/holdfast/drivers/tape"
	"github.com/holdfast/holdfast/drivers/vtl"
)

// library is a virtual library driven through the real changer and tape
// drivers: every step below is a SCSI command answered by drivers/vtl.
type library struct {
	t     *testing.T
	ctx   context.Context
	ch    *changer.Changer
	drive *tape.Drive
	addr  uint16 // the drive's element address
	slots map[string]uint16
}

func openLibrary(t *testing.T, barcodes ...string) *library {
	t.Helper()
	ctx := context.Background()
	lib, err := vtl.Open(t.TempDir(), vtl.Config{Slots: 4, Drives: 1, MailSlots: 1, Capacity: 3 << 20, EarlyWarning: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lib.Close() })
	for _, bc := range barcodes {
		if err := lib.CreateTape(bc, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := lib.Stock(bc); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := changer.Open(ctx, lib.Changer())
	if err != nil {
		t.Fatal(err)
	}
	inv, err := ch.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := &library{t: t, ctx: ctx, ch: ch, addr: inv.Drives[0].Address, slots: map[string]uint16{}}
	for _, bc := range barcodes {
		e, ok := inv.FindBarcode(bc)
		if !ok {
			t.Fatalf("inventory lacks %s: %+v", bc, inv)
		}
		l.slots[bc] = e.Address
	}
	if l.drive, err = tape.Open(ctx, lib.Drive(0), tape.Timeouts{Short: 5 * time.Second, ReadWrite: 10 * time.Second, Long: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	return l
}

// load puts a cartridge in the drive, ready for the format.
func (l *library) load(barcode string) Volume {
	l.t.Helper()
	if err := l.ch.Load(l.ctx, l.slots[barcode], l.addr); err != nil {
		l.t.Fatalf("load %s: %v", barcode, err)
	}
	if err := l.drive.WaitReady(l.ctx, 5*time.Second); err != nil {
		l.t.Fatalf("load %s: %v", barcode, err)
	}
	if err := Prepare(l.ctx, l.drive); err != nil {
		l.t.Fatal(err)
	}
	return Volume{Ctx: l.ctx, Drive: l.drive}
}

func (l *library) unload(barcode string) {
	l.t.Helper()
	if err := l.drive.Unload(l.ctx); err != nil {
		l.t.Fatal(err)
	}
	if err := l.ch.Unload(l.ctx, l.addr, l.slots[barcode]); err != nil {
		l.t.Fatalf("unload %s: %v", barcode, err)
	}
}

func (l *library) here() uint64 {
	l.t.Helper()
	p, err := l.drive.Position(l.ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	return p.Block
}

// TestSessionAcrossTwoTapes writes a session bigger than a tape through
// the changer and drive drivers onto the virtual library, reads it back
// whole across both volumes, and reads single "files" of it after a
// LOCATE on each volume.
func TestSessionAcrossTwoTapes(t *testing.T) {
	l := openLibrary(t, "HF0001L9", "HF0002L9")
	want := make([]byte, 4<<20) // more than a 3 MiB tape, less than two
	rng := rand.New(rand.NewPCG(5, 5))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	const block = 64 << 10

	vol := l.load("HF0001L9")
	if err := tapeformat.WriteLabel(vol, tapeformat.Label{Barcode: "HF0001L9", MediaSet: "weekly-48", Sequence: 1, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	starts := map[int]SessionStart{1: {Object: l.here(), FirstData: 1}}
	w, err := tapeformat.NewSessionWriter(vol, tapeformat.SessionInfo{Stored: "20261125T220000Z-0a1b2c3d", Host: "fs01", Entity: "/srv"}, block)
	if err != nil {
		t.Fatal(err)
	}
	// "Files" of 300 KiB; the position of each is recorded as the catalog would.
	type file struct {
		pos      tapeformat.Position
		from, to int
	}
	var files []file
	for off := 0; off < len(want); {
		end := min(off+300<<10, len(want))
		files = append(files, file{pos: w.Tell(), from: off, to: end})
		n, err := w.Write(want[off:end])
		off += n
		if errors.Is(err, tapeformat.ErrVolumeFull) {
			l.unload("HF0001L9")
			vol = l.load("HF0002L9")
			if err := tapeformat.WriteLabel(vol, tapeformat.Label{Barcode: "HF0002L9", MediaSet: "weekly-48", Sequence: 2, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
			starts[2] = SessionStart{Object: l.here(), FirstData: w.Tell().Seq}
			if err := w.Continue(vol); err != nil {
				t.Fatal(err)
			}
			// The rest of this file goes on the second volume, recorded
			// as a file of its own.
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := starts[2]; !ok {
		t.Fatal("the session fit one tape: make it bigger than the tape")
	}
	tr, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tr.Bytes != uint64(len(want)) {
		t.Fatalf("trailer %+v", tr)
	}

	// Whole session, across both tapes.
	l.unload("HF0002L9")
	vol = l.load("HF0001L9")
	if lb, err := tapeformat.ReadLabel(vol); err != nil || lb.Barcode != "HF0001L9" || lb.Sequence != 1 {
		t.Fatalf("label of the first tape = %+v, %v", lb, err)
	}
	r, err := tapeformat.NewSessionReader(vol)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := io.Copy(&got, r); !errors.Is(err, tapeformat.ErrNeedNextVolume) {
		t.Fatalf("end of the first tape: %v", err)
	}
	stream := r.Stream()
	// One file of the first volume, after a LOCATE.
	first := files[1]
	if err := Locate(l.ctx, l.drive, starts[1], first.pos); err != nil {
		t.Fatal(err)
	}
	readFile(t, vol, stream, first.pos, want[first.from:first.to])

	l.unload("HF0001L9")
	vol = l.load("HF0002L9")
	if lb, err := tapeformat.ReadLabel(vol); err != nil || lb.Sequence != 2 {
		t.Fatalf("label of the second tape = %+v, %v", lb, err)
	}
	if err := r.Continue(vol); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(&got, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read back %d bytes, want %d, different", got.Len(), len(want))
	}
	// One file of the second volume, after a LOCATE.
	last := files[len(files)-1]
	if last.pos.Seq < starts[2].FirstData {
		t.Fatalf("the last file starts on the first volume (block %d < %d)", last.pos.Seq, starts[2].FirstData)
	}
	if err := Locate(l.ctx, l.drive, starts[2], last.pos); err != nil {
		t.Fatal(err)
	}
	readFile(t, vol, stream, last.pos, want[last.from:last.to])
}

func readFile(t *testing.T, vol Volume, stream [16]byte, pos tapeformat.Position, want []byte) {
	t.Helper()
	r, err := tapeformat.NewSessionReaderAt(vol, stream, pos)
	if err != nil {
		t.Fatalf("read from %+v: %v", pos, err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file at %+v: %v (equal %v)", pos, err, bytes.Equal(got, want))
	}
}
