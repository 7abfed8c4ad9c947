package vtl

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/drivers/scsi"
)

func newLib(t *testing.T, dir string, cfg Config, barcodes ...string) *Library {
	t.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, bc := range barcodes {
		if err := l.CreateTape(bc, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Stock(bc); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func run(t *testing.T, dev scsi.Device, cdb []byte, dir scsi.Direction, data []byte) scsi.Result {
	t.Helper()
	res, err := dev.Do(context.Background(), &scsi.Command{CDB: cdb, Dir: dir, Data: data})
	if err != nil {
		t.Fatalf("cdb % x: %v", cdb, err)
	}
	return res
}

// senseOf returns key/asc/ascq of a result as "k/aa/qq", "" for GOOD.
func senseOf(r scsi.Result) string {
	if r.Status == scsi.StatusGood {
		return ""
	}
	return fmt.Sprintf("%x/%02x/%02x", r.Sense[2]&0x0F, r.Sense[12], r.Sense[13])
}

func move(t *testing.T, l *Library, from, to uint16) string {
	t.Helper()
	cdb := make([]byte, 12)
	cdb[0] = opMoveMedium
	binary.BigEndian.PutUint16(cdb[4:], from)
	binary.BigEndian.PutUint16(cdb[6:], to)
	return senseOf(run(t, l.Changer(), cdb, scsi.None, nil))
}

// elementStatus is one descriptor as a test reads it back.
type elementStatus struct {
	typ    int
	addr   uint16
	full   bool
	tag    string
	source uint16
}

// readElements parses a READ ELEMENT STATUS reply, checking every count
// and length the report declares against what it holds.
func readElements(t *testing.T, l *Library, typ byte, start, count uint16, alloc int) []elementStatus {
	t.Helper()
	cdb := make([]byte, 12)
	cdb[0] = opReadElemStatus
	cdb[1] = 0x10 | typ
	binary.BigEndian.PutUint16(cdb[2:], start)
	binary.BigEndian.PutUint16(cdb[4:], count)
	put24(cdb[7:], alloc)
	buf := make([]byte, alloc)
	res := run(t, l.Changer(), cdb, scsi.FromDevice, buf)
	if res.Status != 0 {
		t.Fatalf("read element status: %s", senseOf(res))
	}
	b := buf[:alloc-res.Residual]
	n := int(binary.BigEndian.Uint16(b[2:]))
	total := int(b[5])<<16 | int(b[6])<<8 | int(b[7])
	if total != len(b)-8 {
		t.Fatalf("byte count of report %d, %d present", total, len(b)-8)
	}
	var out []elementStatus
	p := b[8:]
	for len(p) > 0 {
		dl := int(binary.BigEndian.Uint16(p[2:]))
		size := int(p[5])<<16 | int(p[6])<<8 | int(p[7])
		if p[1]&0x80 == 0 || dl != 48 || size%dl != 0 || 8+size > len(p) {
			t.Fatalf("page header % x: voltag %v, descriptor %d, bytes %d of %d", p[:8], p[1]&0x80 != 0, dl, size, len(p)-8)
		}
		for d := p[8 : 8+size]; len(d) > 0; d = d[dl:] {
			e := elementStatus{typ: int(p[0]), addr: binary.BigEndian.Uint16(d), full: d[2]&1 != 0, tag: strings.Trim(string(d[12:44]), " \x00")}
			if d[9]&0x80 != 0 {
				e.source = binary.BigEndian.Uint16(d[10:])
			}
			out = append(out, e)
		}
		p = p[8+size:]
	}
	if len(out) != n {
		t.Fatalf("header says %d elements, %d descriptors", n, len(out))
	}
	if n > 0 && binary.BigEndian.Uint16(b) != out[0].addr {
		t.Fatalf("first element %#x, first descriptor %#x", binary.BigEndian.Uint16(b), out[0].addr)
	}
	return out
}

func TestChangerInquiryAndAddressPage(t *testing.T) {
	l := newLib(t, t.TempDir(), Config{Slots: 8, Drives: 2, MailSlots: 2})
	buf := make([]byte, 36)
	run(t, l.Changer(), []byte{opInquiry, 0, 0, 0, 36, 0}, scsi.FromDevice, buf)
	if buf[0] != peripheralChanger || !strings.HasPrefix(string(buf[8:]), "HOLDFAST") {
		t.Fatalf("inquiry % x", buf)
	}
	page := make([]byte, 64)
	res := run(t, l.Changer(), []byte{opModeSense6, 0x08, elementAddressPage, 0, 64, 0}, scsi.FromDevice, page)
	page = page[:64-res.Residual]
	if int(page[0]) != len(page)-1 || page[4] != elementAddressPage {
		t.Fatalf("mode sense % x", page)
	}
	got := []uint16{}
	for i := 6; i < 22; i += 2 {
		got = append(got, binary.BigEndian.Uint16(page[i:]))
	}
	want := []uint16{TransportAddr, 1, FirstSlot, 8, FirstMail, 2, FirstDrive, 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("element address page %v, want %v", got, want)
	}
}

func TestReadElementStatus(t *testing.T) {
	l := newLib(t, t.TempDir(), Config{Slots: 4, Drives: 2, MailSlots: 1}, "A00001", "A00002")
	all := readElements(t, l, 0, 0, 0xFFFF, 0xFFFF)
	if len(all) != 1+2+1+4 {
		t.Fatalf("%d elements", len(all))
	}
	tests := []struct {
		typ   byte
		start uint16
		count uint16
		want  string
	}{
		{elemSlot, 0, 100, "0400:A00001 0401:A00002 0402: 0403:"},
		{elemSlot, FirstSlot + 1, 2, "0401:A00002 0402:"},
		{elemDrive, 0, 100, "0100: 0101:"},
		{elemMail, 0, 100, "0200:"},
		{elemTransport, 0, 100, "0000:"},
		{0, FirstMail, 2, "0200: 0400:A00001"},
	}
	for _, tc := range tests {
		var got []string
		for _, e := range readElements(t, l, tc.typ, tc.start, tc.count, 0xFFFF) {
			got = append(got, fmt.Sprintf("%04x:%s", e.addr, e.tag))
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("type %d from %#x: %s, want %s", tc.typ, tc.start, s, tc.want)
		}
	}
	// Cut by the allocation length: the transfer stops, the counts do not shrink.
	cdb := []byte{opReadElemStatus, 0x10 | elemSlot, 0, 0, 0, 100, 0, 0, 0, 20, 0, 0}
	buf := make([]byte, 20)
	res := run(t, l.Changer(), cdb, scsi.FromDevice, buf)
	if res.Residual != 0 || binary.BigEndian.Uint16(buf[2:]) != 4 || int(buf[7]) != 8+4*48 {
		t.Fatalf("cut report: residual %d header % x", res.Residual, buf[:8])
	}
}

func TestMoveMedium(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Slots: 4, Drives: 2, MailSlots: 1}
	l := newLib(t, dir, cfg, "A00001", "A00002")
	tests := []struct {
		from, to uint16
		want     string
	}{
		{FirstSlot + 2, FirstDrive, "5/3b/0e"},      // source empty
		{FirstSlot, FirstSlot + 1, "5/3b/0d"},       // destination full
		{FirstSlot, 0x0999, "5/21/01"},              // no such element
		{0x0050, FirstDrive, "5/21/01"},             // no such element
		{FirstSlot, TransportAddr, "5/21/01"},       // not a destination
		{FirstSlot, FirstDrive, ""},                 // load
		{FirstSlot + 1, FirstDrive, "5/3b/0d"},      // drive full
		{FirstDrive, FirstSlot + 3, ""},             // unload to another slot
		{FirstSlot + 1, FirstMail, ""},              // export
		{FirstSlot + 3, FirstDrive + 1, ""},         // load the second drive
		{FirstDrive + 1, FirstDrive + 1, "5/3b/0d"}, // onto itself
	}
	for _, tc := range tests {
		if got := move(t, l, tc.from, tc.to); got != tc.want {
			t.Errorf("move %#x -> %#x: %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
	drives := readElements(t, l, elemDrive, 0, 10, 0xFFFF)
	if !drives[1].full || drives[1].tag != "A00001" || drives[1].source != FirstSlot+3 {
		t.Fatalf("drive 1: %+v", drives[1])
	}
	// The operator takes the exported tape, brings it back later.
	if bc, err := l.TakeOut(FirstMail); err != nil || bc != "A00002" {
		t.Fatalf("take out: %q %v", bc, err)
	}
	if a, err := l.Import("A00002"); err != nil || a != FirstMail {
		t.Fatalf("import: %#x %v", a, err)
	}
	if _, err := l.Import("A00001"); err == nil {
		t.Fatal("imported a tape already in the library")
	}
	if got := move(t, l, FirstMail, FirstSlot); got != "" {
		t.Fatalf("import move: %s", got)
	}
	// A restart keeps every cartridge where it was, the loaded one loaded.
	want := l.Contents()
	l.Close()
	l2, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if fmt.Sprint(l2.Contents()) != fmt.Sprint(want) {
		t.Fatalf("after restart %v, want %v", l2.Contents(), want)
	}
	if r := run(t, l2.Drive(1), make([]byte, 6), scsi.None, nil); r.Status != 0 {
		t.Fatalf("loaded drive after restart: %s", senseOf(r))
	}
	if _, err := Open(dir, Config{Slots: 5, Drives: 2, MailSlots: 1}); err == nil {
		t.Fatal("opened with a different layout")
	}
}

func TestReadElementStatusDriveSerials(t *testing.T) {
	l := newLib(t, t.TempDir(), Config{Slots: 2, Drives: 2}, "A00001")
	if got := move(t, l, FirstSlot, FirstDrive+1); got != "" {
		t.Fatal(got)
	}
	cdb := []byte{opReadElemStatus, 0x10 | elemDrive, 0, 0, 0, 10, 0x01, 0, 0x10, 0, 0, 0}
	buf := make([]byte, 4096)
	res := run(t, l.Changer(), cdb, scsi.FromDevice, buf)
	b := buf[:len(buf)-res.Residual]
	const dl = 12 + 36 + 4 + 32
	if binary.BigEndian.Uint16(b[8+2:]) != dl || len(b) != 8+8+2*dl || int(b[7]) != 8+2*dl {
		t.Fatalf("descriptor length %d, report %d bytes, header % x", binary.BigEndian.Uint16(b[10:]), len(b), b[:16])
	}
	for i, want := range []string{"HFVTLD000", "HFVTLD001"} {
		d := b[16+i*dl:][:dl]
		id := d[48:]
		if id[0] != 0x02 || int(id[3]) != 32 || strings.TrimSpace(string(id[4:])) != want {
			t.Errorf("drive %d identifier % x", i, id)
		}
		if tag := strings.Trim(string(d[12:44]), " \x00"); (i == 1) != (tag == "A00001") {
			t.Errorf("drive %d volume tag %q", i, tag)
		}
	}
}
