package sgio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Peripheral device types (SPC-4 INQUIRY byte 0) that Holdfast drives.
const (
	TypeTape    = 0x01
	TypeChanger = 0x08
)

// HCTL is a SCSI address as Linux names it: host, channel, target, LUN.
type HCTL struct {
	Host, Channel, Target int
	LUN                   uint64
}

func (a HCTL) String() string {
	return fmt.Sprintf("%d:%d:%d:%d", a.Host, a.Channel, a.Target, a.LUN)
}

// ParseHCTL reads "H:C:T:L" as sysfs names a SCSI device.
func ParseHCTL(s string) (HCTL, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return HCTL{}, fmt.Errorf("SCSI address %q: want H:C:T:L", s)
	}
	var n [3]int
	for i := range 3 {
		v, err := strconv.ParseUint(f[i], 10, 31)
		if err != nil {
			return HCTL{}, fmt.Errorf("SCSI address %q: %w", s, err)
		}
		n[i] = int(v)
	}
	lun, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return HCTL{}, fmt.Errorf("SCSI address %q: %w", s, err)
	}
	return HCTL{Host: n[0], Channel: n[1], Target: n[2], LUN: lun}, nil
}

// Info describes one SCSI generic node found in sysfs.
type Info struct {
	Name    string // "sg3"
	Path    string // "/dev/sg3": the node to Open
	Address HCTL
	Type    int // peripheral device type: TypeTape, TypeChanger, ...
	Vendor  string
	Model   string
	Rev     string
	// Serial is the unit serial number from VPD page 0x80 when the kernel
	// cached it, the way to tell drives apart across boots.
	Serial string
	// TapeNode is the non-rewinding tape node ("/dev/nst0") of a tape
	// drive whose st driver is bound, empty otherwise.
	TapeNode string
}

// Discover lists the SCSI generic nodes under sysfsRoot ("/sys"), sorted
// by SCSI address. Nodes appear in /dev under the same name.
func Discover(sysfsRoot string) ([]Info, error) {
	classDir := filepath.Join(sysfsRoot, "class", "scsi_generic")
	entries, err := os.ReadDir(classDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no sg driver loaded: no devices
	}
	if err != nil {
		return nil, fmt.Errorf("list SCSI generic devices: %w", err)
	}
	var out []Info
	for _, e := range entries {
		info, err := describe(filepath.Join(classDir, e.Name()), e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i].Address, out[j].Address) })
	return out, nil
}

func less(a, b HCTL) bool {
	if a.Host != b.Host {
		return a.Host < b.Host
	}
	if a.Channel != b.Channel {
		return a.Channel < b.Channel
	}
	if a.Target != b.Target {
		return a.Target < b.Target
	}
	return a.LUN < b.LUN
}

func describe(sgDir, name string) (Info, error) {
	dev := filepath.Join(sgDir, "device")
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return Info{}, fmt.Errorf("%s: resolve its SCSI device: %w", name, err)
	}
	addr, err := ParseHCTL(filepath.Base(real))
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", name, err)
	}
	typ, err := readAttr(dev, "type")
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", name, err)
	}
	t, err := strconv.Atoi(typ)
	if err != nil {
		return Info{}, fmt.Errorf("%s: device type %q: %w", name, typ, err)
	}
	info := Info{Name: name, Path: "/dev/" + name, Address: addr, Type: t}
	for _, a := range []struct {
		file string
		dst  *string
	}{{"vendor", &info.Vendor}, {"model", &info.Model}, {"rev", &info.Rev}} {
		if *a.dst, err = readAttr(dev, a.file); err != nil {
			return Info{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	if pg, err := os.ReadFile(filepath.Join(dev, "vpd_pg80")); err == nil {
		info.Serial, _ = ParseUnitSerial(pg) // a malformed page leaves the serial unknown
	}
	if t == TypeTape {
		info.TapeNode, err = tapeNode(dev)
		if err != nil {
			return Info{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	return info, nil
}

// tapeNode finds the st driver's non-rewinding node, nstN, among the
// device's scsi_tape children (stN, stNl, nstNa, ... are modes of it).
func tapeNode(dev string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(dev, "scsi_tape"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil // st not loaded or not bound
	}
	if err != nil {
		return "", fmt.Errorf("list tape nodes: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if rest, ok := strings.CutPrefix(n, "nst"); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			return "/dev/" + n, nil
		}
	}
	return "", nil
}

func readAttr(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("read device attribute: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// ParseUnitSerial decodes a Unit Serial Number VPD page (0x80) as the
// kernel caches it in vpd_pg80: a 4-byte header then the serial, padded
// with spaces.
func ParseUnitSerial(page []byte) (string, error) {
	if len(page) < 4 {
		return "", fmt.Errorf("unit serial page: %d bytes, want a 4-byte header", len(page))
	}
	if page[1] != 0x80 {
		return "", fmt.Errorf("unit serial page: page code %#02x, want 0x80", page[1])
	}
	n := int(binary.BigEndian.Uint16(page[2:4]))
	if 4+n > len(page) {
		return "", fmt.Errorf("unit serial page: declares %d bytes, has %d", n, len(page)-4)
	}
	s := strings.TrimRight(string(page[4:4+n]), " \x00")
	return strings.TrimLeft(s, " "), nil
}
