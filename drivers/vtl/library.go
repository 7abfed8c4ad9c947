// Package vtl is a virtual tape library: a media changer and tape drives
// that answer the same SCSI commands as real hardware (scsi.Device), from
// cartridges kept as files in a directory. Tests and the demo drive it
// with the same changer and tape drivers as a real library, and a user
// without a library can back up to it as a disk-backed one. Faults real
// libraries show (a drive failing mid-write or vanishing, write-protected
// or early-full tapes, cleaning needed) can be injected.
package vtl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// Config lays out a library. Element addresses follow SMC-3: one
// transport, then drives, import/export (mail) slots and storage slots
// at fixed first addresses.
type Config struct {
	Slots     int `json:"slots"`
	Drives    int `json:"drives"`
	MailSlots int `json:"mail_slots"`
	// Capacity of new cartridges in bytes; entry headers (16 bytes per
	// block or filemark) count against it as a tape's formatting does.
	Capacity int64 `json:"capacity"`
	// EarlyWarning is the zone before the end of a new cartridge in
	// which writes succeed but report early warning.
	EarlyWarning int64 `json:"early_warning"`
	// Serial prefixes the serial numbers of the changer and drives.
	Serial string `json:"serial"`
}

// Element addresses.
const (
	TransportAddr = 0x0000
	FirstDrive    = 0x0100
	FirstMail     = 0x0200
	FirstSlot     = 0x0400
)

func (c *Config) fill() error {
	if c.Capacity == 0 {
		c.Capacity = 1 << 30
	}
	if c.EarlyWarning == 0 {
		c.EarlyWarning = c.Capacity / 50
	}
	if c.Serial == "" {
		c.Serial = "HFVTL"
	}
	switch {
	case c.Slots < 1 || c.Slots > 0xFFFF-FirstSlot:
		return fmt.Errorf("library config: %d slots", c.Slots)
	case c.Drives < 1 || c.Drives > FirstMail-FirstDrive:
		return fmt.Errorf("library config: %d drives", c.Drives)
	case c.MailSlots < 0 || c.MailSlots > FirstSlot-FirstMail:
		return fmt.Errorf("library config: %d mail slots", c.MailSlots)
	case c.EarlyWarning >= c.Capacity || c.Capacity < 0 || c.EarlyWarning < 0:
		return fmt.Errorf("library config: capacity %d, early warning %d", c.Capacity, c.EarlyWarning)
	}
	return nil
}

// state is what the state file keeps: the layout and where each
// cartridge is.
type state struct {
	Version int               `json:"version"`
	Config  Config            `json:"config"`
	Where   map[string]string `json:"where"` // element address (decimal) -> barcode
}

const stateFile = "library.json"

// Library is one virtual library rooted in a directory.
type Library struct {
	dir     string
	mu      sync.Mutex // guards cfg, where, shelf decisions; taken after a drive's mutex
	cfg     Config
	where   map[uint16]string
	changer *changer
	drives  []*drive
}

var barcodeRE = regexp.MustCompile(`^[A-Z0-9]{1,32}$`)

// Open opens the library in dir, creating it with cfg if dir holds no
// state file; an existing library keeps its layout and cfg must match it.
func Open(dir string, cfg Config) (*Library, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open library %s: %w", dir, err)
	}
	l := &Library{dir: dir, cfg: cfg, where: map[uint16]string{}}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := l.saveLocked(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("open library %s: %w", dir, err)
	default:
		st, err := decodeState(b)
		if err != nil {
			return nil, fmt.Errorf("open library %s: %w", dir, err)
		}
		if st.Config != cfg {
			return nil, fmt.Errorf("open library %s: layout %+v differs from the saved %+v", dir, cfg, st.Config)
		}
		for a, bc := range st.Where {
			n, _ := strconv.Atoi(a)
			l.where[uint16(n)] = bc
		}
	}
	l.changer = &changer{lib: l}
	for i := range cfg.Drives {
		// Drives power on in variable block mode, as LTO drives do.
		d := &drive{lib: l, index: i, addr: uint16(FirstDrive + i)}
		l.drives = append(l.drives, d)
		if bc, ok := l.where[d.addr]; ok {
			if err := d.mount(bc); err != nil {
				l.Close()
				return nil, err
			}
			d.unitAttention = false
		}
	}
	return l, nil
}

// decodeState parses and checks a state file.
func decodeState(b []byte) (state, error) {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state file: %w", err)
	}
	if st.Version != 1 {
		return st, fmt.Errorf("state file: version %d not supported", st.Version)
	}
	if err := st.Config.fill(); err != nil {
		return st, fmt.Errorf("state file: %w", err)
	}
	seen := map[string]bool{}
	for a, bc := range st.Where {
		n, err := strconv.Atoi(a)
		if err != nil || n < 0 || n > 0xFFFF || st.Config.kind(uint16(n)) == 0 || st.Config.kind(uint16(n)) == elemTransport {
			return st, fmt.Errorf("state file: element %q is not a slot, drive or mail slot", a)
		}
		if !barcodeRE.MatchString(bc) || seen[bc] {
			return st, fmt.Errorf("state file: barcode %q invalid or in two places", bc)
		}
		seen[bc] = true
	}
	return st, nil
}

// saveLocked writes the state file crash-safely: a synced temporary
// file renamed over the old one, then the directory synced.
func (l *Library) saveLocked() error {
	st := state{Version: 1, Config: l.cfg, Where: map[string]string{}}
	for a, bc := range l.where {
		st.Where[strconv.Itoa(int(a))] = bc
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode library state: %w", err)
	}
	tmp := filepath.Join(l.dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save library state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("save library state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save library state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save library state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, stateFile)); err != nil {
		return fmt.Errorf("save library state: %w", err)
	}
	d, err := os.Open(l.dir)
	if err != nil {
		return fmt.Errorf("save library state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save library state: sync %s: %w", l.dir, err)
	}
	return nil
}

const (
	elemTransport = 1
	elemSlot      = 2
	elemMail      = 3
	elemDrive     = 4
)

// kind is the SMC element type code of address a, 0 if none.
func (c Config) kind(a uint16) int {
	switch {
	case a == TransportAddr:
		return elemTransport
	case a >= FirstDrive && int(a) < FirstDrive+c.Drives:
		return elemDrive
	case a >= FirstMail && int(a) < FirstMail+c.MailSlots:
		return elemMail
	case a >= FirstSlot && int(a) < FirstSlot+c.Slots:
		return elemSlot
	}
	return 0
}

func (l *Library) tapePath(barcode string) string {
	return filepath.Join(l.dir, barcode+".vtape")
}

// Changer is the library's media changer logical unit.
func (l *Library) Changer() scsi.Device { return l.changer }

// Drive is tape drive i (0-based; element address FirstDrive+i).
func (l *Library) Drive(i int) scsi.Device { return l.drives[i] }

// Config is the library's layout.
func (l *Library) Config() Config { return l.cfg }

// CreateTape makes a blank cartridge on the shelf (outside the library).
// capacity 0 takes the library's.
func (l *Library) CreateTape(barcode string, capacity int64) error {
	if !barcodeRE.MatchString(barcode) {
		return fmt.Errorf("create tape: barcode %q: want 1-32 of A-Z 0-9", barcode)
	}
	h := tapeHeader{Capacity: uint64(l.cfg.Capacity), EarlyWarning: uint64(l.cfg.EarlyWarning), Barcode: barcode}
	if capacity > 0 {
		h.Capacity = uint64(capacity)
		h.EarlyWarning = uint64(capacity / 50)
	}
	return createTapeFile(l.tapePath(barcode), h)
}

// Stock puts a shelf cartridge into the first empty storage slot.
func (l *Library) Stock(barcode string) (uint16, error) {
	return l.place(barcode, FirstSlot, l.cfg.Slots)
}

// Import puts a shelf cartridge into the first empty mail slot, as an
// operator does; the changer then moves it in.
func (l *Library) Import(barcode string) (uint16, error) {
	return l.place(barcode, FirstMail, l.cfg.MailSlots)
}

func (l *Library) place(barcode string, first, n int) (uint16, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := os.Stat(l.tapePath(barcode)); err != nil {
		return 0, fmt.Errorf("place tape %s: %w", barcode, err)
	}
	for _, bc := range l.where {
		if bc == barcode {
			return 0, fmt.Errorf("place tape %s: already in the library", barcode)
		}
	}
	for a := first; a < first+n; a++ {
		if _, full := l.where[uint16(a)]; !full {
			l.where[uint16(a)] = barcode
			if err := l.saveLocked(); err != nil {
				delete(l.where, uint16(a))
				return 0, err
			}
			return uint16(a), nil
		}
	}
	return 0, fmt.Errorf("place tape %s: no empty element", barcode)
}

// TakeOut removes the cartridge from mail slot addr to the shelf, as an
// operator emptying the mail slot does.
func (l *Library) TakeOut(addr uint16) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.kind(addr) != elemMail {
		return "", fmt.Errorf("take out of %#x: not a mail slot", addr)
	}
	bc, ok := l.where[addr]
	if !ok {
		return "", fmt.Errorf("take out of %#x: empty", addr)
	}
	delete(l.where, addr)
	if err := l.saveLocked(); err != nil {
		l.where[addr] = bc
		return "", err
	}
	return bc, nil
}

// Contents lists the occupied elements: address -> barcode.
func (l *Library) Contents() map[uint16]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[uint16]string, len(l.where))
	for a, bc := range l.where {
		m[a] = bc
	}
	return m
}

// SetWriteProtected sets a cartridge's write-protect tab. It is kept in
// the tape file; a loaded tape sees it at once.
func (l *Library) SetWriteProtected(barcode string, on bool) error {
	for _, d := range l.drives {
		d.mu.Lock()
		if d.tape != nil && d.tape.hdr.Barcode == barcode {
			h := d.tape.hdr
			h.Flags &^= flagWriteProt
			if on {
				h.Flags |= flagWriteProt
			}
			err := d.tape.setHeader(h)
			d.mu.Unlock()
			return err
		}
		d.mu.Unlock()
	}
	t, err := openTapeFile(l.tapePath(barcode))
	if err != nil {
		return fmt.Errorf("write-protect %s: %w", barcode, err)
	}
	defer t.close()
	h := t.hdr
	h.Flags &^= flagWriteProt
	if on {
		h.Flags |= flagWriteProt
	}
	return t.setHeader(h)
}

// Faults injected into one drive; the zero value is a healthy drive.
type Faults struct {
	// FailWriteAfter > 0: the drive accepts that many more bytes of
	// WRITE data, then fails every write with MEDIUM ERROR 3/0C/00.
	FailWriteAfter int64
	// Gone: every command returns an error, as a drive that dropped
	// off the bus.
	Gone bool
	// FullAt > 0: the loaded tape's capacity is cut to this many bytes
	// (early warning FullAt/50 before), a tape full early.
	FullAt int64
	// CleaningNeeded raises TapeAlert flag 0x14 (clean now).
	CleaningNeeded bool
}

// Inject sets drive i's faults, replacing those set before.
func (l *Library) Inject(i int, f Faults) {
	d := l.drives[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	d.faults = f
	d.writeBudget = f.FailWriteAfter
	d.writeFailed = false
}

// Close closes the loaded tapes. The state file is always current.
func (l *Library) Close() error {
	var errs []error
	for _, d := range l.drives {
		d.mu.Lock()
		if d.tape != nil {
			if err := d.tape.f.Sync(); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, d.tape.close())
			d.tape = nil
		}
		d.mu.Unlock()
	}
	return errors.Join(errs...)
}

// addrs lists the addresses of one element type, ascending.
func (c Config) addrs(kind int) []uint16 {
	var first, n int
	switch kind {
	case elemTransport:
		first, n = TransportAddr, 1
	case elemDrive:
		first, n = FirstDrive, c.Drives
	case elemMail:
		first, n = FirstMail, c.MailSlots
	case elemSlot:
		first, n = FirstSlot, c.Slots
	}
	a := make([]uint16, n)
	for i := range a {
		a[i] = uint16(first + i)
	}
	return a
}
