package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// reply mirrors sgprobe.Reply.
type reply struct {
	Device, Address, Command string
	Status                   byte
	Sense                    []byte
	Residual                 int
	Data                     []byte
}

// TestGuestSGIO boots the lab's probe against a fresh tgt library: it must
// find the changer and drives by SCSI address and get tgt's INQUIRY data
// and barcodes back through SG_IO.
func TestGuestSGIO(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	res, err := Run(ctx, RunConfig{
		Initramfs: Initramfs{Uinit: "github.com/holdfast/holdfast/tools/lab/sgprobe"},
		Dir:       t.TempDir(),
		Timeout:   90 * time.Second,
	})
	t.Logf("build initramfs %v, boot to guest %v, boot total %v",
		res.Build.Round(time.Millisecond), res.Boot.ToGuest.Round(time.Millisecond), res.Boot.Total.Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, res.Boot.Serial)
	}
	var devs []struct {
		Name, Path, TapeNode, Vendor, Model, Serial string
		Type                                        int
		Address                                     struct{ LUN uint64 }
	}
	if recs := res.Report.All("devices"); len(recs) != 1 || json.Unmarshal(recs[0], &devs) != nil {
		t.Fatalf("devices record: %s", recs)
	}
	byLUN := map[uint64]int{}
	for _, d := range devs {
		byLUN[d.Address.LUN] = d.Type
		if d.Type == 1 && !strings.HasPrefix(d.TapeNode, "/dev/nst") {
			t.Errorf("drive %s has no nst node: %q", d.Name, d.TapeNode)
		}
	}
	if byLUN[1] != 1 || byLUN[2] != 1 || byLUN[3] != 8 {
		t.Errorf("device types by LUN = %v, want 1,2 tape and 3 changer", byLUN)
	}
	replies := map[string][]reply{}
	for _, raw := range res.Report.All("reply") {
		var r reply
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.Status != 0 {
			t.Errorf("%s on %s: status %#x sense % x", r.Command, r.Address, r.Status, r.Sense)
		}
		replies[r.Command] = append(replies[r.Command], r)
	}
	inq := replies["inquiry"]
	if len(inq) != 2 {
		t.Fatalf("%d INQUIRY replies, want 2", len(inq))
	}
	for i, want := range []struct {
		pdt             byte
		vendor, product string
	}{{8, "STK", "L700"}, {1, "IBM", "ULT3580-TD6"}} {
		d := inq[i].Data
		if len(d) < 36 {
			t.Errorf("INQUIRY %d: %d bytes", i, len(d))
			continue
		}
		got := []string{string(bytes.TrimSpace(d[8:16])), string(bytes.TrimSpace(d[16:32]))}
		if d[0]&0x1f != want.pdt || got[0] != want.vendor || got[1] != want.product {
			t.Errorf("INQUIRY %s: type %d %q, want %d %s %s", inq[i].Address, d[0]&0x1f, got, want.pdt, want.vendor, want.product)
		}
	}
	// Every barcode tgt was given comes back in the storage elements'
	// volume tags; the drives are empty so carry none.
	slots := replies["read-element-status-2"]
	if len(slots) != 1 {
		t.Fatalf("READ ELEMENT STATUS of slots: %d replies", len(slots))
	}
	for _, bc := range res.Library.Config.Tapes {
		if !bytes.Contains(slots[0].Data, []byte(bc)) {
			t.Errorf("barcode %s missing from the slots' element status % x", bc, slots[0].Data)
		}
	}
	drives := replies["read-element-status-4"]
	if len(drives) != 1 || bytes.Contains(drives[0].Data, []byte("E0000")) {
		t.Errorf("drives' element status: %+v", drives)
	}

	// drivers/changer parsed the same library's inventory in the guest.
	var inv struct {
		Slots, Drives []struct {
			Address uint16
			Full    bool
			Barcode string
		}
	}
	if recs := res.Report.All("inventory"); len(recs) != 1 || json.Unmarshal(recs[0], &inv) != nil {
		t.Fatalf("inventory record: %s", recs)
	}
	inSlots := map[string]bool{}
	for _, s := range inv.Slots {
		if s.Full {
			inSlots[s.Barcode] = true
		}
	}
	for _, bc := range res.Library.Config.Tapes {
		if !inSlots[bc] {
			t.Errorf("the changer driver's inventory lacks %s in the slots: %+v", bc, inv.Slots)
		}
	}
	if len(inv.Drives) != 2 || inv.Drives[0].Full || inv.Drives[1].Full {
		t.Errorf("the changer driver's drives: %+v", inv.Drives)
	}
}
