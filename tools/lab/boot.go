package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/tools/lab/guest"
)

// BootConfig says what to boot.
type BootConfig struct {
	Kernel    KernelImage
	Initramfs string
	Library   *Library // nil: no SCSI devices
	// Timeout bounds the whole boot; default 120 s. qemu runs under
	// timeout(1) as well, so it dies even if this process does.
	Timeout time.Duration
	Log     io.Writer // a copy of the console with host timestamps; optional
}

// Boot is one finished boot.
type Boot struct {
	Serial []byte
	// ToGuest is the host time from starting qemu to the guest program's
	// first line; Total until qemu exited.
	ToGuest, Total time.Duration
}

// BootGuest boots the kernel and initramfs under qemu with TCG (there is
// no usable KVM here) and returns the serial console once the guest
// powers off.
func BootGuest(ctx context.Context, c BootConfig) (Boot, error) {
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout+10*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(c.Timeout.Seconds()))
	args := []string{"-k", "5", secs, "qemu-system-x86_64",
		"-M", "q35", "-m", "512", "-smp", "1", "-accel", "tcg", "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", c.Kernel.Path, "-initrd", c.Initramfs,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3"}
	if c.Library != nil {
		args = append(args, c.Library.QemuArgs()...)
	}
	cmd := exec.CommandContext(ctx, "timeout", args...)
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Boot{}, fmt.Errorf("boot: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Boot{}, fmt.Errorf("boot: start qemu: %w", err)
	}
	var b Boot
	var serial strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		t := time.Since(start)
		if b.ToGuest == 0 && strings.HasPrefix(line, guest.BootPrefix) {
			b.ToGuest = t
		}
		serial.WriteString(line + "\n")
		if c.Log != nil {
			fmt.Fprintf(c.Log, "[%7.2f] %s\n", t.Seconds(), line)
		}
	}
	err = cmd.Wait()
	b.Total = time.Since(start)
	b.Serial = []byte(serial.String())
	if err != nil {
		return b, fmt.Errorf("boot: qemu: %w (after %v)", err, b.Total.Round(time.Millisecond))
	}
	return b, nil
}

// RunConfig is one guest program run against a fresh library.
type RunConfig struct {
	Initramfs
	Library LibraryConfig
	Dir     string // work directory: media, initramfs, logs
	Timeout time.Duration
}

// Result is what a run left: the guest's records and where time went.
type Result struct {
	Report  Report
	Library *Library // stopped; its Dir holds the tapes as the guest left them
	Build   time.Duration
	Boot    Boot
}

// Run builds the initramfs, starts a fresh library, boots the guest and
// parses its records. The console is kept in Dir/console.log.
func Run(ctx context.Context, c RunConfig) (Result, error) {
	var r Result
	k, err := Kernel()
	if err != nil {
		return r, fmt.Errorf("lab: need %w", err)
	}
	cpio := c.Dir + "/initramfs.cpio"
	t0 := time.Now()
	if err := BuildInitramfs(ctx, cpio, k, c.Initramfs); err != nil {
		return r, err
	}
	r.Build = time.Since(t0)
	lib, err := StartLibrary(ctx, c.Dir+"/media", c.Library)
	if err != nil {
		return r, err
	}
	r.Library = lib
	log, err := os.Create(c.Dir + "/console.log")
	if err != nil {
		lib.Stop()
		return r, fmt.Errorf("lab: %w", err)
	}
	defer log.Close()
	r.Boot, err = BootGuest(ctx, BootConfig{Kernel: k, Initramfs: cpio, Library: lib, Timeout: c.Timeout, Log: log})
	if stopErr := lib.Stop(); err == nil {
		err = stopErr
	}
	if err != nil {
		return r, err
	}
	r.Report, err = ParseSerial(r.Boot.Serial)
	return r, err
}
