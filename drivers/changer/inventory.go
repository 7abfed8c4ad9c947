package changer

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// ReadElements reads the status of every element of one type: one type
// per request (tgt malforms the all-types reply), paged from the first
// address on until the assignment's count is read. volTag asks for
// barcodes, dvcid for drive identifiers.
func (c *Changer) ReadElements(ctx context.Context, typ ElementType, volTag, dvcid bool) ([]Element, error) {
	r := c.Addresses.Of(typ)
	if typ < Transport || typ > DataTransfer {
		return nil, fmt.Errorf("read element status: %s: read one type at a time", typ)
	}
	var out []Element
	next := uint32(r.First)
	end := uint32(r.First) + uint32(r.Count)
	for next < end {
		st, err := c.readPage(ctx, typ, uint16(next), uint16(end-next), volTag, dvcid)
		if err != nil {
			return out, err
		}
		got := 0
		for _, e := range st.Elements {
			if e.Type != typ {
				return out, fmt.Errorf("read element status of %ss: the changer answered with a %s page", typ, e.Type)
			}
			if uint32(e.Address) < next || uint32(e.Address) >= end {
				return out, fmt.Errorf("read element status of %ss from %d: the changer reported element %d, outside %s", typ, next, e.Address, r)
			}
			if len(out) > 0 && e.Address <= out[len(out)-1].Address {
				return out, fmt.Errorf("read element status of %ss: element %d reported after %d", typ, e.Address, out[len(out)-1].Address)
			}
			out = append(out, e)
			got++
		}
		if got == 0 {
			if st.Truncated {
				return out, fmt.Errorf("read element status of %ss from %d: not one descriptor fits in %d bytes", typ, next, c.alloc)
			}
			// The changer has fewer elements than its assignment claims.
			break
		}
		next = uint32(out[len(out)-1].Address) + 1
	}
	if len(out) != int(r.Count) {
		slog.Warn("changer reports fewer elements than its address assignment", "type", typ.String(), "assigned", r.String(), "reported", len(out))
	}
	return out, nil
}

func (c *Changer) readPage(ctx context.Context, typ ElementType, first, count uint16, volTag, dvcid bool) (ElementStatus, error) {
	for {
		cmd := ReadElementStatus(typ, first, count, volTag, dvcid, c.alloc)
		res, err := c.exec(ctx, cmd)
		if err != nil && c.alloc > smallAlloc && allocRefused(err) {
			slog.Info("changer refused the element status allocation length, using 4096", "alloc", c.alloc, "err", err)
			c.alloc = smallAlloc
			continue
		}
		if err != nil {
			return ElementStatus{}, fmt.Errorf("read element status of %ss from %d: %w", typ, first, err)
		}
		st, err := ParseElementStatus(cmd.Data[:len(cmd.Data)-clampResidual(cmd, res)], len(cmd.Data), dvcid)
		if err != nil {
			return st, fmt.Errorf("read element status of %ss from %d: %w", typ, first, err)
		}
		return st, nil
	}
}

// allocRefused reports the answers changers give to an allocation length
// they cannot serve: older tgt's HARDWARE ERROR/internal target failure,
// or ILLEGAL REQUEST/invalid field in CDB pointing at the allocation
// length (bytes 7-9).
func allocRefused(err error) bool {
	if scsi.IsSense(err, scsi.KeyHardwareError, 0x44, 0x00) {
		return true
	}
	s, ok := scsi.SenseOf(err)
	if !ok || !s.Is(0x24, 0x00) {
		return false
	}
	inCDB, field, _, _, ok := s.FieldPointer()
	return ok && inCDB && field >= 7 && field <= 9
}

// Inventory is the state of every element of a library.
type Inventory struct {
	Transports []Element
	Slots      []Element
	MailSlots  []Element
	Drives     []Element
}

// All lists every element, transports first.
func (inv Inventory) All() []Element {
	var out []Element
	for _, l := range [][]Element{inv.Transports, inv.Slots, inv.MailSlots, inv.Drives} {
		out = append(out, l...)
	}
	return out
}

// Element finds an element by address.
func (inv Inventory) Element(addr uint16) (Element, bool) {
	for _, e := range inv.All() {
		if e.Address == addr {
			return e, true
		}
	}
	return Element{}, false
}

// FindBarcode finds the element holding the cartridge with this barcode.
func (inv Inventory) FindBarcode(barcode string) (Element, bool) {
	for _, e := range inv.All() {
		if e.Full && e.Barcode == barcode {
			return e, true
		}
	}
	return Element{}, false
}

// Inventory reads every element's status with barcodes, one type at a
// time, and the drives' identifiers in a separate request: some changers
// cannot return volume tags and identifiers together, and a changer that
// cannot return identifiers at all (ILLEGAL REQUEST) leaves them empty.
func (c *Changer) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	for _, p := range []struct {
		t   ElementType
		dst *[]Element
	}{{Transport, &inv.Transports}, {Storage, &inv.Slots}, {ImportExport, &inv.MailSlots}, {DataTransfer, &inv.Drives}} {
		if c.Addresses.Of(p.t).Count == 0 {
			continue
		}
		els, err := c.ReadElements(ctx, p.t, true, false)
		if err != nil {
			return inv, fmt.Errorf("inventory: %w", err)
		}
		*p.dst = els
	}
	ids, err := c.ReadElements(ctx, DataTransfer, false, true)
	if err != nil {
		if _, ok := scsi.SenseOf(err); !ok {
			return inv, fmt.Errorf("inventory: drive identifiers: %w", err)
		}
		slog.Info("changer gives no drive identifiers", "err", err)
		return inv, nil
	}
	for i := range inv.Drives {
		for _, id := range ids {
			if id.Address == inv.Drives[i].Address {
				inv.Drives[i].DeviceID = id.DeviceID
			}
		}
	}
	return inv, nil
}
