package vtl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// drive is one SSC-3 tape drive logical unit.
type drive struct {
	lib   *Library
	index int
	addr  uint16

	mu            sync.Mutex // serializes commands; taken before lib.mu
	tape          *tapeFile  // nil: no cartridge in the drive
	threaded      bool       // loaded (LOAD) rather than unloaded awaiting removal
	pos           int        // logical object number
	blockSize     int        // 0: variable block mode
	unitAttention bool       // a new cartridge arrived: report 6/28/00 once
	faults        Faults
	writeBudget   int64
	writeFailed   bool
}

func (d *drive) Close() error { return nil }

func (d *drive) serial() string { return fmt.Sprintf("%sD%03d", d.lib.cfg.Serial, d.index) }

// mount puts cartridge barcode into the drive, loaded, at BOT.
func (d *drive) mount(barcode string) error {
	t, err := openTapeFile(d.lib.tapePath(barcode))
	if err != nil {
		return fmt.Errorf("mount %s in drive %d: %w", barcode, d.index, err)
	}
	d.tape, d.threaded, d.pos, d.unitAttention = t, true, 0, true
	return nil
}

func (d *drive) unmount() {
	if d.tape != nil {
		_ = d.tape.f.Sync() // a sync failure on removal has no one to tell; reads would show it
		_ = d.tape.close()
	}
	d.tape, d.threaded, d.pos = nil, false, 0
}

// limits are the loaded tape's capacity and early-warning start in used
// bytes, with an injected early fill applied.
func (d *drive) limits() (capacity, ew int64) {
	capacity = int64(d.tape.hdr.Capacity)
	ew = capacity - int64(d.tape.hdr.EarlyWarning)
	if f := d.faults.FullAt; f > 0 && f < capacity {
		capacity, ew = f, f-f/50
	}
	return capacity, ew
}

func (d *drive) Do(ctx context.Context, cmd *scsi.Command) (scsi.Result, error) {
	if err := ctx.Err(); err != nil {
		return scsi.Result{}, err
	}
	if len(cmd.CDB) == 0 {
		return scsi.Result{}, errors.New("vtl drive: empty CDB")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults.Gone {
		return scsi.Result{}, fmt.Errorf("drive %d: %w", d.index, ErrGone)
	}
	cdb := cmd.CDB
	if len(cdb) < cdbLen(cdb[0]) {
		return invalidCDB(), nil
	}
	switch cdb[0] {
	case opInquiry:
		return inquiry(cmd, peripheralTape, "VTL DRIVE", d.serial()), nil
	case opRequestSense:
		if d.tape == nil || !d.threaded {
			return reply(cmd, mediumAbsent.bytes()), nil
		}
		return reply(cmd, sense{}.bytes()), nil
	}
	if d.unitAttention && d.tape != nil {
		d.unitAttention = false
		return checkCondition(mediumChanged, len(cmd.Data)), nil
	}
	switch cdb[0] {
	case opModeSense6, opModeSense10:
		return d.modeSense(cmd), nil
	case opModeSelect6:
		return d.modeSelect(cmd), nil
	case opLogSense:
		return d.logSense(cmd), nil
	case opLoadUnload:
		if d.tape == nil {
			return checkCondition(mediumAbsent, 0), nil
		}
		d.pos = 0
		d.threaded = cdb[4]&0x01 != 0
		if !d.threaded {
			if err := d.tape.f.Sync(); err != nil {
				return checkCondition(writeError, 0), nil
			}
		}
		return scsi.Result{}, nil
	}
	switch cdb[0] {
	case opTestUnitReady, opRewind, opRead6, opWrite6, opWriteFilemarks6, opSpace6,
		opLocate10, opLocate16, opReadPosition, opReadAttribute:
	default:
		return invalidOpcode(), nil
	}
	if d.tape == nil || !d.threaded {
		return checkCondition(mediumAbsent, len(cmd.Data)), nil
	}
	switch cdb[0] {
	case opTestUnitReady:
		return scsi.Result{}, nil
	case opRewind:
		d.pos = 0
		return scsi.Result{}, nil
	case opRead6:
		return d.read(cmd), nil
	case opWrite6:
		return d.write(cmd), nil
	case opWriteFilemarks6:
		return d.writeFilemarks(cmd), nil
	case opSpace6:
		return d.space(cmd), nil
	case opLocate10:
		return d.locate(int64(binary.BigEndian.Uint32(cdb[3:]))), nil
	case opLocate16:
		if (cdb[1]>>3)&0x07 != 0 {
			return invalidCDB(), nil // only logical object destinations
		}
		return d.locate(int64(binary.BigEndian.Uint64(cdb[4:]) & (1<<62 - 1))), nil
	case opReadPosition:
		return d.readPosition(cmd), nil
	case opReadAttribute:
		return d.readAttribute(cmd), nil
	}
	return invalidOpcode(), nil
}

// transfer decodes READ(6)/WRITE(6): the blocks asked for and each one's
// length (the whole transfer for a variable block).
func (d *drive) transfer(cdb []byte) (count, size int, ok bool) {
	fixed := cdb[1]&0x01 != 0
	n := int(cdb[2])<<16 | int(cdb[3])<<8 | int(cdb[4])
	switch {
	case fixed && d.blockSize == 0, !fixed && d.blockSize != 0:
		return 0, 0, false
	case fixed:
		return n, d.blockSize, true
	case n == 0:
		return 0, 0, true
	}
	return 1, n, true
}

func (d *drive) write(cmd *scsi.Command) scsi.Result {
	count, size, ok := d.transfer(cmd.CDB)
	if !ok || count*size > len(cmd.Data) || size > maxBlockLen {
		return invalidCDB()
	}
	if d.tape.hdr.Flags&flagWriteProt != 0 {
		return checkCondition(writeProtected, count*size)
	}
	fixed := d.blockSize != 0
	left := func(i int) int64 {
		if fixed {
			return int64(count - i)
		}
		return int64(size)
	}
	capacity, ew := d.limits()
	for i := range count {
		block := cmd.Data[i*size : (i+1)*size]
		if d.writeFailed || (d.faults.FailWriteAfter > 0 && int64(size) > d.writeBudget) {
			d.writeFailed = true
			return checkCondition(sense{key: writeError.key, asc: writeError.asc, info: left(i), infoValid: true}, (count-i)*size)
		}
		if d.tape.used()+entryHeaderSize+int64(size) > capacity {
			return checkCondition(sense{key: keyVolumeOverflow, flags: senseEOM, ascq: 0x02, info: left(i), infoValid: true}, (count-i)*size)
		}
		if err := d.tape.appendAt(d.pos, kindBlock, block); err != nil {
			return checkCondition(sense{key: writeError.key, asc: writeError.asc, info: left(i), infoValid: true}, (count-i)*size)
		}
		d.writeBudget -= int64(size)
		d.pos++
	}
	if d.tape.used() > ew {
		return checkCondition(sense{key: keyNoSense, flags: senseEOM, ascq: 0x02, infoValid: true}, 0)
	}
	return scsi.Result{}
}

func (d *drive) writeFilemarks(cmd *scsi.Command) scsi.Result {
	count := int(cmd.CDB[2])<<16 | int(cmd.CDB[3])<<8 | int(cmd.CDB[4])
	if count > 0 && d.tape.hdr.Flags&flagWriteProt != 0 {
		return checkCondition(writeProtected, 0)
	}
	capacity, ew := d.limits()
	for i := range count {
		if d.writeFailed {
			return checkCondition(sense{key: writeError.key, asc: writeError.asc, info: int64(count - i), infoValid: true}, 0)
		}
		if d.tape.used()+entryHeaderSize > capacity {
			return checkCondition(sense{key: keyVolumeOverflow, flags: senseEOM, ascq: 0x02, info: int64(count - i), infoValid: true}, 0)
		}
		if err := d.tape.appendAt(d.pos, kindFilemark, nil); err != nil {
			return checkCondition(writeError, 0)
		}
		d.pos++
	}
	// A drive empties its buffer to the medium at a filemark.
	if err := d.tape.f.Sync(); err != nil {
		return checkCondition(writeError, 0)
	}
	if count > 0 && d.tape.used() > ew {
		return checkCondition(sense{key: keyNoSense, flags: senseEOM, ascq: 0x02, infoValid: true}, 0)
	}
	return scsi.Result{}
}

func (d *drive) read(cmd *scsi.Command) scsi.Result {
	count, size, ok := d.transfer(cmd.CDB)
	sili := cmd.CDB[1]&0x02 != 0
	if !ok || count*size > len(cmd.Data) || (sili && d.blockSize != 0) {
		return invalidCDB()
	}
	fixed := d.blockSize != 0
	t := d.tape
	for i := range count {
		left := int64(size)
		if fixed {
			left = int64(count - i)
		}
		residual := (count - i) * size
		if d.pos >= len(t.entries) {
			return checkCondition(sense{key: endOfData.key, ascq: endOfData.ascq, info: left, infoValid: true}, residual)
		}
		e := t.entries[d.pos]
		if e.kind == kindFilemark {
			d.pos++
			return checkCondition(sense{key: keyNoSense, flags: senseFM, ascq: 0x01, info: left, infoValid: true}, residual)
		}
		buf := cmd.Data[i*size : (i+1)*size]
		if _, err := t.readBlock(d.pos, buf); err != nil {
			return checkCondition(sense{key: readError.key, asc: readError.asc, info: left, infoValid: true}, residual)
		}
		d.pos++
		switch l := int(e.length); {
		case l == size:
		case fixed:
			return checkCondition(sense{key: keyNoSense, flags: senseILI, info: left, infoValid: true}, residual-size)
		case l < size && sili:
			return scsi.Result{Residual: size - l}
		default:
			// Shorter: the residual is positive; longer: negative, and
			// the rest of the block is lost.
			return checkCondition(sense{key: keyNoSense, flags: senseILI, info: int64(size - l), infoValid: true}, max(size-l, 0))
		}
	}
	return scsi.Result{}
}

// space moves over blocks, filemarks or to end of data, using the
// filemark index so no step scans the tape.
func (d *drive) space(cmd *scsi.Command) scsi.Result {
	code := cmd.CDB[1] & 0x0F
	raw := int32(uint32(cmd.CDB[2])<<24|uint32(cmd.CDB[3])<<16|uint32(cmd.CDB[4])<<8) >> 8
	n := int(raw)
	t := d.tape
	end := len(t.entries)
	bot := sense{key: keyNoSense, flags: senseEOM, ascq: 0x04, infoValid: true}
	eod := sense{key: endOfData.key, ascq: endOfData.ascq, infoValid: true}
	fm := sense{key: keyNoSense, flags: senseFM, ascq: 0x01, infoValid: true}
	i := sort.SearchInts(t.fms, d.pos) // filemarks before pos: t.fms[:i]
	switch {
	case n == 0 && code != 3:
		return scsi.Result{}
	case code == 0 && n > 0:
		next := end
		if i < len(t.fms) {
			next = t.fms[i]
		}
		switch {
		case d.pos+n <= next:
			d.pos += n
		case next < end:
			fm.info = int64(n - (next - d.pos))
			d.pos = next + 1
			return checkCondition(fm, 0)
		default:
			eod.info = int64(n - (end - d.pos))
			d.pos = end
			return checkCondition(eod, 0)
		}
	case code == 0:
		c := -n
		prev := -1
		if i > 0 {
			prev = t.fms[i-1]
		}
		switch {
		case d.pos-c > prev:
			d.pos -= c
		case prev >= 0:
			fm.info = int64(c - (d.pos - prev - 1))
			d.pos = prev
			return checkCondition(fm, 0)
		default:
			bot.info = int64(c - d.pos)
			d.pos = 0
			return checkCondition(bot, 0)
		}
	case code == 1 && n > 0:
		if i+n-1 < len(t.fms) {
			d.pos = t.fms[i+n-1] + 1
		} else {
			eod.info = int64(n - (len(t.fms) - i))
			d.pos = end
			return checkCondition(eod, 0)
		}
	case code == 1:
		c := -n
		if i-c >= 0 {
			d.pos = t.fms[i-c]
		} else {
			bot.info = int64(c - i)
			d.pos = 0
			return checkCondition(bot, 0)
		}
	case code == 3:
		d.pos = end
	default:
		return invalidCDB()
	}
	return scsi.Result{}
}

func (d *drive) locate(addr int64) scsi.Result {
	if end := int64(len(d.tape.entries)); addr > end {
		d.pos = int(end)
		return checkCondition(endOfData, 0)
	}
	d.pos = int(addr)
	return scsi.Result{}
}

func (d *drive) readPosition(cmd *scsi.Command) scsi.Result {
	t := d.tape
	off := t.end
	if d.pos < len(t.entries) {
		off = t.entries[d.pos].off
	}
	_, ew := d.limits()
	var flags byte
	if d.pos == 0 {
		flags |= 0x80 // BOP
	}
	if off-tapeHeaderSize > ew {
		flags |= 0x01 // BPEW
	}
	switch cmd.CDB[1] & 0x1F {
	case 0x00, 0x01: // short form (block or vendor-specific addresses)
		b := make([]byte, 20)
		b[0] = flags
		binary.BigEndian.PutUint32(b[4:], uint32(d.pos))
		binary.BigEndian.PutUint32(b[8:], uint32(d.pos))
		return reply(cmd, b)
	case 0x06: // long form
		b := make([]byte, 32)
		b[0] = flags
		binary.BigEndian.PutUint64(b[8:], uint64(d.pos))
		binary.BigEndian.PutUint64(b[16:], uint64(t.filemarksBefore(d.pos)))
		return reply(cmd, b)
	}
	return invalidCDB()
}

func (d *drive) modeSense(cmd *scsi.Command) scsi.Result {
	page := cmd.CDB[2] & 0x3F
	if page != 0x00 && page != 0x3F {
		return invalidCDB()
	}
	dev := byte(0x10) // buffered mode 1
	if d.tape != nil && d.tape.hdr.Flags&flagWriteProt != 0 {
		dev |= 0x80
	}
	var desc []byte
	if cmd.CDB[1]&0x08 == 0 { // DBD clear
		desc = make([]byte, 8)
		put24(desc[5:], d.blockSize)
	}
	return reply(cmd, modeData(cmd.CDB[0], dev, desc, nil))
}

// modeSelect takes the block length from a MODE SELECT(6) block
// descriptor: 0 selects variable block mode.
func (d *drive) modeSelect(cmd *scsi.Command) scsi.Result {
	n := int(cmd.CDB[4])
	if n > len(cmd.Data) {
		return invalidCDB()
	}
	p := cmd.Data[:n]
	if n == 0 {
		return scsi.Result{}
	}
	if n < 4 || int(p[3]) > n-4 || (p[3] != 0 && p[3] != 8) {
		return invalidParam()
	}
	if p[3] == 8 {
		bs := int(p[9])<<16 | int(p[10])<<8 | int(p[11])
		if bs > maxBlockLen {
			return invalidParam()
		}
		d.blockSize = bs
	}
	return scsi.Result{}
}

// TapeAlert flags (SSC-3 annex): hard error, write protect, clean now.
const (
	alertHardError    = 0x03
	alertWriteProtect = 0x09
	alertCleanNow     = 0x14
	tapeAlertPage     = 0x2E
)

func (d *drive) logSense(cmd *scsi.Command) scsi.Result {
	switch cmd.CDB[2] & 0x3F {
	case 0x00:
		return reply(cmd, []byte{0x00, 0, 0, 2, 0x00, tapeAlertPage})
	case tapeAlertPage:
		b := make([]byte, 4+64*5)
		b[0] = tapeAlertPage
		binary.BigEndian.PutUint16(b[2:], 64*5)
		for f := 1; f <= 64; f++ {
			p := b[4+(f-1)*5:]
			binary.BigEndian.PutUint16(p, uint16(f))
			p[2] = 0x03 // TSD, ETC clear; format binary
			p[3] = 1
			switch {
			case f == alertCleanNow && d.faults.CleaningNeeded,
				f == alertHardError && d.writeFailed,
				f == alertWriteProtect && d.tape != nil && d.tape.hdr.Flags&flagWriteProt != 0:
				p[4] = 1
			}
		}
		return reply(cmd, b)
	}
	return invalidCDB()
}

// Medium auxiliary memory attributes the virtual cartridge has.
const (
	attrMediumSerial = 0x0401
	attrBarcode      = 0x0806
)

func (d *drive) readAttribute(cmd *scsi.Command) scsi.Result {
	cdb := cmd.CDB
	if cdb[1]&0x1F != 0x00 {
		return invalidCDB() // only ATTRIBUTE VALUES
	}
	first := binary.BigEndian.Uint16(cdb[8:])
	var attrs []byte
	for _, id := range []uint16{attrMediumSerial, attrBarcode} {
		if id < first {
			continue
		}
		a := make([]byte, 5+32)
		binary.BigEndian.PutUint16(a, id)
		a[2] = 0x80 | 0x01 // read only, ASCII
		binary.BigEndian.PutUint16(a[3:], 32)
		copy(a[5:], fmt.Sprintf("%-32s", d.tape.hdr.Barcode))
		attrs = append(attrs, a...)
	}
	b := make([]byte, 4, 4+len(attrs))
	binary.BigEndian.PutUint32(b, uint32(len(attrs)))
	return reply(cmd, append(b, attrs...))
}
