//go:build linux

// Command sgprobe is the lab's own guest program: inside the qemu guest it
// finds tgt's changer and drives through sysfs, sends INQUIRY to the
// changer and a drive and READ ELEMENT STATUS to the changer (one element
// type at a time: tgt garbles the all-types reply) over SG_IO, and prints
// the raw replies for the host test to check.
package main

import (
	"context"
	"fmt"
	"time"

	smc "github.com/holdfast/holdfast/drivers/changer"
	"github.com/holdfast/holdfast/drivers/scsi"
	"github.com/holdfast/holdfast/drivers/scsi/sgio"
	"github.com/holdfast/holdfast/tools/lab/guest"
)

// Reply is one command's outcome as the host test reads it.
type Reply struct {
	Device   string `json:"device"`
	Address  string `json:"address"`
	Command  string `json:"command"`
	Status   byte   `json:"status"`
	Sense    []byte `json:"sense,omitempty"`
	Residual int    `json:"residual"`
	Data     []byte `json:"data"`
}

func main() {
	guest.Main(40*time.Second, probe)
}

func probe(ctx context.Context, r *guest.Report) error {
	devs, err := guest.WaitDevices(ctx, guest.Library(1, 2))
	r.Record("devices", devs)
	if err != nil {
		return err
	}
	var changer, drive *sgio.Info
	for i := range devs {
		switch {
		case devs[i].Type == sgio.TypeChanger && changer == nil:
			changer = &devs[i]
		case devs[i].Type == sgio.TypeTape && drive == nil:
			drive = &devs[i]
		}
	}
	const inquiryLen = 96
	for _, d := range []*sgio.Info{changer, drive} {
		rep, err := send(ctx, d, "inquiry", scsi.Command{
			CDB: []byte{0x12, 0, 0, 0, inquiryLen, 0}, Dir: scsi.FromDevice, Data: make([]byte, inquiryLen),
			Timeout: 10 * time.Second,
		})
		if err != nil {
			return err
		}
		rep.Data = declared(rep.Data, 5, int(at(rep.Data, 4)))
		r.Record("reply", rep)
	}
	const allocLen = 4096
	for _, typ := range []byte{1, 2, 3, 4} { // transport, storage, import/export, data transfer
		rep, err := send(ctx, changer, fmt.Sprintf("read-element-status-%d", typ), scsi.Command{
			// VolTag, all elements of this type from address 0.
			CDB: []byte{0xB8, 0x10 | typ, 0, 0, 0xff, 0xff, 0, allocLen >> 16, allocLen >> 8 & 0xff, allocLen & 0xff, 0, 0},
			Dir: scsi.FromDevice, Data: make([]byte, allocLen), Timeout: 30 * time.Second,
		})
		if err != nil {
			return err
		}
		n := int(at(rep.Data, 5))<<16 | int(at(rep.Data, 6))<<8 | int(at(rep.Data, 7))
		rep.Data = declared(rep.Data, 8, n)
		r.Record("reply", rep)
	}
	// The same library through Holdfast's changer driver: the parsed
	// inventory, as holdfastd will read it.
	dev, err := sgio.Open(changer.Path, sgio.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	ch, err := smc.Open(ctx, dev)
	if err != nil {
		return fmt.Errorf("changer driver: %w", err)
	}
	inv, err := ch.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("changer inventory: %w", err)
	}
	// A short record: a long console line can be cut by the kernel's own
	// messages at power-off.
	type element struct {
		Address uint16
		Full    bool
		Barcode string `json:",omitempty"`
		ID      string `json:",omitempty"`
	}
	var short struct{ Slots, Drives []element }
	for _, e := range inv.Slots {
		short.Slots = append(short.Slots, element{Address: e.Address, Full: e.Full, Barcode: e.Barcode})
	}
	for _, e := range inv.Drives {
		short.Drives = append(short.Drives, element{Address: e.Address, Full: e.Full, Barcode: e.Barcode, ID: e.DeviceID})
	}
	r.Record("inventory", short)
	return nil
}

// declared cuts a reply to the length its header declares: the
// pass-through reports no residual for the zeros after it, and a console
// line of a whole 4 KiB buffer is needlessly long.
func declared(b []byte, header, n int) []byte {
	return b[:min(len(b), header+n)]
}

func at(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

func send(ctx context.Context, info *sgio.Info, name string, cmd scsi.Command) (Reply, error) {
	d, err := sgio.Open(info.Path, sgio.Options{})
	if err != nil {
		return Reply{}, err
	}
	defer d.Close()
	res, err := d.Do(ctx, &cmd)
	if err != nil {
		return Reply{}, fmt.Errorf("%s: %w", name, err)
	}
	n := max(0, min(len(cmd.Data), len(cmd.Data)-res.Residual))
	return Reply{
		Device: info.Name, Address: info.Address.String(), Command: name,
		Status: res.Status, Sense: res.Sense, Residual: res.Residual,
		Data: cmd.Data[:n],
	}, nil
}
