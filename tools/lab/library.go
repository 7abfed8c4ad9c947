package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// LibraryConfig shapes the tgt library. The zero value gives the lab's
// standard library: two IBM LTO-6 drives at LUNs 1 and 2 (element
// addresses 2 and 3), an STK L700 changer at LUN 3 with a picker at 1,
// ten slots from 1000 holding six tapes E00001L6..E00006L6, and two mail
// slots from 1100.
type LibraryConfig struct {
	Drives    int      // default 2
	Slots     int      // default 10
	Tapes     []string // barcodes (at most 10 characters), loaded into slots from 1000; default six
	MailSlots int      // default 2
	TapeMB    int      // capacity of each tape; default 64 (thin-provisioned)
}

// Element addresses of the standard layout.
const (
	PickerAddress    = 1
	FirstDriveAddr   = 2
	FirstSlotAddress = 1000
	FirstMailAddress = 1100
)

func (c LibraryConfig) withDefaults() LibraryConfig {
	if c.Drives == 0 {
		c.Drives = 2
	}
	if c.Slots == 0 {
		c.Slots = 10
	}
	if c.Tapes == nil {
		for i := 1; i <= 6; i++ {
			c.Tapes = append(c.Tapes, fmt.Sprintf("E%05dL6", i))
		}
	}
	if c.MailSlots == 0 {
		c.MailSlots = 2
	}
	if c.TapeMB == 0 {
		c.TapeMB = 64
	}
	return c
}

// Library is a running tgtd exporting one iSCSI target on 127.0.0.1.
type Library struct {
	Config  LibraryConfig
	Dir     string // media_home: one file per tape, named by its barcode
	IQN     string
	Portal  string // 127.0.0.1:port
	control int    // tgtd's control socket number (-C)
	cmd     *exec.Cmd
	exited  chan struct{} // closed when tgtd has exited
	waitErr error         // tgtd's exit, valid once exited is closed
}

// ChangerLUN is the changer's LUN; the drives are LUNs 1..Drives.
func (l *Library) ChangerLUN() int { return l.Config.Drives + 1 }

// StartLibrary starts a fresh tgtd (the lab saw one crash after a killed
// session, so none is shared between runs) with media under dir, on a
// free port and control socket so concurrent labs do not meet.
func StartLibrary(ctx context.Context, dir string, cfg LibraryConfig) (*Library, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Tapes) > cfg.Slots {
		return nil, fmt.Errorf("library: %d tapes for %d slots", len(cfg.Tapes), cfg.Slots)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	l := &Library{
		Config: cfg, Dir: dir, IQN: "iqn.2024-01.holdfast.lab:lib1",
		Portal: fmt.Sprintf("127.0.0.1:%d", port), control: controlNumber(),
		exited: make(chan struct{}),
	}
	if err := l.makeMedia(ctx); err != nil {
		return nil, err
	}
	l.cmd = exec.Command("tgtd", "-f", "-C", strconv.Itoa(l.control), "--iscsi", "portal="+l.Portal)
	log, err := os.Create(filepath.Join(dir, "tgtd.log"))
	if err != nil {
		return nil, fmt.Errorf("library: %w", err)
	}
	defer log.Close()
	l.cmd.Stdout, l.cmd.Stderr = log, log
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("library: start tgtd: %w", err)
	}
	go func() { l.waitErr = l.cmd.Wait(); close(l.exited) }()
	if err := l.configure(ctx); err != nil {
		l.Stop()
		return nil, err
	}
	return l, nil
}

// controlNumber picks tgtd's control socket number (-C, which tgtd
// bounds well below 65536) among those no other tgtd here uses.
func controlNumber() int {
	for {
		n := 100 + rand.IntN(900)
		if _, err := os.Stat(fmt.Sprintf("/var/run/tgtd/socket.%d", n)); errors.Is(err, os.ErrNotExist) {
			return n
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("library: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (l *Library) makeMedia(ctx context.Context) error {
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return fmt.Errorf("library: %w", err)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, "smc"), make([]byte, 1024), 0o644); err != nil {
		return fmt.Errorf("library: changer backing file: %w", err)
	}
	// tgt wants a backing file for each tape LUN, even an empty drive.
	for d := 1; d <= l.Config.Drives; d++ {
		if err := run(ctx, "tgtimg", "--op", "new", "--device-type", "tape", "--barcode", "", "--size", "1",
			"--type", "clean", "--file", filepath.Join(l.Dir, fmt.Sprintf("notape%d", d))); err != nil {
			return fmt.Errorf("library: %w", err)
		}
	}
	for _, bc := range l.Config.Tapes {
		if err := run(ctx, "tgtimg", "--op", "new", "--device-type", "tape", "--barcode", bc,
			"--size", strconv.Itoa(l.Config.TapeMB), "--type", "data", "--file", filepath.Join(l.Dir, bc),
			"--thin-provisioning"); err != nil {
			return fmt.Errorf("library: tape %s: %w", bc, err)
		}
	}
	return nil
}

func (l *Library) configure(ctx context.Context) error {
	adm := func(args ...string) error {
		return run(ctx, "tgtadm", append([]string{"-C", strconv.Itoa(l.control), "--lld", "iscsi"}, args...)...)
	}
	var err error
	for range 50 { // tgtd takes a moment to open its control socket
		if err = adm("--op", "show", "--mode", "target"); err == nil {
			break
		}
		select {
		case <-l.exited:
			log, _ := os.ReadFile(filepath.Join(l.Dir, "tgtd.log"))
			return fmt.Errorf("library: tgtd exited: %v: %s", l.waitErr, log)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("library: tgtd not answering: %w", err)
	}
	c := l.Config
	lu := func(lun int, params string) error {
		return adm("--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", strconv.Itoa(lun), "--params", params)
	}
	steps := []func() error{func() error { return adm("--op", "new", "--mode", "target", "--tid", "1", "-T", l.IQN) }}
	for d := 1; d <= c.Drives; d++ {
		steps = append(steps,
			func() error {
				return adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", strconv.Itoa(d),
					"-b", filepath.Join(l.Dir, fmt.Sprintf("notape%d", d)), "--device-type", "tape")
			},
			func() error {
				return lu(d, fmt.Sprintf("vendor_id=IBM,product_id=ULT3580-TD6,product_rev=G350,scsi_sn=DRV%05d,removable=1", d))
			},
			func() error { return lu(d, "online=0") }, // no tape loaded
		)
	}
	cl := l.ChangerLUN()
	steps = append(steps,
		func() error {
			return adm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", strconv.Itoa(cl),
				"-b", filepath.Join(l.Dir, "smc"), "--device-type", "changer")
		},
		func() error {
			return lu(cl, "vendor_id=STK,product_id=L700,product_rev=0104,scsi_sn=LIB00001,removable=1")
		},
		func() error { return lu(cl, "media_home="+l.Dir) },
		func() error { return lu(cl, fmt.Sprintf("element_type=1,start_address=%d,quantity=1", PickerAddress)) },
		func() error {
			return lu(cl, fmt.Sprintf("element_type=4,start_address=%d,quantity=%d", FirstDriveAddr, c.Drives))
		},
	)
	for d := 1; d <= c.Drives; d++ {
		steps = append(steps, func() error {
			return lu(cl, fmt.Sprintf("element_type=4,address=%d,tid=1,lun=%d", FirstDriveAddr+d-1, d))
		})
	}
	steps = append(steps, func() error {
		return lu(cl, fmt.Sprintf("element_type=2,start_address=%d,quantity=%d", FirstSlotAddress, c.Slots))
	})
	for i, bc := range c.Tapes {
		steps = append(steps, func() error {
			return lu(cl, fmt.Sprintf("element_type=2,address=%d,barcode=%s,sides=1", FirstSlotAddress+i, bc))
		})
	}
	steps = append(steps,
		func() error {
			return lu(cl, fmt.Sprintf("element_type=3,start_address=%d,quantity=%d", FirstMailAddress, c.MailSlots))
		},
		func() error { return adm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL") },
	)
	for _, s := range steps {
		if err := s(); err != nil {
			return fmt.Errorf("library: configure: %w", err)
		}
	}
	return nil
}

// Stop kills this tgtd (by its pid, never by name) and removes its
// control socket. A tgtd that already died is reported: a crash during a
// test is a finding.
func (l *Library) Stop() error {
	var crashed error
	select {
	case <-l.exited:
		crashed = fmt.Errorf("library: tgtd had exited: %v (see %s/tgtd.log)", l.waitErr, l.Dir)
	default:
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-l.exited:
		case <-time.After(3 * time.Second):
			_ = l.cmd.Process.Kill()
			<-l.exited
		}
	}
	for _, suffix := range []string{"", ".lock"} {
		p := fmt.Sprintf("/var/run/tgtd/socket.%d%s", l.control, suffix)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("library: %w", err)
		}
	}
	return crashed
}

// QemuArgs attaches the drives and the changer to a virtio-scsi bus as
// SCSI pass-through devices over qemu's own iSCSI initiator, at target 0
// with the same LUNs as in tgt.
func (l *Library) QemuArgs() []string {
	args := []string{"-device", "virtio-scsi-pci,id=scsi0"}
	for lun := 1; lun <= l.ChangerLUN(); lun++ {
		id := fmt.Sprintf("lun%d", lun)
		args = append(args,
			"-drive", fmt.Sprintf("if=none,id=%s,format=raw,file=iscsi://%s/%s/%d", id, l.Portal, l.IQN, lun),
			"-device", fmt.Sprintf("scsi-generic,drive=%s,bus=scsi0.0,channel=0,scsi-id=0,lun=%d", id, lun))
	}
	return args
}

func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}
