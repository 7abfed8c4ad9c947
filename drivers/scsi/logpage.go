package scsi

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
)

// PageTapeAlert is the TapeAlert log page.
const PageTapeAlert = 0x2E

// LogSense builds LOG SENSE for one page's cumulative current values.
func LogSense(page, subpage byte, alloc uint16) *Command {
	// PC 01b: current cumulative values.
	cdb := []byte{OpLogSense, 0, 1<<6 | page&0x3F, subpage, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(cdb[7:9], alloc)
	return &Command{CDB: cdb, Dir: FromDevice, Data: make([]byte, alloc), Timeout: shortTimeout}
}

// LogParameter is one parameter of a log page.
type LogParameter struct {
	Code    uint16
	Control byte
	Value   []byte
}

// LogPage is a decoded log page.
type LogPage struct {
	Code       byte
	Subpage    byte
	Parameters []LogParameter
}

// ParseLogPage decodes a LOG SENSE reply. Parameters must lie wholly in
// the declared page; a page cut by the allocation length keeps its whole
// parameters.
func ParseLogPage(b []byte) (LogPage, error) {
	if len(b) < 4 {
		return LogPage{}, fmt.Errorf("log page: %d bytes, need 4", len(b))
	}
	p := LogPage{Code: b[0] & 0x3F, Subpage: b[1]}
	end := 4 + int(binary.BigEndian.Uint16(b[2:4]))
	truncated := end > len(b)
	if truncated {
		end = len(b)
	}
	for off := 4; off < end; {
		if off+4 > end || off+4+int(b[off+3]) > end {
			if truncated {
				break // cut by the allocation length: keep the whole parameters
			}
			if off+4 > end {
				return p, fmt.Errorf("log page 0x%02x: parameter header at offset %d cut short", p.Code, off)
			}
			return p, fmt.Errorf("log page 0x%02x: parameter 0x%04x declares %d bytes past the page end", p.Code, binary.BigEndian.Uint16(b[off:off+2]), b[off+3])
		}
		n := int(b[off+3])
		p.Parameters = append(p.Parameters, LogParameter{
			Code:    binary.BigEndian.Uint16(b[off : off+2]),
			Control: b[off+2],
			Value:   b[off+4 : off+4+n],
		})
		off += 4 + n
	}
	return p, nil
}

// TapeAlerts is the set of TapeAlert flags, bit n-1 for flag n (1-64).
type TapeAlerts uint64

// TapeAlert flags drivers act on by name (SSC-3 annex B).
const (
	AlertReadWarning          = 1
	AlertWriteWarning         = 2
	AlertHardError            = 3
	AlertMedia                = 4
	AlertReadFailure          = 5
	AlertWriteFailure         = 6
	AlertMediaLife            = 7
	AlertNotDataGrade         = 8
	AlertWriteProtect         = 9
	AlertNoRemoval            = 10
	AlertCleaningMedia        = 11
	AlertUnsupportedFormat    = 12
	AlertForcedEject          = 16
	AlertNearingMediaLife     = 19
	AlertCleanNow             = 20
	AlertCleanPeriodic        = 21
	AlertExpiredCleaningMedia = 22
	AlertInvalidCleaningTape  = 23
	AlertHardwareA            = 30
	AlertHardwareB            = 31
	AlertInterface            = 32
	AlertEjectMedia           = 33
	AlertPredictiveFailure    = 38
	AlertDiagnosticsRequired  = 39
)

var alertNames = [65]string{
	1: "read warning", 2: "write warning", 3: "hard error", 4: "media",
	5: "read failure", 6: "write failure", 7: "media life", 8: "not data grade",
	9: "write protect", 10: "no removal", 11: "cleaning media", 12: "unsupported format",
	13: "recoverable mechanical cartridge failure", 14: "unrecoverable mechanical cartridge failure",
	15: "memory chip in cartridge failure", 16: "forced eject", 17: "read only format",
	18: "tape directory corrupted on load", 19: "nearing media life", 20: "clean now",
	21: "clean periodic", 22: "expired cleaning media", 23: "invalid cleaning tape",
	24: "retension requested", 25: "dual-port interface error", 26: "cooling fan failure",
	27: "power supply failure", 28: "power consumption", 29: "drive maintenance",
	30: "hardware A", 31: "hardware B", 32: "interface", 33: "eject media",
	34: "microcode update fail", 35: "drive humidity", 36: "drive temperature",
	37: "drive voltage", 38: "predictive failure", 39: "diagnostics required",
	49: "diminished native capacity", 50: "lost statistics",
	51: "tape directory invalid at unload", 52: "tape system area write failure",
	53: "tape system area read failure", 54: "no start of data", 55: "loading failure",
	56: "unrecoverable unload failure", 57: "automation interface failure",
	58: "microcode failure", 59: "WORM medium, integrity check failed",
	60: "WORM medium, overwrite attempted",
}

// TapeAlertName names flag n (1-64).
func TapeAlertName(n int) string {
	if n >= 1 && n <= 64 && alertNames[n] != "" {
		return alertNames[n]
	}
	return fmt.Sprintf("flag %d", n)
}

// Has reports whether flag n (1-64) is set.
func (a TapeAlerts) Has(n int) bool { return n >= 1 && n <= 64 && a&(1<<(n-1)) != 0 }

// Flags lists the set flags' numbers in order.
func (a TapeAlerts) Flags() []int {
	var out []int
	for n := 1; n <= 64; n++ {
		if a.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

// CleaningRequired reports the flags that mean the drive wants a
// cleaning cartridge now or soon.
func (a TapeAlerts) CleaningRequired() bool {
	return a.Has(AlertCleanNow) || a.Has(AlertCleanPeriodic)
}

func (a TapeAlerts) String() string {
	var names []string
	for _, n := range a.Flags() {
		names = append(names, fmt.Sprintf("%d %s", n, TapeAlertName(n)))
	}
	return strings.Join(names, ", ")
}

// ParseTapeAlerts decodes the TapeAlert page: parameters 1-64, one byte
// each, bit 0 set when the flag is active.
func ParseTapeAlerts(b []byte) (TapeAlerts, error) {
	p, err := ParseLogPage(b)
	if err != nil {
		return 0, err
	}
	if p.Code != PageTapeAlert {
		return 0, fmt.Errorf("tapealert: got log page 0x%02x", p.Code)
	}
	var a TapeAlerts
	for _, prm := range p.Parameters {
		if prm.Code < 1 || prm.Code > 64 {
			return 0, fmt.Errorf("tapealert: parameter code %d outside 1-64", prm.Code)
		}
		if len(prm.Value) < 1 {
			return 0, fmt.Errorf("tapealert: flag %d has no value", prm.Code)
		}
		if prm.Value[0]&0x01 != 0 {
			a |= 1 << (prm.Code - 1)
		}
	}
	return a, nil
}

// ReadTapeAlerts reads and decodes the TapeAlert page. Reading it clears
// the flags on the drive (SSC), so the caller should log what it got.
func ReadTapeAlerts(ctx context.Context, dev Device) (TapeAlerts, error) {
	cmd := LogSense(PageTapeAlert, 0, 4+64*5)
	res, err := Exec(ctx, dev, cmd)
	if err != nil {
		return 0, err
	}
	return ParseTapeAlerts(cmd.Data[:received(cmd, res)])
}
