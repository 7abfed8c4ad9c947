//go:build linux

package sgio

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// The kernel reads sg_io_hdr at the C offsets; a field out of place
// would send garbage. These are <scsi/sg.h>'s on 64-bit Linux.
func TestHeaderLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("offsets below are the 64-bit ABI's")
	}
	var h sgIOHdr
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(h), 88},
		{"dxfer_len", unsafe.Offsetof(h.dxferLen), 12},
		{"dxferp", unsafe.Offsetof(h.dxferp), 16},
		{"cmdp", unsafe.Offsetof(h.cmdp), 24},
		{"sbp", unsafe.Offsetof(h.sbp), 32},
		{"timeout", unsafe.Offsetof(h.timeout), 40},
		{"pack_id", unsafe.Offsetof(h.packID), 48},
		{"usr_ptr", unsafe.Offsetof(h.usrPtr), 56},
		{"status", unsafe.Offsetof(h.status), 64},
		{"sb_len_wr", unsafe.Offsetof(h.sbLenWr), 67},
		{"host_status", unsafe.Offsetof(h.hostStatus), 68},
		{"driver_status", unsafe.Offsetof(h.driverStatus), 70},
		{"resid", unsafe.Offsetof(h.resid), 72},
		{"info", unsafe.Offsetof(h.info), 80},
	} {
		if c.got != c.want {
			t.Errorf("sg_io_hdr %s at %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestOpenRejectsNonSG(t *testing.T) {
	for _, p := range []string{"/dev/null", filepath.Join(t.TempDir(), "missing")} {
		if d, err := Open(p, Options{}); err == nil {
			d.Close()
			t.Errorf("Open(%s): no error", p)
		}
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(f, Options{})
	if err == nil || !strings.Contains(err.Error(), "not a SCSI generic device") {
		t.Errorf("Open(regular file) = %v, want 'not a SCSI generic device'", err)
	}
}

// Bad commands are refused before they reach the kernel: fd -1 would make
// any ioctl fail with EBADF, which the errors below must not be.
func TestDoRejectsBadCommands(t *testing.T) {
	d := &Device{path: "/dev/sgX", fd: -1, timeout: DefaultTimeout}
	inquiry := []byte{0x12, 0, 0, 0, 36, 0}
	for _, tc := range []struct {
		name string
		cmd  scsi.Command
		want string
	}{
		{"empty CDB", scsi.Command{}, "CDB of 0 bytes"},
		{"huge CDB", scsi.Command{CDB: make([]byte, 260)}, "CDB of 260 bytes"},
		{"data without direction", scsi.Command{CDB: inquiry, Data: make([]byte, 36)}, "no transfer direction"},
		{"direction without data", scsi.Command{CDB: inquiry, Dir: scsi.FromDevice}, "empty buffer"},
		{"unknown direction", scsi.Command{CDB: inquiry, Dir: 9, Data: make([]byte, 1)}, "unknown direction"},
	} {
		_, err := d.Do(context.Background(), &tc.cmd)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Do = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Do(ctx, &scsi.Command{CDB: []byte{0, 0, 0, 0, 0, 0}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Do with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestTimeoutMillis(t *testing.T) {
	bg := context.Background()
	near, cancel := context.WithTimeout(bg, 2*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		cmd, def time.Duration
		lo, hi   uint32
	}{
		{"command's own", bg, 5 * time.Second, time.Minute, 5000, 5000},
		{"device default", bg, 0, time.Minute, 60000, 60000},
		{"cut to the context", near, time.Hour, time.Minute, 1, 2000},
		{"at least 1 ms", bg, time.Microsecond, time.Minute, 1, 1},
		{"capped", bg, 100 * 24 * time.Hour, time.Minute, maxTimeoutMillis, maxTimeoutMillis},
	} {
		got := timeoutMillis(tc.ctx, tc.cmd, tc.def)
		if got < tc.lo || got > tc.hi {
			t.Errorf("%s: %d ms, want %d..%d", tc.name, got, tc.lo, tc.hi)
		}
	}
}

func TestTransportError(t *testing.T) {
	for _, tc := range []struct {
		host, driver uint16
		want         string // "" = delivered
		timeout      bool
	}{
		{0, 0, "", false},
		{0, 0x08, "", false}, // DRIVER_SENSE: sense is in the Result
		{0x01, 0, "DID_NO_CONNECT", false},
		{0x03, 0, "DID_TIME_OUT", true},
		{0, 0x06, "DRIVER_TIMEOUT", true},
		{0x0e, 0x08, "DID_TRANSPORT_DISRUPTED", false},
		{0x07, 0x04, "DRIVER_ERROR", false},
		{0x7f, 0, "host status 0x7f", false},
	} {
		err := transportError(tc.host, tc.driver)
		if tc.want == "" {
			if err != nil {
				t.Errorf("host %#x driver %#x: %v, want delivered", tc.host, tc.driver, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("host %#x driver %#x: %v, want %q", tc.host, tc.driver, err, tc.want)
			continue
		}
		if errors.Is(err, ErrTimeout) != tc.timeout {
			t.Errorf("host %#x driver %#x: errors.Is(ErrTimeout) = %v", tc.host, tc.driver, !tc.timeout)
		}
	}
}
