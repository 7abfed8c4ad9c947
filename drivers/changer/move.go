package changer

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// MoveMedium builds MOVE MEDIUM; transport 0 lets the changer choose.
func MoveMedium(transport, src, dst uint16) *scsi.Command {
	cdb := make([]byte, 12)
	cdb[0] = scsi.OpMoveMedium
	binary.BigEndian.PutUint16(cdb[2:4], transport)
	binary.BigEndian.PutUint16(cdb[4:6], src)
	binary.BigEndian.PutUint16(cdb[6:8], dst)
	// A move can wait for a drive to eject, a robot to finish another
	// move or a barcode scan.
	return &scsi.Command{CDB: cdb, Dir: scsi.None, Timeout: 15 * time.Minute}
}

// move moves a cartridge between two elements, after checking that both
// exist and are of the expected types (AllTypes: any).
func (c *Changer) move(ctx context.Context, what string, src uint16, srcType ElementType, dst uint16, dstType ElementType) error {
	if err := c.check(src, srcType); err != nil {
		return fmt.Errorf("%s %d -> %d: source: %w", what, src, dst, err)
	}
	if err := c.check(dst, dstType); err != nil {
		return fmt.Errorf("%s %d -> %d: destination: %w", what, src, dst, err)
	}
	var transport uint16
	if c.Addresses.Transport.Count > 0 {
		transport = c.Addresses.Transport.First
	}
	if _, err := c.exec(ctx, MoveMedium(transport, src, dst)); err != nil {
		if s, ok := scsi.SenseOf(err); ok && s.Is(0x21, 0x01) {
			return fmt.Errorf("%s %d -> %d: the changer refused an element address (%s): %w", what, src, dst, c.Addresses, err)
		}
		return fmt.Errorf("%s %d -> %d: %w", what, src, dst, err)
	}
	return nil
}

func (c *Changer) check(addr uint16, want ElementType) error {
	t, ok := c.Addresses.TypeOf(addr)
	if !ok {
		return fmt.Errorf("element %d does not exist in this changer (%s)", addr, c.Addresses)
	}
	if want != AllTypes && t != want {
		return fmt.Errorf("element %d is a %s, not a %s (%s)", addr, t, want, c.Addresses)
	}
	return nil
}

// Move moves a cartridge from any element to any other.
func (c *Changer) Move(ctx context.Context, src, dst uint16) error {
	return c.move(ctx, "move", src, AllTypes, dst, AllTypes)
}

// Load moves the cartridge in a slot into a drive.
func (c *Changer) Load(ctx context.Context, slot, drive uint16) error {
	return c.move(ctx, "load", slot, Storage, drive, DataTransfer)
}

// Unload moves the cartridge in a drive back to a slot. The drive must
// have ejected it first (SSC LOAD UNLOAD with load=0), as on real
// libraries the picker cannot pull a threaded tape.
func (c *Changer) Unload(ctx context.Context, drive, slot uint16) error {
	return c.move(ctx, "unload", drive, DataTransfer, slot, Storage)
}

// Import moves a cartridge the operator put in a mail slot into a slot.
func (c *Changer) Import(ctx context.Context, mail, slot uint16) error {
	return c.move(ctx, "import", mail, ImportExport, slot, Storage)
}

// Export moves a cartridge from a slot to a mail slot for the operator
// to take.
func (c *Changer) Export(ctx context.Context, slot, mail uint16) error {
	return c.move(ctx, "export", slot, Storage, mail, ImportExport)
}
