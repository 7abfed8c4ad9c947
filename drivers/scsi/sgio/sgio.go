//go:build linux

// Package sgio is the Linux SG_IO implementation of scsi.Device: it sends
// one CDB at a time to a SCSI generic node (/dev/sgN) with the sg driver's
// SG_IO ioctl, and finds those nodes through sysfs (see Discover), never
// by their index, which changes with probe order.
package sgio

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// DefaultTimeout bounds a command whose Command.Timeout is zero and whose
// Options give no default. It is the sg driver's own default.
const DefaultTimeout = 60 * time.Second

// Options tune Open.
type Options struct {
	// Timeout is the device's default command timeout; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Exclusive opens the node with O_EXCL: the open fails with EBUSY
	// while another process holds it, and later opens fail while we do.
	// Without it, the kernel lets several openers interleave commands.
	Exclusive bool
}

// Device is one open SCSI generic node. It is a scsi.Device.
type Device struct {
	path    string
	fd      int
	timeout time.Duration
}

var _ scsi.Device = (*Device)(nil)

// Linux <scsi/sg.h>.
const (
	ioctlSGIO          = 0x2285
	ioctlSGGetVersion  = 0x2282
	sgDxferNone        = -1
	sgDxferToDev       = -2
	sgDxferFromDev     = -3
	sgInterfaceID      = 'S'
	minSGVersion       = 30000 // sg v3: the version that has SG_IO
	senseBufferLen     = 252
	maxCDBLen          = 252
	maxTimeoutMillis   = 1<<32 - 1
	driverStatusMask   = 0x0f
	driverStatusSense  = 0x08
	driverStatusTimout = 0x06
)

// sgIOHdr is struct sg_io_hdr. Go lays it out as C does on every Linux
// ABI (88 bytes on 64-bit); sgio_test checks the offsets. The pointer
// fields are unsafe.Pointer so the buffers they name stay reachable.
type sgIOHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         unsafe.Pointer
	cmdp           unsafe.Pointer
	sbp            unsafe.Pointer
	timeout        uint32
	flags          uint32
	packID         int32
	usrPtr         unsafe.Pointer
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

// Open opens a SCSI generic node read-write (SG_IO needs write access for
// most commands) and checks that it speaks sg v3.
func Open(path string, o Options) (*Device, error) {
	flags := unix.O_RDWR | unix.O_NONBLOCK | unix.O_CLOEXEC
	if o.Exclusive {
		// With O_NONBLOCK, O_EXCL fails at once with EBUSY rather than
		// waiting for the other openers to close.
		flags |= unix.O_EXCL
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var version int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlSGGetVersion, uintptr(unsafe.Pointer(&version))); e != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: not a SCSI generic device: %w", path, e)
	}
	if version < minSGVersion {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s: sg driver version %d has no SG_IO (need %d)", path, version, minSGVersion)
	}
	t := o.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return &Device{path: path, fd: fd, timeout: t}, nil
}

// Path is the node the device was opened from.
func (d *Device) Path() string { return d.path }

// Do sends one command with SG_IO. The ioctl cannot be interrupted, so
// the context bounds it only through the timeout given to the kernel: the
// smaller of the command's timeout and the context's remaining time.
func (d *Device) Do(ctx context.Context, cmd *scsi.Command) (scsi.Result, error) {
	if err := ctx.Err(); err != nil {
		return scsi.Result{}, fmt.Errorf("%s: %w", d.path, err)
	}
	h, err := d.header(ctx, cmd)
	if err != nil {
		return scsi.Result{}, fmt.Errorf("%s: %w", d.path, err)
	}
	// Copies we own, so the kernel never reads a caller's slice that
	// could change under it (the CDB) and the sense buffer is ours.
	cdb := append([]byte(nil), cmd.CDB...)
	sense := make([]byte, senseBufferLen)
	h.cmdp = unsafe.Pointer(&cdb[0])
	h.sbp = unsafe.Pointer(&sense[0])
	if len(cmd.Data) > 0 {
		h.dxferp = unsafe.Pointer(&cmd.Data[0])
	}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), ioctlSGIO, uintptr(unsafe.Pointer(h)))
	// The kernel holds the buffers' addresses until the ioctl returns.
	runtime.KeepAlive(cdb)
	runtime.KeepAlive(sense)
	runtime.KeepAlive(cmd.Data)
	runtime.KeepAlive(h)
	if e != 0 {
		return scsi.Result{}, fmt.Errorf("%s: SG_IO opcode %#02x: %w", d.path, cmd.CDB[0], e)
	}
	res := scsi.Result{Status: h.status, Residual: int(h.resid)}
	if n := int(h.sbLenWr); n > 0 {
		res.Sense = sense[:min(n, len(sense))]
	}
	if err := transportError(h.hostStatus, h.driverStatus); err != nil {
		return res, fmt.Errorf("%s: opcode %#02x: %w", d.path, cmd.CDB[0], err)
	}
	return res, nil
}

// header checks the command and fills everything but the buffer pointers.
func (d *Device) header(ctx context.Context, cmd *scsi.Command) (*sgIOHdr, error) {
	if n := len(cmd.CDB); n == 0 || n > maxCDBLen {
		return nil, fmt.Errorf("CDB of %d bytes (want 1..%d)", n, maxCDBLen)
	}
	h := &sgIOHdr{interfaceID: sgInterfaceID, cmdLen: uint8(len(cmd.CDB)), mxSbLen: senseBufferLen}
	switch cmd.Dir {
	case scsi.None:
		if len(cmd.Data) != 0 {
			return nil, fmt.Errorf("opcode %#02x: %d data bytes with no transfer direction", cmd.CDB[0], len(cmd.Data))
		}
		h.dxferDirection = sgDxferNone
	case scsi.FromDevice, scsi.ToDevice:
		if len(cmd.Data) == 0 {
			return nil, fmt.Errorf("opcode %#02x: a data transfer with an empty buffer", cmd.CDB[0])
		}
		if uint64(len(cmd.Data)) > 1<<32-1 {
			return nil, fmt.Errorf("opcode %#02x: transfer of %d bytes is too large", cmd.CDB[0], len(cmd.Data))
		}
		h.dxferDirection = sgDxferFromDev
		if cmd.Dir == scsi.ToDevice {
			h.dxferDirection = sgDxferToDev
		}
		h.dxferLen = uint32(len(cmd.Data))
	default:
		return nil, fmt.Errorf("opcode %#02x: unknown direction %d", cmd.CDB[0], cmd.Dir)
	}
	h.timeout = timeoutMillis(ctx, cmd.Timeout, d.timeout)
	return h, nil
}

// timeoutMillis is the command's timeout, or the device default, cut to
// the context's deadline; at least one millisecond (zero would mean the
// kernel's default).
func timeoutMillis(ctx context.Context, cmd, def time.Duration) uint32 {
	t := cmd
	if t <= 0 {
		t = def
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t {
			t = left
		}
	}
	ms := t.Milliseconds()
	switch {
	case ms < 1:
		return 1
	case ms > maxTimeoutMillis:
		return maxTimeoutMillis
	}
	return uint32(ms)
}

// Close releases the node.
func (d *Device) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", d.path, err)
	}
	return nil
}

// ErrTimeout is wrapped by the error of a command that ran out of time in
// the kernel or the host adapter: the device's state is unknown.
var ErrTimeout = errors.New("command timed out")

// TransportError is a failure below the SCSI status: the host adapter or
// the kernel could not deliver the command or lost its outcome.
type TransportError struct {
	Host   uint16 // sg_io_hdr host_status, a DID_* code
	Driver uint16 // sg_io_hdr driver_status, a DRIVER_* code
}

func (e *TransportError) Error() string {
	switch {
	case e.Host != 0 && e.Driver&driverStatusMask != 0 && e.Driver&driverStatusMask != driverStatusSense:
		return fmt.Sprintf("host adapter: %s; driver: %s", hostStatusText(e.Host), driverStatusText(e.Driver))
	case e.Host != 0:
		return "host adapter: " + hostStatusText(e.Host)
	}
	return "driver: " + driverStatusText(e.Driver)
}

// Is lets errors.Is(err, ErrTimeout) match a timeout reported either way.
func (e *TransportError) Is(target error) bool {
	return target == ErrTimeout && (e.Host == didTimeOut || e.Driver&driverStatusMask == driverStatusTimout)
}

// transportError is nil when the host adapter and the driver delivered the
// command; the SCSI status and sense then tell its outcome. DRIVER_SENSE
// only says sense data came back, which the Result carries.
func transportError(host, driver uint16) error {
	d := driver & driverStatusMask
	if host == 0 && (d == 0 || d == driverStatusSense) {
		return nil
	}
	return &TransportError{Host: host, Driver: driver}
}

// Linux <scsi/scsi_status.h> host bytes.
const (
	didTimeOut = 0x03
)

var hostStatusNames = map[uint16]string{
	0x01:       "DID_NO_CONNECT: no connection to the device",
	0x02:       "DID_BUS_BUSY: bus busy",
	didTimeOut: "DID_TIME_OUT: command timed out",
	0x04:       "DID_BAD_TARGET: no such target",
	0x05:       "DID_ABORT: command aborted",
	0x06:       "DID_PARITY: parity error",
	0x07:       "DID_ERROR: host adapter internal error",
	0x08:       "DID_RESET: bus reset",
	0x09:       "DID_BAD_INTR: unexpected interrupt",
	0x0a:       "DID_PASSTHROUGH",
	0x0b:       "DID_SOFT_ERROR: retryable host adapter error",
	0x0c:       "DID_IMM_RETRY: retry at once",
	0x0d:       "DID_REQUEUE: requeue",
	0x0e:       "DID_TRANSPORT_DISRUPTED: transport disrupted",
	0x0f:       "DID_TRANSPORT_FAILFAST: transport failed fast",
	0x10:       "DID_TARGET_FAILURE: permanent target failure",
	0x11:       "DID_NEXUS_FAILURE: permanent nexus failure",
	0x12:       "DID_ALLOC_FAILURE: space allocation failed",
	0x13:       "DID_MEDIUM_ERROR: medium error",
	0x14:       "DID_TRANSPORT_MARGINAL: transport marginal",
}

var driverStatusNames = map[uint16]string{
	0x01:               "DRIVER_BUSY",
	0x02:               "DRIVER_SOFT",
	0x03:               "DRIVER_MEDIA",
	0x04:               "DRIVER_ERROR",
	0x05:               "DRIVER_INVALID",
	driverStatusTimout: "DRIVER_TIMEOUT: command timed out",
	0x07:               "DRIVER_HARD",
	driverStatusSense:  "DRIVER_SENSE",
}

func hostStatusText(s uint16) string {
	if t, ok := hostStatusNames[s]; ok {
		return t
	}
	return fmt.Sprintf("host status %#02x", s)
}

func driverStatusText(s uint16) string {
	if t, ok := driverStatusNames[s&driverStatusMask]; ok {
		return t
	}
	return fmt.Sprintf("driver status %#02x", s)
}
