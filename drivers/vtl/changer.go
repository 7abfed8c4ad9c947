package vtl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// SCSI operation codes the virtual library answers.
const (
	opTestUnitReady    = 0x00
	opRewind           = 0x01
	opRequestSense     = 0x03
	opInitElemStatus   = 0x07
	opRead6            = 0x08
	opWrite6           = 0x0A
	opWriteFilemarks6  = 0x10
	opSpace6           = 0x11
	opInquiry          = 0x12
	opModeSelect6      = 0x15
	opModeSense6       = 0x1A
	opLoadUnload       = 0x1B
	opLocate10         = 0x2B
	opReadPosition     = 0x34
	opInitElemRange    = 0x37
	opLogSense         = 0x4D
	opModeSense10      = 0x5A
	opReadAttribute    = 0x8C
	opLocate16         = 0x92
	opMoveMedium       = 0xA5
	opReadElemStatus   = 0xB8
	peripheralTape     = 0x01
	peripheralChanger  = 0x08
	elementAddressPage = 0x1D
)

// ErrGone is returned by Do of a drive injected with Faults.Gone.
var ErrGone = errors.New("vtl: device is gone")

// changer is the library's SMC-3 logical unit.
type changer struct {
	lib *Library
	mu  sync.Mutex // serializes commands
	src map[uint16]uint16
}

func (c *changer) Close() error { return nil }

func (c *changer) Do(ctx context.Context, cmd *scsi.Command) (scsi.Result, error) {
	if err := ctx.Err(); err != nil {
		return scsi.Result{}, err
	}
	if len(cmd.CDB) == 0 {
		return scsi.Result{}, errors.New("vtl changer: empty CDB")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cdb := cmd.CDB
	if len(cdb) < cdbLen(cdb[0]) {
		return invalidCDB(), nil
	}
	switch cdb[0] {
	case opTestUnitReady, opInitElemStatus, opInitElemRange:
		return scsi.Result{}, nil
	case opRequestSense:
		return reply(cmd, sense{}.bytes()), nil
	case opInquiry:
		return inquiry(cmd, peripheralChanger, "VTL CHANGER", c.lib.cfg.Serial+"C"), nil
	case opModeSense6, opModeSense10:
		return c.modeSense(cmd), nil
	case opReadElemStatus:
		return c.readElementStatus(cmd), nil
	case opMoveMedium:
		return c.moveMedium(cmd)
	}
	return invalidOpcode(), nil
}

// cdbLen is the CDB length of an operation code's group.
func cdbLen(op byte) int {
	switch op >> 5 {
	case 0:
		return 6
	case 1, 2:
		return 10
	case 4:
		return 16
	case 5:
		return 12
	}
	return 6
}

// modeSense answers the element address assignment page (0x1D), alone
// or as all pages (0x3F).
func (c *changer) modeSense(cmd *scsi.Command) scsi.Result {
	page := cmd.CDB[2] & 0x3F
	if page != elementAddressPage && page != 0x3F {
		return invalidCDB()
	}
	cfg := c.lib.cfg
	p := make([]byte, 20)
	p[0], p[1] = elementAddressPage, 18
	binary.BigEndian.PutUint16(p[2:], TransportAddr)
	binary.BigEndian.PutUint16(p[4:], 1)
	binary.BigEndian.PutUint16(p[6:], FirstSlot)
	binary.BigEndian.PutUint16(p[8:], uint16(cfg.Slots))
	binary.BigEndian.PutUint16(p[10:], FirstMail)
	binary.BigEndian.PutUint16(p[12:], uint16(cfg.MailSlots))
	binary.BigEndian.PutUint16(p[14:], FirstDrive)
	binary.BigEndian.PutUint16(p[16:], uint16(cfg.Drives))
	return reply(cmd, modeData(cmd.CDB[0], 0, nil, p))
}

// modeData wraps a block descriptor and pages in a MODE SENSE(6) or (10)
// header.
func modeData(op byte, devSpecific byte, blockDesc, pages []byte) []byte {
	var b []byte
	if op == opModeSense6 {
		b = []byte{0, 0, devSpecific, byte(len(blockDesc))}
		b = append(append(b, blockDesc...), pages...)
		b[0] = byte(len(b) - 1)
		return b
	}
	b = make([]byte, 8)
	b[3] = devSpecific
	binary.BigEndian.PutUint16(b[6:], uint16(len(blockDesc)))
	b = append(append(b, blockDesc...), pages...)
	binary.BigEndian.PutUint16(b[0:], uint16(len(b)-2))
	return b
}

// readElementStatus answers READ ELEMENT STATUS for one element type or
// all, from a starting address, with primary volume tags when asked.
// Byte counts always describe the whole report; the transfer is cut at
// the allocation length.
func (c *changer) readElementStatus(cmd *scsi.Command) scsi.Result {
	cdb := cmd.CDB
	voltag := cdb[1]&0x10 != 0
	typ := int(cdb[1] & 0x0F)
	start := binary.BigEndian.Uint16(cdb[2:])
	count := int(binary.BigEndian.Uint16(cdb[4:]))
	if typ > elemDrive {
		return invalidCDB()
	}
	lib := c.lib
	lib.mu.Lock()
	defer lib.mu.Unlock()
	// DVCID: drive descriptors also carry the drive's serial number
	// (an ASCII identification descriptor padded to 32 bytes), so a
	// driver can tell which drive LUN sits at which element address.
	dvcid := cdb[6]&0x01 != 0
	order := []int{elemTransport, elemDrive, elemMail, elemSlot} // ascending addresses
	var body []byte
	var first uint16
	reported := 0
	for _, k := range order {
		if typ != 0 && typ != k {
			continue
		}
		withID := dvcid && k == elemDrive
		descLen := 12
		if voltag {
			descLen += 36
		}
		if withID {
			descLen += 4 + 32
		}
		var descs []byte
		n := 0
		for _, a := range lib.cfg.addrs(k) {
			if a < start || reported+n >= count {
				continue
			}
			if reported+n == 0 {
				first = a
			}
			d := c.descriptor(k, a, voltag)
			if withID {
				id := []byte{0x02, 0x00, 0x00, 32} // ASCII, vendor specific
				id = append(id, fmt.Sprintf("%-32s", lib.drives[a-FirstDrive].serial())...)
				d = append(d, id...)
			}
			descs = append(descs, d...)
			n++
		}
		if n == 0 {
			continue
		}
		reported += n
		h := make([]byte, 8)
		h[0] = byte(k)
		if voltag {
			h[1] = 0x80
		}
		binary.BigEndian.PutUint16(h[2:], uint16(descLen))
		put24(h[5:], len(descs))
		body = append(append(body, h...), descs...)
	}
	hdr := make([]byte, 8)
	binary.BigEndian.PutUint16(hdr[0:], first)
	binary.BigEndian.PutUint16(hdr[2:], uint16(reported))
	put24(hdr[5:], len(body))
	alloc := int(cdb[7])<<16 | int(cdb[8])<<8 | int(cdb[9])
	out := append(hdr, body...)
	if len(out) > alloc {
		out = out[:alloc]
	}
	return reply(cmd, out)
}

func put24(b []byte, v int) { b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v) }

func (c *changer) descriptor(kind int, a uint16, voltag bool) []byte {
	d := make([]byte, 12, 48)
	binary.BigEndian.PutUint16(d, a)
	bc, full := c.lib.where[a]
	if full {
		d[2] |= 0x01
	}
	switch kind {
	case elemMail:
		d[2] |= 0x08 | 0x10 | 0x20 // access, export and import enabled
		if full && c.src[a] == 0 {
			d[2] |= 0x02 // placed by the operator
		}
	case elemSlot, elemDrive:
		d[2] |= 0x08
	}
	if s, ok := c.src[a]; ok && full && s != 0 {
		d[9] = 0x80
		binary.BigEndian.PutUint16(d[10:], s)
	}
	if voltag {
		tag := make([]byte, 36)
		if full {
			copy(tag, fmt.Sprintf("%-32s", bc))
		}
		d = append(d, tag...)
	}
	return d
}

// moveMedium moves a cartridge between elements, mounting it in or
// unmounting it from a drive.
func (c *changer) moveMedium(cmd *scsi.Command) (scsi.Result, error) {
	cdb := cmd.CDB
	transport := binary.BigEndian.Uint16(cdb[2:])
	from := binary.BigEndian.Uint16(cdb[4:])
	to := binary.BigEndian.Uint16(cdb[6:])
	lib := c.lib
	cfg := lib.cfg
	invalidElement := illegal(0x21, 0x01)
	if transport != TransportAddr {
		return invalidElement, nil
	}
	fk, tk := cfg.kind(from), cfg.kind(to)
	if fk == 0 || fk == elemTransport || tk == 0 || tk == elemTransport {
		return invalidElement, nil
	}
	// Lock order: drive before library.
	var fd, td *drive
	if fk == elemDrive {
		fd = lib.drives[from-FirstDrive]
		fd.mu.Lock()
		defer fd.mu.Unlock()
	}
	if tk == elemDrive && to != from {
		td = lib.drives[to-FirstDrive]
		td.mu.Lock()
		defer td.mu.Unlock()
	}
	lib.mu.Lock()
	defer lib.mu.Unlock()
	bc, ok := lib.where[from]
	if !ok {
		return illegal(0x3B, 0x0E), nil
	}
	if _, full := lib.where[to]; full {
		return illegal(0x3B, 0x0D), nil
	}
	if td != nil {
		if err := td.mount(bc); err != nil {
			return checkCondition(sense{key: keyHardwareError, asc: 0x3B, ascq: 0x00}, 0), nil
		}
	}
	if fd != nil {
		fd.unmount()
	}
	delete(lib.where, from)
	lib.where[to] = bc
	if err := lib.saveLocked(); err != nil {
		return scsi.Result{}, fmt.Errorf("vtl move %#x to %#x: %w", from, to, err)
	}
	if c.src == nil {
		c.src = map[uint16]uint16{}
	}
	c.src[to] = from
	delete(c.src, from)
	return scsi.Result{}, nil
}

// inquiry answers standard INQUIRY and the VPD pages 0x00 and 0x80.
func inquiry(cmd *scsi.Command, peripheral byte, product, serial string) scsi.Result {
	cdb := cmd.CDB
	if cdb[1]&0x01 != 0 {
		switch cdb[2] {
		case 0x00:
			return reply(cmd, []byte{peripheral, 0x00, 0, 2, 0x00, 0x80})
		case 0x80:
			b := append([]byte{peripheral, 0x80, 0, byte(len(serial))}, serial...)
			return reply(cmd, b)
		}
		return invalidCDB()
	}
	if cdb[2] != 0 {
		return invalidCDB()
	}
	b := make([]byte, 36)
	b[0] = peripheral
	b[1] = 0x80 // removable
	b[2] = 0x05 // SPC-3
	b[3] = 0x02
	b[4] = 31
	copy(b[8:], fmt.Sprintf("%-8s%-16s%-4s", "HOLDFAST", product, "0001"))
	return reply(cmd, b)
}
