// Package changer drives a tape library's medium changer (SMC-3) over
// the scsi pass-through: element address assignment, element status with
// barcodes and drive identifiers, and moves between slots, drives and
// mail slots. It assumes libraries misbehave the way tgt and real ones
// do: element status is read one element type at a time, paged, with
// every length checked, and commands are retried while the changer is
// becoming ready.
package changer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// Range is a contiguous run of element addresses of one type.
type Range struct {
	First, Count uint16
}

// Contains reports whether addr is in the range.
func (r Range) Contains(addr uint16) bool {
	return r.Count > 0 && addr >= r.First && int(addr) < int(r.First)+int(r.Count)
}

func (r Range) String() string {
	switch r.Count {
	case 0:
		return "none"
	case 1:
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, int(r.First)+int(r.Count)-1)
}

// Addresses is the element address assignment (mode page 0x1D).
type Addresses struct {
	Transport, Storage, ImportExport, DataTransfer Range
}

// Of returns the range of one element type.
func (a Addresses) Of(t ElementType) Range {
	switch t {
	case Transport:
		return a.Transport
	case Storage:
		return a.Storage
	case ImportExport:
		return a.ImportExport
	case DataTransfer:
		return a.DataTransfer
	}
	return Range{}
}

// TypeOf finds which element type an address belongs to.
func (a Addresses) TypeOf(addr uint16) (ElementType, bool) {
	for _, t := range []ElementType{Transport, Storage, ImportExport, DataTransfer} {
		if a.Of(t).Contains(addr) {
			return t, true
		}
	}
	return 0, false
}

func (a Addresses) String() string {
	return fmt.Sprintf("transports %s, slots %s, mail slots %s, drives %s", a.Transport, a.Storage, a.ImportExport, a.DataTransfer)
}

// PageElementAddress is the element address assignment mode page.
const PageElementAddress = 0x1D

// ParseAddressAssignment decodes mode page 0x1D's parameters (the page
// header excluded) and checks that the ranges are sane.
func ParseAddressAssignment(p []byte) (Addresses, error) {
	if len(p) < 16 {
		return Addresses{}, fmt.Errorf("element address assignment page: %d bytes, need 16", len(p))
	}
	r := func(i int) Range {
		return Range{First: binary.BigEndian.Uint16(p[i : i+2]), Count: binary.BigEndian.Uint16(p[i+2 : i+4])}
	}
	a := Addresses{Transport: r(0), Storage: r(4), ImportExport: r(8), DataTransfer: r(12)}
	types := []ElementType{Transport, Storage, ImportExport, DataTransfer}
	for i, t := range types {
		ri := a.Of(t)
		if int(ri.First)+int(ri.Count) > 0x10000 {
			return a, fmt.Errorf("element address assignment: %ss %d+%d run past address 65535", t, ri.First, ri.Count)
		}
		for _, u := range types[i+1:] {
			rj := a.Of(u)
			if ri.Count > 0 && rj.Count > 0 && int(ri.First) < int(rj.First)+int(rj.Count) && int(rj.First) < int(ri.First)+int(ri.Count) {
				return a, fmt.Errorf("element address assignment: %ss %s overlap %ss %s", t, ri, u, rj)
			}
		}
	}
	if a.Storage.Count == 0 || a.DataTransfer.Count == 0 {
		return a, fmt.Errorf("element address assignment: %s: a library needs slots and drives", a)
	}
	return a, nil
}

// Changer is one medium changer. Its methods are for one goroutine at a
// time, like the scsi.Device under it.
type Changer struct {
	dev       scsi.Device
	Inquiry   scsi.InquiryData
	Addresses Addresses

	// ReadyRetries and ReadyWait bound the retries of a command the
	// changer answers with "becoming ready", a unit attention or BUSY.
	ReadyRetries int
	ReadyWait    time.Duration

	// alloc is the READ ELEMENT STATUS allocation length: 0xFFFF (some
	// changers read only two of its three bytes) until the changer
	// refuses it — tgt answers more than a page (4096) with HARDWARE
	// ERROR/internal target failure.
	alloc uint32
}

const (
	maxAlloc   = 0xFFFF
	smallAlloc = 4096
)

// Open checks that dev is a medium changer and reads its element address
// assignment.
func Open(ctx context.Context, dev scsi.Device) (*Changer, error) {
	c := &Changer{dev: dev, ReadyRetries: 30, ReadyWait: 2 * time.Second, alloc: maxAlloc}
	inq := scsi.Inquiry(-1, 96)
	res, err := c.exec(ctx, inq)
	if err != nil {
		return nil, fmt.Errorf("open changer: %w", err)
	}
	if c.Inquiry, err = scsi.ParseInquiry(inq.Data[:len(inq.Data)-clampResidual(inq, res)]); err != nil {
		return nil, fmt.Errorf("open changer: %w", err)
	}
	if c.Inquiry.DeviceType != scsi.TypeChanger {
		return nil, fmt.Errorf("open changer: %s %s is peripheral device type %d, not a medium changer (8)", c.Inquiry.Vendor, c.Inquiry.Product, c.Inquiry.DeviceType)
	}
	// MODE SENSE(6): older changers know no MODE SENSE(10).
	ms := scsi.ModeSense6(PageElementAddress, 0, scsi.PageCurrent, true, 255)
	if res, err = c.exec(ctx, ms); err != nil {
		return nil, fmt.Errorf("open changer: element address assignment: %w", err)
	}
	mp, err := scsi.ParseModeSense6(ms.Data[:len(ms.Data)-clampResidual(ms, res)])
	if err != nil {
		return nil, fmt.Errorf("open changer: element address assignment: %w", err)
	}
	page, ok := mp.Page(PageElementAddress)
	if !ok {
		return nil, fmt.Errorf("open changer: mode sense returned no element address assignment page")
	}
	if c.Addresses, err = ParseAddressAssignment(page.Data); err != nil {
		return nil, fmt.Errorf("open changer: %w", err)
	}
	return c, nil
}

func clampResidual(cmd *scsi.Command, res scsi.Result) int {
	return max(0, min(res.Residual, len(cmd.Data)))
}

// transient reports whether a failed command may succeed if sent again
// shortly: the changer is becoming ready, reports a unit attention
// (reset, medium changed, import/export accessed: reported once), or is
// busy.
func transient(err error) bool {
	var se *scsi.StatusError
	if errors.As(err, &se) {
		return se.Status == scsi.StatusBusy || se.Status == scsi.StatusTaskSetFull
	}
	s, ok := scsi.SenseOf(err)
	if !ok {
		return false
	}
	return s.Key == scsi.KeyUnitAttention || (s.Key == scsi.KeyNotReady && s.Is(0x04, 0x01))
}

// exec runs a command, retrying transient refusals a bounded number of
// times.
func (c *Changer) exec(ctx context.Context, cmd *scsi.Command) (scsi.Result, error) {
	for try := 0; ; try++ {
		res, err := scsi.Exec(ctx, c.dev, cmd)
		if err == nil || !transient(err) || try >= c.ReadyRetries {
			if err != nil && transient(err) {
				err = fmt.Errorf("still not ready after %d retries: %w", try, err)
			}
			return res, err
		}
		slog.Debug("changer not ready, retrying", "op", scsi.OpName(cmd.CDB[0]), "try", try+1, "err", err)
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("%s: %w (last: %v)", scsi.OpName(cmd.CDB[0]), ctx.Err(), err)
		case <-time.After(c.ReadyWait):
		}
	}
}

// Initialize runs INITIALIZE ELEMENT STATUS: the changer scans every
// element (and barcode). It can take an hour on a large library.
func (c *Changer) Initialize(ctx context.Context) error {
	cmd := &scsi.Command{CDB: []byte{scsi.OpInitializeElementStat, 0, 0, 0, 0, 0}, Dir: scsi.None, Timeout: time.Hour}
	if _, err := c.exec(ctx, cmd); err != nil {
		return fmt.Errorf("initialize element status: %w", err)
	}
	return nil
}
