// Package tape is the SSC-3 tape drive driver: it loads, positions,
// writes and reads a tape through any scsi.Device (SG_IO, USB or the
// virtual library), turning sense data into the conditions a backup
// must act on — early warning, end of medium, filemark, end of data,
// write protection — and bounding every command with a timeout so an
// empty or hung drive never blocks a job.
package tape

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// DefaultBlockSize is the block length backups write: 256 KiB.
const DefaultBlockSize = 256 << 10

// Conditions a caller acts on; test with errors.Is.
var (
	// ErrEarlyWarning: the data was written, and the tape is near its end:
	// finish the session on the next tape.
	ErrEarlyWarning = errors.New("tape: early warning, end of medium near")
	// ErrEndOfMedium: the tape is full; the data reported unwritten was not.
	ErrEndOfMedium = errors.New("tape: end of medium")
	// ErrFilemark: a read or space met a filemark (now past it).
	ErrFilemark = errors.New("tape: filemark")
	// ErrEndOfData: nothing was recorded past this point.
	ErrEndOfData = errors.New("tape: end of data")
	// ErrBeginningOfTape: a backward move reached the beginning.
	ErrBeginningOfTape = errors.New("tape: beginning of tape")
	// ErrWriteProtected: the cartridge's write-protect tab is set.
	ErrWriteProtected = errors.New("tape: write protected")
	// ErrNoMedium: the drive is empty (or its tape is unloaded).
	ErrNoMedium = errors.New("tape: no medium in drive")
	// ErrNotReady: the drive did not become ready in the time allowed.
	ErrNotReady = errors.New("tape: drive not ready")
	// ErrNotTape: the device is not a sequential-access device.
	ErrNotTape = errors.New("tape: not a tape drive")
	// ErrBlockTooLarge: the block read was larger than the buffer; its
	// tail is lost.
	ErrBlockTooLarge = errors.New("tape: block larger than the read buffer")
	// ErrMedium: a medium or hardware error (the drive failed the command).
	ErrMedium = errors.New("tape: medium or hardware error")
)

// CheckCondition is a command the drive answered with CHECK CONDITION.
// It unwraps to one of the conditions above when the sense says which.
type CheckCondition struct {
	Op    string
	Sense Sense
	cause error
}

func (e *CheckCondition) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %v (%s)", e.Op, e.cause, e.Sense)
	}
	return fmt.Sprintf("%s: check condition, %s", e.Op, e.Sense)
}

func (e *CheckCondition) Unwrap() error { return e.cause }

// classify names the condition a sense reports, nil when none applies.
func classify(s Sense) error {
	switch {
	case s.Key == 0x7:
		return ErrWriteProtected
	case s.Key == 0x2 && s.ASC == 0x3A:
		return ErrNoMedium
	case s.Key == 0x2:
		return ErrNotReady
	case s.Key == 0x8 && s.ASC == 0 && s.ASCQ == 0x05, s.Key == 0x8:
		return ErrEndOfData
	case s.Key == 0xD:
		return ErrEndOfMedium
	case s.Key == 0x3, s.Key == 0x4:
		return ErrMedium
	case s.Filemark:
		return ErrFilemark
	case s.EOM && s.ASC == 0 && s.ASCQ == 0x04:
		return ErrBeginningOfTape
	case s.EOM && s.ASC == 0 && s.ASCQ == 0x02 && s.Key == 0:
		return ErrEarlyWarning
	case s.EOM && s.Key == 0:
		return ErrEndOfMedium
	}
	return nil
}

// Timeouts bound each class of command. Zero fields take defaults.
type Timeouts struct {
	Short     time.Duration // INQUIRY, TEST UNIT READY, MODE, LOG, READ POSITION: 30 s
	ReadWrite time.Duration // READ, WRITE, WRITE FILEMARKS: 15 min
	Long      time.Duration // LOAD, UNLOAD, REWIND, SPACE, LOCATE: 30 min
}

func (t *Timeouts) fill() {
	if t.Short == 0 {
		t.Short = 30 * time.Second
	}
	if t.ReadWrite == 0 {
		t.ReadWrite = 15 * time.Minute
	}
	if t.Long == 0 {
		t.Long = 30 * time.Minute
	}
}

// Drive is an opened tape drive. Its methods are for one goroutine at a
// time, as the drive does one thing at a time.
type Drive struct {
	dev       scsi.Device
	t         Timeouts
	inq       Inquiry
	serial    string
	blockSize int // as last set or read; 0 variable
}

// Open checks that dev is a tape drive (INQUIRY peripheral type 1) and
// reads its serial number. It does not need a tape in the drive.
func Open(ctx context.Context, dev scsi.Device, t Timeouts) (*Drive, error) {
	t.fill()
	d := &Drive{dev: dev, t: t}
	buf := make([]byte, 96)
	if _, err := d.do(ctx, "inquiry", []byte{0x12, 0, 0, 0, byte(len(buf)), 0}, scsi.FromDevice, buf, t.Short); err != nil {
		return nil, err
	}
	inq, err := parseInquiry(buf)
	if err != nil {
		return nil, fmt.Errorf("open tape drive: %w", err)
	}
	if inq.PeripheralType != 0x01 {
		return nil, fmt.Errorf("open tape drive %s %s: peripheral type %d: %w", inq.Vendor, inq.Product, inq.PeripheralType, ErrNotTape)
	}
	d.inq = inq
	vpd := make([]byte, 255)
	n, err := d.do(ctx, "inquiry serial", []byte{0x12, 0x01, 0x80, 0, byte(len(vpd)), 0}, scsi.FromDevice, vpd, t.Short)
	var cc *CheckCondition
	switch {
	case errors.As(err, &cc) && cc.Sense.Key == 0x5:
		// No serial page: some drives have none; the serial stays empty.
	case err != nil:
		return nil, err
	default:
		if d.serial, err = parseSerialVPD(vpd[:n]); err != nil {
			return nil, fmt.Errorf("open tape drive: %w", err)
		}
	}
	return d, nil
}

// Inquiry is what the drive said of itself.
func (d *Drive) Inquiry() Inquiry { return d.inq }

// Serial is the drive's unit serial number ("" if it has none).
func (d *Drive) Serial() string { return d.serial }

// do runs one command with its timeout on both sides and returns how
// many bytes moved; a CHECK CONDITION comes back as *CheckCondition.
func (d *Drive) do(ctx context.Context, op string, cdb []byte, dir scsi.Direction, data []byte, timeout time.Duration) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := d.dev.Do(cctx, &scsi.Command{CDB: cdb, Dir: dir, Data: data, Timeout: timeout})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	n := len(data) - res.Residual
	if n < 0 || n > len(data) {
		n = 0
	}
	switch res.Status {
	case scsi.StatusGood, scsi.StatusConditionMet:
		return n, nil
	case scsi.StatusCheckCondition:
		s, perr := parseSense(res.Sense)
		if perr != nil {
			return n, fmt.Errorf("%s: check condition with unreadable sense % x: %w", op, res.Sense, perr)
		}
		return n, &CheckCondition{Op: op, Sense: s, cause: classify(s)}
	}
	return n, fmt.Errorf("%s: status %#x", op, res.Status)
}

// WaitReady polls TEST UNIT READY until the drive is ready, for at most
// wait. An empty drive answers at once with ErrNoMedium; a medium change
// (unit attention) is acknowledged and polled again.
func (d *Drive) WaitReady(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		_, err := d.do(ctx, "test unit ready", make([]byte, 6), scsi.None, nil, d.t.Short)
		var cc *CheckCondition
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrNoMedium):
			return err
		case errors.As(err, &cc) && cc.Sense.Key == 0x6:
			// Unit attention (medium changed, reset): reported once each;
			// poll again at once, within the deadline.
			if !time.Now().Before(deadline) {
				return fmt.Errorf("wait ready after %v: %w", wait, err)
			}
			continue
		case !errors.Is(err, ErrNotReady):
			return err
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("wait ready after %v: %w", wait, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait ready: %w", ctx.Err())
		case <-time.After(min(time.Second, time.Until(deadline)+time.Millisecond)):
		}
	}
}

// Load threads the tape in the drive and positions it at BOT.
func (d *Drive) Load(ctx context.Context) error {
	_, err := d.do(ctx, "load", []byte{0x1B, 0, 0, 0, 0x01, 0}, scsi.None, nil, d.t.Long)
	return err
}

// Unload rewinds and unthreads the tape so the changer can take it.
func (d *Drive) Unload(ctx context.Context) error {
	_, err := d.do(ctx, "unload", []byte{0x1B, 0, 0, 0, 0x00, 0}, scsi.None, nil, d.t.Long)
	return err
}

// Rewind positions the tape at BOT.
func (d *Drive) Rewind(ctx context.Context) error {
	_, err := d.do(ctx, "rewind", []byte{0x01, 0, 0, 0, 0, 0}, scsi.None, nil, d.t.Long)
	return err
}

// SetBlockSize selects fixed blocks of size bytes, or variable blocks
// when size is 0, with MODE SELECT(6).
func (d *Drive) SetBlockSize(ctx context.Context, size int) error {
	if size < 0 || size > 0xFFFFFF {
		return fmt.Errorf("set block size %d: out of range", size)
	}
	p := make([]byte, 12)
	p[2] = 0x10 // buffered mode 1
	p[3] = 8
	p[9], p[10], p[11] = byte(size>>16), byte(size>>8), byte(size)
	if _, err := d.do(ctx, "mode select", []byte{0x15, 0x10, 0, 0, byte(len(p)), 0}, scsi.ToDevice, p, d.t.Short); err != nil {
		return err
	}
	d.blockSize = size
	return nil
}

// Mode is the block size (0: variable) and write protection MODE SENSE
// reports.
func (d *Drive) Mode(ctx context.Context) (blockSize int, writeProtected bool, err error) {
	buf := make([]byte, 12)
	n, err := d.do(ctx, "mode sense", []byte{0x1A, 0, 0, 0, byte(len(buf)), 0}, scsi.FromDevice, buf, d.t.Short)
	if err != nil {
		return 0, false, err
	}
	h, err := parseModeSense6(buf[:n])
	if err != nil {
		return 0, false, err
	}
	if h.HasBlockDesc {
		d.blockSize = h.BlockSize
	}
	return h.BlockSize, h.WriteProtected, nil
}

func rw6(op byte, fixed bool, n int) []byte {
	cdb := []byte{op, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}
	if fixed {
		cdb[1] |= 0x01
	}
	return cdb
}

// Write writes data as one variable block, or in fixed mode as
// len(data)/blockSize blocks. It returns the bytes the drive took: all
// of them with a nil error or ErrEarlyWarning; fewer with ErrEndOfMedium
// or another error.
func (d *Drive) Write(ctx context.Context, data []byte) (int, error) {
	fixed := d.blockSize != 0
	n := len(data)
	if fixed {
		if len(data)%d.blockSize != 0 {
			return 0, fmt.Errorf("write %d bytes: not a multiple of the %d-byte block", len(data), d.blockSize)
		}
		n = len(data) / d.blockSize
	}
	if n > 0xFFFFFF {
		return 0, fmt.Errorf("write %d bytes: too long for one command", len(data))
	}
	_, err := d.do(ctx, "write", rw6(0x0A, fixed, n), scsi.ToDevice, data, d.t.ReadWrite)
	var cc *CheckCondition
	if !errors.As(err, &cc) {
		if err != nil {
			return 0, err
		}
		return len(data), nil
	}
	if errors.Is(err, ErrEarlyWarning) {
		return len(data), err
	}
	// INFORMATION holds what was not written (blocks or bytes).
	if !cc.Sense.InfoValid {
		return 0, err
	}
	left := int(cc.Sense.Info)
	if fixed {
		left *= d.blockSize
	}
	if left < 0 || left > len(data) {
		return 0, err
	}
	return len(data) - left, err
}

// WriteFilemarks writes n filemarks (0 flushes the drive's buffer).
func (d *Drive) WriteFilemarks(ctx context.Context, n int) error {
	if n < 0 || n > 0xFFFFFF {
		return fmt.Errorf("write %d filemarks: out of range", n)
	}
	_, err := d.do(ctx, "write filemarks", []byte{0x10, 0, byte(n >> 16), byte(n >> 8), byte(n), 0}, scsi.None, nil, d.t.ReadWrite)
	return err
}

// Read reads the next block into buf (variable mode) or len(buf)/blockSize
// blocks (fixed mode) and returns the bytes read. A shorter variable
// block is no error; ErrFilemark, ErrEndOfData and ErrBlockTooLarge say
// why a read stopped.
func (d *Drive) Read(ctx context.Context, buf []byte) (int, error) {
	fixed := d.blockSize != 0
	n := len(buf)
	if fixed {
		if len(buf)%d.blockSize != 0 {
			return 0, fmt.Errorf("read into %d bytes: not a multiple of the %d-byte block", len(buf), d.blockSize)
		}
		n = len(buf) / d.blockSize
	}
	if n > 0xFFFFFF {
		return 0, fmt.Errorf("read %d bytes: too long for one command", len(buf))
	}
	got, err := d.do(ctx, "read", rw6(0x08, fixed, n), scsi.FromDevice, buf, d.t.ReadWrite)
	var cc *CheckCondition
	if !errors.As(err, &cc) {
		return got, err
	}
	s := cc.Sense
	switch {
	case s.ILI && s.Key == 0 && !fixed && s.InfoValid && s.Info > 0:
		return min(len(buf)-int(s.Info), got), nil // a shorter block
	case s.ILI && s.Key == 0 && !fixed && s.InfoValid && s.Info < 0:
		cc.cause = ErrBlockTooLarge
		return len(buf), err
	case s.ILI && s.Key == 0:
		return got, fmt.Errorf("read: a block of the wrong length in fixed mode: %w", err)
	}
	return got, err
}

// SpaceKind is what SPACE moves over.
type SpaceKind byte

const (
	SpaceBlocks    SpaceKind = 0
	SpaceFilemarks SpaceKind = 1
	SpaceEndOfData SpaceKind = 3
)

// Space moves count blocks or filemarks (negative: backward), or to end
// of data. Stopping early returns ErrFilemark, ErrEndOfData or
// ErrBeginningOfTape, the CheckCondition's Sense.Info the count left.
func (d *Drive) Space(ctx context.Context, kind SpaceKind, count int) error {
	if count < -(1<<23) || count >= 1<<23 {
		return fmt.Errorf("space %d: out of range", count)
	}
	c := uint32(count) & 0xFFFFFF
	_, err := d.do(ctx, "space", []byte{0x11, byte(kind), byte(c >> 16), byte(c >> 8), byte(c), 0}, scsi.None, nil, d.t.Long)
	return err
}

// Locate positions the tape at logical object block (blocks and
// filemarks counted from BOP) with LOCATE(10), or LOCATE(16) beyond
// 32 bits.
func (d *Drive) Locate(ctx context.Context, block uint64) error {
	var cdb []byte
	if block <= 0xFFFFFFFF {
		cdb = make([]byte, 10)
		cdb[0] = 0x2B
		binary.BigEndian.PutUint32(cdb[3:], uint32(block))
	} else {
		cdb = make([]byte, 16)
		cdb[0] = 0x92
		binary.BigEndian.PutUint64(cdb[4:], block)
	}
	_, err := d.do(ctx, "locate", cdb, scsi.None, nil, d.t.Long)
	return err
}

// Position reads the current position with READ POSITION: the long form
// when the drive has it (it counts files too), else the short form.
func (d *Drive) Position(ctx context.Context) (Position, error) {
	buf := make([]byte, 32)
	n, err := d.do(ctx, "read position", []byte{0x34, 0x06, 0, 0, 0, 0, 0, 0, 32, 0}, scsi.FromDevice, buf, d.t.Short)
	var cc *CheckCondition
	if errors.As(err, &cc) && cc.Sense.Key == 0x5 {
		buf = buf[:20]
		n, err = d.do(ctx, "read position", make([]byte, 10), scsi.FromDevice, buf, d.t.Short)
		if err == nil {
			return parseReadPosition(buf[:n], false)
		}
	}
	if err != nil {
		return Position{}, err
	}
	return parseReadPosition(buf[:n], true)
}

// TapeAlert reads the TapeAlert log page (0x2E). Reading it clears the
// flags on real drives, so log what it returns.
func (d *Drive) TapeAlert(ctx context.Context) (Alerts, error) {
	buf := make([]byte, 4+64*5)
	n, err := d.do(ctx, "log sense tapealert", []byte{0x4D, 0, 0x40 | 0x2E, 0, 0, 0, 0, byte(len(buf) >> 8), byte(len(buf)), 0}, scsi.FromDevice, buf, d.t.Short)
	if err != nil {
		return 0, err
	}
	return parseTapeAlert(buf[:n])
}

// Barcode reads the cartridge's barcode from medium auxiliary memory
// (READ ATTRIBUTE 0x0806).
func (d *Drive) Barcode(ctx context.Context) (string, error) {
	buf := make([]byte, 512)
	cdb := make([]byte, 16)
	cdb[0] = 0x8C
	binary.BigEndian.PutUint16(cdb[8:], 0x0806)
	binary.BigEndian.PutUint32(cdb[10:], uint32(len(buf)))
	n, err := d.do(ctx, "read attribute", cdb, scsi.FromDevice, buf, d.t.Short)
	if err != nil {
		return "", err
	}
	v, ok, err := parseAttribute(buf[:n], 0x0806)
	if err != nil {
		return "", fmt.Errorf("read attribute barcode: %w", err)
	}
	if !ok {
		return "", errors.New("read attribute: the cartridge has no barcode attribute")
	}
	return strings.TrimRight(strings.ToValidUTF8(string(v), "?"), " \x00"), nil
}
