package changer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// labSlot is one element of the fake library.
type labSlot struct {
	typ     ElementType
	addr    uint16
	barcode string // "" empty
	src     uint16
	serial  string // drives
}

// fakeLibrary answers the commands a changer driver sends the way tgt's
// changer does, including its faults: replies 8 bytes shorter than they
// declare, a wrong first-element address, the malformed all-types reply
// (from the fixture), and optionally a refused large allocation length
// (older tgt) or a spell of "becoming ready". It is a parsing-level aid
// for these tests; the driver's end-to-end tests run against tgt itself.
type fakeLibrary struct {
	els         []labSlot
	notReady    int // answer this many commands with NOT READY, becoming ready
	refuseAlloc int // answer element status with a larger allocation with HARDWARE ERROR
	noDVCID     bool
	cmds        []string
}

func newLab() *fakeLibrary {
	f := &fakeLibrary{}
	f.els = append(f.els, labSlot{typ: Transport, addr: 1})
	f.els = append(f.els, labSlot{typ: DataTransfer, addr: 2, serial: "DRV00001"}, labSlot{typ: DataTransfer, addr: 3, serial: "DRV00002"})
	for i := range 10 {
		s := labSlot{typ: Storage, addr: uint16(1000 + i)}
		if i < 6 {
			s.barcode = fmt.Sprintf("E%05dL6", i+1)
		}
		f.els = append(f.els, s)
	}
	f.els = append(f.els, labSlot{typ: ImportExport, addr: 1100}, labSlot{typ: ImportExport, addr: 1101})
	return f
}

func (f *fakeLibrary) Close() error { return nil }

func checkCondition(key, asc, ascq byte) scsi.Result {
	return scsi.Result{Status: scsi.StatusCheckCondition, Sense: []byte{0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0}}
}

func (f *fakeLibrary) Do(_ context.Context, cmd *scsi.Command) (scsi.Result, error) {
	f.cmds = append(f.cmds, fmt.Sprintf("% x", cmd.CDB))
	if f.notReady > 0 {
		f.notReady--
		return checkCondition(scsi.KeyNotReady, 0x04, 0x01), nil
	}
	fill := func(b []byte) scsi.Result {
		n := copy(cmd.Data, b)
		return scsi.Result{Residual: len(cmd.Data) - n}
	}
	switch cmd.CDB[0] {
	case scsi.OpInquiry:
		b := []byte{8, 0x80, 5, 2, 31, 0, 0, 2}
		b = append(b, []byte("STK     L700            0104")...)
		return fill(b), nil
	case scsi.OpModeSense6:
		if cmd.CDB[2]&0x3F != PageElementAddress {
			return checkCondition(scsi.KeyIllegalRequest, 0x24, 0), nil
		}
		p := []byte{0x1d, 0x12, 0, 1, 0, 1, 0x03, 0xe8, 0, 10, 0x04, 0x4c, 0, 2, 0, 2, 0, 2, 0, 0}
		return fill(append([]byte{byte(3 + len(p)), 0, 0, 0}, p...)), nil
	case scsi.OpInitializeElementStat:
		return scsi.Result{}, nil
	case scsi.OpReadElementStatus:
		return f.elementStatus(cmd, fill), nil
	case scsi.OpMoveMedium:
		return f.move(binary.BigEndian.Uint16(cmd.CDB[4:6]), binary.BigEndian.Uint16(cmd.CDB[6:8])), nil
	}
	return checkCondition(scsi.KeyIllegalRequest, 0x20, 0), nil
}

func (f *fakeLibrary) elementStatus(cmd *scsi.Command, fill func([]byte) scsi.Result) scsi.Result {
	typ := ElementType(cmd.CDB[1] & 0x0F)
	volTag, dvcid := cmd.CDB[1]&0x10 != 0, cmd.CDB[6]&1 != 0
	start := binary.BigEndian.Uint16(cmd.CDB[2:4])
	alloc := int(cmd.CDB[7])<<16 | int(cmd.CDB[8])<<8 | int(cmd.CDB[9])
	if f.refuseAlloc > 0 && alloc > f.refuseAlloc {
		return checkCondition(scsi.KeyHardwareError, 0x44, 0)
	}
	if dvcid && f.noDVCID {
		return checkCondition(scsi.KeyIllegalRequest, 0x24, 0)
	}
	if typ == AllTypes {
		return checkCondition(scsi.KeyIllegalRequest, 0x24, 0) // the tests never want it sent
	}
	size := 16
	if volTag {
		size = 52
		if dvcid {
			size = 86
		}
	} else if dvcid {
		size = 50
	}
	var descs []byte
	n := 0
	first := uint16(0)
	for _, e := range f.els {
		if e.typ != typ || e.addr < start {
			continue
		}
		if n == 0 {
			first = e.addr
		}
		n++
		d := make([]byte, size)
		binary.BigEndian.PutUint16(d, e.addr)
		if e.barcode != "" {
			d[2] = 1
			d[9] = 1
		}
		if e.src != 0 {
			d[9] |= 0x80
			binary.BigEndian.PutUint16(d[10:], e.src)
		}
		i := 12
		if volTag {
			copy(d[i:i+32], fmt.Sprintf("%-32s", e.barcode))
			i += 32
			if dvcid {
				i += 4
			}
		}
		if dvcid && e.typ == DataTransfer {
			d[i], d[i+1], d[i+3] = 2, 1, 34
			copy(d[i+4:], fmt.Sprintf("%-8s%-16s%-10s", "IBM", "ULT3580-TD6", e.serial))
		}
		descs = append(descs, d...)
	}
	b := make([]byte, 16, 16+len(descs))
	binary.BigEndian.PutUint16(b[0:], first+1) // tgt's first address is not to be trusted
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	binary.BigEndian.PutUint32(b[4:], uint32(8+len(descs)))
	b[8] = byte(typ)
	if volTag {
		b[9] = 0x80
	}
	binary.BigEndian.PutUint16(b[10:], uint16(size))
	binary.BigEndian.PutUint32(b[12:], uint32(len(descs)))
	b = append(b, descs...)
	return fill(b[:min(8+8+len(descs)-8, alloc)]) // tgt sends 8 bytes less than it declares
}

func (f *fakeLibrary) find(addr uint16) *labSlot {
	for i := range f.els {
		if f.els[i].addr == addr {
			return &f.els[i]
		}
	}
	return nil
}

func (f *fakeLibrary) move(src, dst uint16) scsi.Result {
	s, d := f.find(src), f.find(dst)
	switch {
	case s == nil || d == nil:
		return checkCondition(scsi.KeyIllegalRequest, 0x21, 0x01)
	case s.barcode == "":
		return checkCondition(scsi.KeyIllegalRequest, 0x3b, 0x0e)
	case d.barcode != "":
		return checkCondition(scsi.KeyIllegalRequest, 0x3b, 0x0d)
	}
	d.barcode, d.src = s.barcode, src
	s.barcode, s.src = "", 0
	return scsi.Result{}
}

func open(t *testing.T, f *fakeLibrary) *Changer {
	t.Helper()
	c, err := Open(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	c.ReadyWait = time.Millisecond
	return c
}

func TestOpenReadsAddresses(t *testing.T) {
	c := open(t, newLab())
	if got := c.Addresses.String(); got != "transports 1, slots 1000-1009, mail slots 1100-1101, drives 2-3" {
		t.Fatalf("addresses: %s", got)
	}
	if c.Inquiry.Vendor != "STK" || c.Inquiry.Product != "L700" {
		t.Fatalf("inquiry %+v", c.Inquiry)
	}
}

func TestOpenRefusesATapeDrive(t *testing.T) {
	_, err := Open(context.Background(), &tapeDrive{})
	if err == nil || !strings.Contains(err.Error(), "not a medium changer") {
		t.Fatalf("err %v", err)
	}
}

type tapeDrive struct{}

func (tapeDrive) Close() error { return nil }
func (tapeDrive) Do(_ context.Context, cmd *scsi.Command) (scsi.Result, error) {
	n := copy(cmd.Data, append([]byte{1, 0x80, 5, 2, 31, 0, 0, 0}, []byte("IBM     ULT3580-TD6     G350")...))
	return scsi.Result{Residual: len(cmd.Data) - n}, nil
}

func TestInventory(t *testing.T) {
	f := newLab()
	c := open(t, f)
	if err := c.Load(context.Background(), 1002, 3); err != nil {
		t.Fatal(err)
	}
	inv, err := c.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := `transport 1 empty | slot 1000 full "E00001L6" | slot 1001 full "E00002L6" | slot 1002 empty | slot 1003 full "E00004L6" | slot 1004 full "E00005L6" | slot 1005 full "E00006L6" | slot 1006 empty | slot 1007 empty | slot 1008 empty | slot 1009 empty | mail slot 1100 empty | mail slot 1101 empty | drive 2 empty id "IBM ULT3580-TD6 DRV00001" | drive 3 full "E00003L6" from 1002`
	if got := render(inv.All()); got != want {
		t.Fatalf("\n got  %s\n want %s", got, want)
	}
	if e, ok := inv.FindBarcode("E00003L6"); !ok || e.Address != 3 {
		t.Fatalf("find E00003L6: %v %v", e, ok)
	}
	for _, cdb := range f.cmds {
		if strings.HasPrefix(cdb, "b8") && cdb[4] == '0' {
			t.Fatalf("all-types READ ELEMENT STATUS sent: %s", cdb)
		}
	}
}

func TestInventoryWithoutDriveIdentifiers(t *testing.T) {
	f := newLab()
	f.noDVCID = true
	inv, err := open(t, f).Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Drives) != 2 || inv.Drives[0].DeviceID != "" {
		t.Fatalf("drives %v", inv.Drives)
	}
}

// A reply cut by the allocation length is read on from the element after
// the last whole one.
func TestReadElementsPages(t *testing.T) {
	f := newLab()
	c := open(t, f)
	c.alloc = 16 + 3*52
	els, err := c.ReadElements(context.Background(), Storage, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(els) != 10 || els[9].Address != 1009 || els[5].Barcode != "E00006L6" {
		t.Fatalf("elements %s", render(els))
	}
	var starts []string
	for _, cdb := range f.cmds {
		if strings.HasPrefix(cdb, "b8") {
			starts = append(starts, cdb[6:11])
		}
	}
	if got := strings.Join(starts, ","); got != "03 e8,03 eb,03 ee,03 f1" {
		t.Fatalf("requests started at %s", got)
	}
}

func TestReadElementsFallsBackToSmallAllocation(t *testing.T) {
	f := newLab()
	f.refuseAlloc = 4096
	c := open(t, f)
	els, err := c.ReadElements(context.Background(), Storage, true, false)
	if err != nil || len(els) != 10 {
		t.Fatalf("%v: %s", err, render(els))
	}
	if c.alloc != smallAlloc {
		t.Fatalf("alloc %d", c.alloc)
	}
}

func TestRetriesWhileBecomingReady(t *testing.T) {
	f := newLab()
	c := open(t, f)
	f.notReady = 3
	if err := c.Load(context.Background(), 1000, 2); err != nil {
		t.Fatal(err)
	}
	f.notReady = 100
	c.ReadyRetries = 5
	err := c.Unload(context.Background(), 2, 1000)
	if !scsi.IsSense(err, scsi.KeyNotReady, 0x04, 0x01) || !strings.Contains(err.Error(), "still not ready after 5 retries") {
		t.Fatalf("err %v", err)
	}
	if f.notReady != 94 {
		t.Fatalf("%d commands sent, want 6", 100-f.notReady)
	}
}

func TestMoves(t *testing.T) {
	ctx := context.Background()
	f := newLab()
	c := open(t, f)
	steps := []struct {
		name string
		do   func() error
		want string // "" for success, else a part of the error
	}{
		{"load", func() error { return c.Load(ctx, 1000, 2) }, ""},
		{"load into a full drive", func() error { return c.Load(ctx, 1001, 2) }, "medium destination element full"},
		{"load from an empty slot", func() error { return c.Load(ctx, 1009, 3) }, "medium source element empty"},
		{"load from a slot that does not exist", func() error { return c.Load(ctx, 1010, 3) },
			"load 1010 -> 3: source: element 1010 does not exist in this changer (transports 1, slots 1000-1009, mail slots 1100-1101, drives 2-3)"},
		{"load into a slot", func() error { return c.Load(ctx, 1001, 1002) }, "element 1002 is a slot, not a drive"},
		{"unload", func() error { return c.Unload(ctx, 2, 1000) }, ""},
		{"export", func() error { return c.Export(ctx, 1005, 1101) }, ""},
		{"import", func() error { return c.Import(ctx, 1101, 1009) }, ""},
		{"import from a slot", func() error { return c.Import(ctx, 1009, 1100) }, "element 1009 is a slot, not a mail slot"},
		{"move", func() error { return c.Move(ctx, 1009, 1005) }, ""},
		{"move to nowhere", func() error { return c.Move(ctx, 1009, 4000) }, "element 4000 does not exist"},
	}
	for _, s := range steps {
		err := s.do()
		if s.want == "" && err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.want != "" && (err == nil || !strings.Contains(err.Error(), s.want)) {
			t.Fatalf("%s: error %v, want %q", s.name, err, s.want)
		}
	}
	if got := f.find(1005).barcode; got != "E00006L6" {
		t.Fatalf("slot 1005 holds %q after the round trip", got)
	}
	if got := f.cmds[len(f.cmds)-1]; got != "a5 00 00 01 03 f1 03 ed 00 00 00 00" {
		t.Fatalf("last MOVE MEDIUM cdb %s", got)
	}
}

// An element the changer itself refuses (its assignment page and its
// elements disagree) gives an error naming the addresses.
func TestMoveRefusedAddress(t *testing.T) {
	f := newLab()
	c := open(t, f)
	f.els = f.els[:len(f.els)-1] // mail slot 1101 vanished
	err := c.Export(context.Background(), 1000, 1101)
	if !scsi.IsSense(err, scsi.KeyIllegalRequest, 0x21, 0x01) || !strings.Contains(err.Error(), "export 1000 -> 1101: the changer refused an element address") {
		t.Fatalf("err %v", err)
	}
	var cc *scsi.CheckConditionError
	if !errors.As(err, &cc) {
		t.Fatalf("no CheckConditionError in %v", err)
	}
}

func TestParseAddressAssignment(t *testing.T) {
	page := func(v ...uint16) []byte {
		b := make([]byte, 18)
		for i, x := range v {
			binary.BigEndian.PutUint16(b[2*i:], x)
		}
		return b
	}
	cases := []struct {
		name string
		p    []byte
		want string
	}{
		{"lab", page(1, 1, 1000, 10, 1100, 2, 2, 2), "transports 1, slots 1000-1009, mail slots 1100-1101, drives 2-3"},
		{"no mail slots", page(0, 1, 0x1000, 24, 0, 0, 0x100, 1), "transports 0, slots 4096-4119, mail slots none, drives 256"},
		{"overlap", page(1, 1, 1000, 10, 1005, 2, 2, 2), "error: slots 1000-1009 overlap mail slots 1005-1006"},
		{"past 65535", page(1, 1, 65530, 10, 1100, 2, 2, 2), "error: slots 65530+10 run past"},
		{"no drives", page(1, 1, 1000, 10, 1100, 2, 2, 0), "error: a library needs slots and drives"},
		{"short", make([]byte, 10), "error: 10 bytes, need 16"},
	}
	for _, c := range cases {
		a, err := ParseAddressAssignment(c.p)
		got := a.String()
		want, isErr := strings.CutPrefix(c.want, "error: ")
		if err != nil {
			got = err.Error()
		}
		if isErr != (err != nil) || !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func FuzzParseElementStatus(f *testing.F) {
	for _, c := range loadCases(f, "testdata/elements.txt") {
		f.Add(hexBytes(f, c["hex"]), 4096, strings.Contains(c["request"], "dvcid"))
	}
	f.Fuzz(func(t *testing.T, b []byte, alloc int, dvcid bool) {
		st, err := ParseElementStatus(b, alloc, dvcid)
		if err != nil {
			return
		}
		if !st.Truncated && len(st.Elements) != int(st.Available) {
			t.Fatalf("%d elements, header says %d", len(st.Elements), st.Available)
		}
		for _, e := range st.Elements {
			if e.Type < Transport || e.Type > DataTransfer {
				t.Fatalf("element type %d accepted", e.Type)
			}
			for _, s := range []string{e.Barcode, e.AltBarcode, e.DeviceID} {
				if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
					t.Fatalf("unprintable %q", s)
				}
			}
			_ = e.String()
		}
	})
}

func FuzzParseAddressAssignment(f *testing.F) {
	f.Add([]byte{0, 1, 0, 1, 3, 232, 0, 10, 4, 76, 0, 2, 0, 2, 0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAddressAssignment(b)
		if err != nil {
			return
		}
		for addr := range 0x10000 {
			n := 0
			for _, typ := range []ElementType{Transport, Storage, ImportExport, DataTransfer} {
				if a.Of(typ).Contains(uint16(addr)) {
					n++
				}
			}
			if n > 1 {
				t.Fatalf("address %d in %d ranges of %s", addr, n, a)
			}
		}
	})
}
