package tape

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
	"github.com/holdfast/holdfast/drivers/vtl"
)

// library is a virtual library with tapes stocked in its first slots.
func library(t testing.TB, capacity int64, barcodes ...string) *vtl.Library {
	t.Helper()
	l, err := vtl.Open(t.TempDir(), vtl.Config{Slots: 8, Drives: 2, MailSlots: 1, Capacity: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, bc := range barcodes {
		if err := l.CreateTape(bc, capacity); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Stock(bc); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// moveMedium drives the changer directly (the changer driver is another
// package's job).
func moveMedium(t testing.TB, l *vtl.Library, from, to uint16) {
	t.Helper()
	cdb := make([]byte, 12)
	cdb[0] = 0xA5
	binary.BigEndian.PutUint16(cdb[4:], from)
	binary.BigEndian.PutUint16(cdb[6:], to)
	res, err := l.Changer().Do(context.Background(), &scsi.Command{CDB: cdb})
	if err != nil || res.Status != 0 {
		t.Fatalf("move %#x -> %#x: %v % x", from, to, err, res.Sense)
	}
}

// loaded opens drive 0 with the first slot's tape loaded and ready.
func loaded(t testing.TB, l *vtl.Library) *Drive {
	t.Helper()
	ctx := context.Background()
	moveMedium(t, l, vtl.FirstSlot, vtl.FirstDrive)
	d, err := Open(ctx, l.Drive(0), Timeouts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// block is deterministic content for block i of a session.
func block(session, i, size int) []byte {
	b := bytes.Repeat([]byte{byte(session), byte(i)}, size/2+1)[:size]
	binary.BigEndian.PutUint32(b, uint32(session<<16|i))
	return b
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	l := library(t, 0)
	if _, err := Open(ctx, l.Changer(), Timeouts{}); !errors.Is(err, ErrNotTape) {
		t.Fatalf("open changer as tape: %v", err)
	}
	d, err := Open(ctx, l.Drive(1), Timeouts{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Serial() != "HFVTLD001" || d.Inquiry().Vendor != "HOLDFAST" || !d.Inquiry().Removable {
		t.Fatalf("serial %q inquiry %+v", d.Serial(), d.Inquiry())
	}
	// An empty drive answers at once; nothing waits out the deadline.
	if err := d.WaitReady(ctx, time.Hour); !errors.Is(err, ErrNoMedium) {
		t.Fatalf("wait ready on an empty drive: %v", err)
	}
	if _, err := d.Write(ctx, make([]byte, 10)); !errors.Is(err, ErrNoMedium) {
		t.Fatalf("write to an empty drive: %v", err)
	}
}

// hungDevice never answers, as the lab's tgt did on an empty drive.
type hungDevice struct{}

func (hungDevice) Do(ctx context.Context, _ *scsi.Command) (scsi.Result, error) {
	<-ctx.Done()
	return scsi.Result{}, ctx.Err()
}
func (hungDevice) Close() error { return nil }

func TestEveryCommandIsBounded(t *testing.T) {
	_, err := Open(context.Background(), hungDevice{}, Timeouts{Short: 20 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open of a hung device: %v", err)
	}
}

func TestWriteSessionsReadBackAndLocate(t *testing.T) {
	ctx := context.Background()
	l := library(t, 0, "S00001")
	d := loaded(t, l)
	if err := d.SetBlockSize(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if bc, err := d.Barcode(ctx); err != nil || bc != "S00001" {
		t.Fatalf("barcode %q %v", bc, err)
	}
	// Session s: 4 full blocks and a short last one, then a filemark.
	// Objects: session 0 = 0..4, FM 5; session 1 = 6..10, FM 11; ...
	const sessions, per = 3, 5
	size := func(i int) int {
		if i == per-1 {
			return 1000
		}
		return DefaultBlockSize
	}
	for s := range sessions {
		for i := range per {
			if n, err := d.Write(ctx, block(s, i, size(i))); err != nil || n != size(i) {
				t.Fatalf("write %d/%d: %d %v", s, i, n, err)
			}
		}
		if err := d.WriteFilemarks(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	pos, err := d.Position(ctx)
	if err != nil || pos.Block != sessions*(per+1) || pos.File != sessions {
		t.Fatalf("position at the end %+v %v", pos, err)
	}
	if err := d.Rewind(ctx); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, DefaultBlockSize)
	for s := range sessions {
		for i := range per {
			n, err := d.Read(ctx, buf)
			if err != nil || !bytes.Equal(buf[:n], block(s, i, size(i))) {
				t.Fatalf("read %d/%d: %d bytes, %v", s, i, n, err)
			}
		}
		if n, err := d.Read(ctx, buf); !errors.Is(err, ErrFilemark) || n != 0 {
			t.Fatalf("end of session %d: %d %v", s, n, err)
		}
	}
	if _, err := d.Read(ctx, buf); !errors.Is(err, ErrEndOfData) {
		t.Fatalf("past the last session: %v", err)
	}
	// Straight to the third block of the second session.
	if err := d.Locate(ctx, per+1+2); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Read(ctx, buf); err != nil || !bytes.Equal(buf[:n], block(1, 2, DefaultBlockSize)) {
		t.Fatalf("read after locate: %v", err)
	}
	if pos, err := d.Position(ctx); err != nil || pos.Block != per+1+3 || pos.File != 1 || pos.BOP {
		t.Fatalf("position after locate and read %+v %v", pos, err)
	}
	if err := d.Locate(ctx, 1000); !errors.Is(err, ErrEndOfData) {
		t.Fatalf("locate past the end: %v", err)
	}

	spaces := []struct {
		from    uint64
		kind    SpaceKind
		count   int
		want    error
		wantPos uint64
		info    int64
	}{
		{0, SpaceFilemarks, 2, nil, 2 * (per + 1), 0},
		{0, SpaceFilemarks, 5, ErrEndOfData, sessions * (per + 1), 2},
		{2 * (per + 1), SpaceFilemarks, -1, nil, 2*(per+1) - 1, 0},
		{2 * (per + 1), SpaceFilemarks, -3, ErrBeginningOfTape, 0, 1},
		{0, SpaceBlocks, 3, nil, 3, 0},
		{3, SpaceBlocks, 4, ErrFilemark, per + 1, 2},
		{per + 2, SpaceBlocks, -2, ErrFilemark, per, 1},
		{2, SpaceBlocks, -2, nil, 0, 0},
		{2, SpaceBlocks, -3, ErrBeginningOfTape, 0, 1},
		{0, SpaceEndOfData, 0, nil, sessions * (per + 1), 0},
	}
	for _, tc := range spaces {
		if err := d.Locate(ctx, tc.from); err != nil {
			t.Fatal(err)
		}
		err := d.Space(ctx, tc.kind, tc.count)
		var cc *CheckCondition
		switch {
		case tc.want == nil && err != nil, tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("space %d×%d from %d: %v, want %v", tc.count, tc.kind, tc.from, err, tc.want)
		case tc.want != nil && errors.As(err, &cc) && cc.Sense.Info != tc.info:
			t.Errorf("space %d×%d from %d: %d left, want %d", tc.count, tc.kind, tc.from, cc.Sense.Info, tc.info)
		}
		if pos, err := d.Position(ctx); err != nil || pos.Block != tc.wantPos {
			t.Errorf("space %d×%d from %d: at %d, want %d (%v)", tc.count, tc.kind, tc.from, pos.Block, tc.wantPos, err)
		}
	}

	// Writing in the middle cuts what followed, as on tape.
	if err := d.Locate(ctx, per+1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(ctx, block(9, 0, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(ctx, buf); !errors.Is(err, ErrEndOfData) {
		t.Fatalf("after overwriting session 1: %v", err)
	}
	if err := d.Unload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(ctx, time.Second); !errors.Is(err, ErrNoMedium) {
		t.Fatalf("after unload: %v", err)
	}
	if err := d.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestShortAndLongReads(t *testing.T) {
	ctx := context.Background()
	d := loaded(t, library(t, 0, "R00001"))
	for _, n := range []int{1000, 1000} {
		if _, err := d.Write(ctx, block(0, 0, n)); err != nil {
			t.Fatal(err)
		}
	}
	d.Rewind(ctx)
	buf := make([]byte, 4096)
	if n, err := d.Read(ctx, buf); err != nil || n != 1000 {
		t.Fatalf("short read: %d %v", n, err)
	}
	small := make([]byte, 100)
	n, err := d.Read(ctx, small)
	if !errors.Is(err, ErrBlockTooLarge) || n != 100 || !bytes.Equal(small, block(0, 0, 1000)[:100]) {
		t.Fatalf("long block into a short buffer: %d %v", n, err)
	}
}

func TestFixedBlockMode(t *testing.T) {
	ctx := context.Background()
	d := loaded(t, library(t, 0, "X00001"))
	const bs = 64 << 10
	if err := d.SetBlockSize(ctx, bs); err != nil {
		t.Fatal(err)
	}
	if size, wp, err := d.Mode(ctx); err != nil || size != bs || wp {
		t.Fatalf("mode: %d %v %v", size, wp, err)
	}
	data := append(block(1, 0, bs), block(1, 1, bs)...)
	data = append(data, block(1, 2, 2*bs)...)
	if n, err := d.Write(ctx, data); err != nil || n != len(data) {
		t.Fatalf("write 4 blocks: %d %v", n, err)
	}
	if err := d.WriteFilemarks(ctx, 1); err != nil {
		t.Fatal(err)
	}
	d.Rewind(ctx)
	got := make([]byte, 0, len(data))
	buf := make([]byte, 2*bs)
	for range 2 {
		n, err := d.Read(ctx, buf)
		if err != nil || n != len(buf) {
			t.Fatalf("read 2 blocks: %d %v", n, err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("fixed blocks read back differ")
	}
	if n, err := d.Read(ctx, buf); !errors.Is(err, ErrFilemark) || n != 0 {
		t.Fatalf("at the filemark: %d %v", n, err)
	}
	if _, err := d.Write(ctx, make([]byte, bs+1)); err == nil {
		t.Fatal("wrote a partial fixed block")
	}
	// A variable block read in fixed mode is an error, not data.
	if err := d.SetBlockSize(ctx, 0); err != nil {
		t.Fatal(err)
	}
	d.Write(ctx, make([]byte, 1000))
	d.Space(ctx, SpaceBlocks, -1)
	d.SetBlockSize(ctx, bs)
	if _, err := d.Read(ctx, make([]byte, bs)); err == nil {
		t.Fatal("read a 1000-byte block as a fixed one")
	}
}

func TestEarlyWarningThenEndOfMedium(t *testing.T) {
	ctx := context.Background()
	const capacity = 4 << 20 // early warning 1/50 before the end
	d := loaded(t, library(t, capacity, "E00001"))
	const bs = 32 << 10
	written, warnedAt := 0, -1
	for i := 0; ; i++ {
		n, err := d.Write(ctx, block(2, i, bs))
		if errors.Is(err, ErrEarlyWarning) {
			if n != bs {
				t.Fatalf("early warning: %d bytes taken", n)
			}
			if warnedAt < 0 {
				warnedAt = i
				pos, err := d.Position(ctx)
				if err != nil || !pos.BPEW {
					t.Fatalf("position after early warning: %+v %v", pos, err)
				}
			}
			written++
			continue
		}
		if errors.Is(err, ErrEndOfMedium) {
			if n != 0 {
				t.Fatalf("end of medium: %d bytes taken", n)
			}
			break
		}
		if err != nil || warnedAt >= 0 {
			t.Fatalf("block %d: %v (warned at %d)", i, err, warnedAt)
		}
		written++
		if i > 1000 {
			t.Fatal("never reached the end")
		}
	}
	if warnedAt < 1 || written <= warnedAt {
		t.Fatalf("warned at block %d of %d", warnedAt, written)
	}
	// A filemark no longer fits either; the blocks written read back whole.
	if err := d.WriteFilemarks(ctx, 1); !errors.Is(err, ErrEndOfMedium) && !errors.Is(err, ErrEarlyWarning) {
		t.Fatalf("filemark at the end: %v", err)
	}
	d.Rewind(ctx)
	buf := make([]byte, bs)
	for i := range written {
		if n, err := d.Read(ctx, buf); err != nil || !bytes.Equal(buf[:n], block(2, i, bs)) {
			t.Fatalf("read back %d: %v", i, err)
		}
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("write protected", func(t *testing.T) {
		l := library(t, 0, "W00001")
		if err := l.SetWriteProtected("W00001", true); err != nil {
			t.Fatal(err)
		}
		d := loaded(t, l)
		if _, err := d.Write(ctx, make([]byte, 100)); !errors.Is(err, ErrWriteProtected) {
			t.Fatalf("write: %v", err)
		}
		if err := d.WriteFilemarks(ctx, 1); !errors.Is(err, ErrWriteProtected) {
			t.Fatalf("filemark: %v", err)
		}
		if _, wp, err := d.Mode(ctx); err != nil || !wp {
			t.Fatalf("mode: wp %v %v", wp, err)
		}
		if a, err := d.TapeAlert(ctx); err != nil || !a.Has(AlertWriteProtect) {
			t.Fatalf("tapealert %x %v", a, err)
		}
		if err := l.SetWriteProtected("W00001", false); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Write(ctx, make([]byte, 100)); err != nil {
			t.Fatalf("write after the tab is cleared: %v", err)
		}
	})
	t.Run("fails mid-write", func(t *testing.T) {
		l := library(t, 0, "F00001")
		d := loaded(t, l)
		l.Inject(0, vtl.Faults{FailWriteAfter: 2500})
		for i := range 2 {
			if _, err := d.Write(ctx, make([]byte, 1000)); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		if n, err := d.Write(ctx, make([]byte, 1000)); !errors.Is(err, ErrMedium) || n != 0 {
			t.Fatalf("write past the fault: %d %v", n, err)
		}
		if _, err := d.Write(ctx, make([]byte, 10)); !errors.Is(err, ErrMedium) {
			t.Fatalf("write after the fault: %v", err)
		}
		if a, err := d.TapeAlert(ctx); err != nil || !a.Has(AlertHardError) {
			t.Fatalf("tapealert %x %v", a, err)
		}
		l.Inject(0, vtl.Faults{})
		d.Rewind(ctx)
		if err := d.Space(ctx, SpaceEndOfData, 0); err != nil {
			t.Fatal(err)
		}
		if pos, _ := d.Position(ctx); pos.Block != 2 {
			t.Fatalf("%d blocks on tape, want the 2 acknowledged", pos.Block)
		}
	})
	t.Run("drive disappears", func(t *testing.T) {
		l := library(t, 0, "G00001")
		d := loaded(t, l)
		l.Inject(0, vtl.Faults{Gone: true})
		if _, err := d.Write(ctx, make([]byte, 10)); !errors.Is(err, vtl.ErrGone) {
			t.Fatalf("write to a vanished drive: %v", err)
		}
		var cc *CheckCondition
		if _, err := d.Position(ctx); err == nil || errors.As(err, &cc) {
			t.Fatalf("position: %v", err)
		}
	})
	t.Run("tape full early", func(t *testing.T) {
		l := library(t, 0, "P00001")
		d := loaded(t, l)
		l.Inject(0, vtl.Faults{FullAt: 100 << 10})
		var err error
		for i := 0; i < 200 && err == nil; i++ {
			_, err = d.Write(ctx, make([]byte, 1<<10))
		}
		if !errors.Is(err, ErrEarlyWarning) {
			t.Fatalf("on a tape full at 100 KiB: %v", err)
		}
	})
	t.Run("cleaning needed", func(t *testing.T) {
		l := library(t, 0, "C00001")
		d := loaded(t, l)
		if a, err := d.TapeAlert(ctx); err != nil || a.CleaningNeeded() {
			t.Fatalf("healthy drive: %x %v", a, err)
		}
		l.Inject(0, vtl.Faults{CleaningNeeded: true})
		if a, err := d.TapeAlert(ctx); err != nil || !a.CleaningNeeded() || !a.Has(AlertCleanNow) {
			t.Fatalf("after injection: %x %v", a, err)
		}
		// Cleaning needed does not stop a write.
		if _, err := d.Write(ctx, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConcurrentDrives(t *testing.T) {
	ctx := context.Background()
	l := library(t, 0, "K00001", "K00002")
	moveMedium(t, l, vtl.FirstSlot, vtl.FirstDrive)
	moveMedium(t, l, vtl.FirstSlot+1, vtl.FirstDrive+1)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			d, err := Open(ctx, l.Drive(i), Timeouts{})
			if err == nil {
				err = d.WaitReady(ctx, time.Second)
			}
			for j := 0; j < 50 && err == nil; j++ {
				_, err = d.Write(ctx, block(i, j, 4096))
			}
			errs <- err
		}()
	}
	// The changer keeps answering while both drives write.
	for range 20 {
		cdb := []byte{0xB8, 0x10, 0, 0, 0, 100, 0, 0, 0x10, 0, 0, 0}
		if _, err := l.Changer().Do(ctx, &scsi.Command{CDB: cdb, Data: make([]byte, 4096)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
