//go:build linux

// Package guest is the inside half of the lab (tools/lab): the helpers a
// uinit program booted in the lab's qemu guest calls to load the SCSI
// modules, wait for the library's devices, print machine-readable records
// on the serial console and power off. The host half parses those records
// with lab.ParseSerial.
package guest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/drivers/scsi/sgio"
)

// ModuleDir holds the kernel modules the host packed into the initramfs,
// with order.txt naming them in load order. It is not /lib/modules, where
// u-root's init would try to load them on its own.
const ModuleDir = "/lab/modules"

// Line prefixes on the serial console; lab.ParseSerial reads them.
const (
	BootPrefix   = "LAB-BOOT"
	RecordPrefix = "LAB"
	EndPrefix    = "LAB-END"
)

// Report prints records on the console, one line each.
type Report struct{}

// Record prints `LAB <key> <json of v>`. Keys are single words.
func (r *Report) Record(key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(fmt.Sprintf("cannot encode %T: %v", v, err))
	}
	fmt.Printf("%s %s %s\n", RecordPrefix, key, b)
}

// Main runs the guest program and powers the machine off; it never
// returns, because a uinit that returns makes u-root's init exit and the
// kernel panic. The run gets a context bounded by timeout.
func Main(timeout time.Duration, run func(ctx context.Context, r *Report) error) {
	up, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("%s uptime=%s\n", BootPrefix, strings.Fields(string(up) + " ?")[0])
	err := loadModules()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err = runSafely(ctx, run)
		cancel()
	}
	if err != nil {
		msg, _ := json.Marshal(err.Error())
		fmt.Printf("%s fail %s\n", EndPrefix, msg)
	} else {
		fmt.Printf("%s ok\n", EndPrefix)
	}
	unix.Sync()
	for {
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			fmt.Printf("power off: %v\n", err)
		}
		time.Sleep(time.Second)
	}
}

func runSafely(ctx context.Context, run func(ctx context.Context, r *Report) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return run(ctx, &Report{})
}

// loadModules inserts the modules listed in ModuleDir/order.txt with
// finit_module; a module already in the kernel is fine.
func loadModules() error {
	order, err := os.ReadFile(filepath.Join(ModuleDir, "order.txt"))
	if os.IsNotExist(err) {
		return nil // a guest without modules
	}
	if err != nil {
		return fmt.Errorf("read module order: %w", err)
	}
	for _, name := range strings.Fields(string(order)) {
		if err := loadModule(filepath.Join(ModuleDir, name)); err != nil {
			return err
		}
	}
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && err != unix.EEXIST {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// WaitDevices polls sysfs until ready accepts the SCSI generic devices
// found (the kernel scans the bus asynchronously after the modules load)
// and their /dev nodes exist.
func WaitDevices(ctx context.Context, ready func([]sgio.Info) bool) ([]sgio.Info, error) {
	for {
		devs, err := sgio.Discover("/sys")
		if err != nil {
			return nil, fmt.Errorf("wait for SCSI devices: %w", err)
		}
		if ready(devs) && nodesExist(devs) {
			return devs, nil
		}
		select {
		case <-ctx.Done():
			return devs, fmt.Errorf("wait for SCSI devices: %d found: %w", len(devs), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func nodesExist(devs []sgio.Info) bool {
	for _, d := range devs {
		if _, err := os.Stat(d.Path); err != nil {
			return false
		}
		if d.TapeNode != "" {
			if _, err := os.Stat(d.TapeNode); err != nil {
				return false
			}
		}
	}
	return true
}

// Library counts the changers and tape drives among devs, for WaitDevices.
func Library(changers, drives int) func([]sgio.Info) bool {
	return func(devs []sgio.Info) bool {
		c, d := 0, 0
		for _, x := range devs {
			switch x.Type {
			case sgio.TypeChanger:
				c++
			case sgio.TypeTape:
				if x.TapeNode != "" {
					d++
				}
			}
		}
		return c >= changers && d >= drives
	}
}
