// Package lab runs Holdfast code against a tape library nobody here
// wrote: it starts Debian's tgt as an iSCSI changer with tape drives on
// 127.0.0.1 (Library), packs a Go program from this module into a u-root
// initramfs with the kernel's SCSI modules (BuildInitramfs), boots it
// under qemu with the library's LUNs passed through as real SCSI devices
// (Boot), and reads what the program printed (ParseSerial). The host
// kernel has no SCSI, so this guest is the only place SG_IO runs; the
// program inside uses tools/lab/guest.
package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Tools the lab runs, all from Debian packages (tools/install-deps.sh
// test): tgt, qemu-system-x86, qemu-block-extra (qemu's iSCSI driver),
// kmod, linux-image-amd64.
var tools = []string{"tgtd", "tgtadm", "tgtimg", "qemu-system-x86_64", "modprobe", "timeout"}

// Missing lists what the lab needs and this machine lacks.
func Missing() []string {
	var miss []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	if _, err := Kernel(); err != nil {
		miss = append(miss, err.Error())
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"); err != nil {
		miss = append(miss, "qemu iSCSI block driver (qemu-block-extra)")
	}
	if os.Geteuid() != 0 {
		miss = append(miss, "root (tgtd needs it)")
	}
	return miss
}

// Require skips the test when the lab cannot run here, except under CI
// (CI=true), where the lab is required and its absence fails the test.
func Require(tb testing.TB) {
	tb.Helper()
	miss := Missing()
	if len(miss) == 0 {
		return
	}
	msg := "lab needs " + strings.Join(miss, ", ") + " (bash tools/install-deps.sh test)"
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// KernelImage is a bootable kernel and its module tree.
type KernelImage struct {
	Path    string // /boot/vmlinuz-<release>
	Release string
}

// Kernel finds the newest Debian kernel in /boot with its modules.
func Kernel() (KernelImage, error) {
	imgs, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(imgs)
	for i := len(imgs) - 1; i >= 0; i-- {
		rel := strings.TrimPrefix(filepath.Base(imgs[i]), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", rel, "modules.dep")); err == nil {
			return KernelImage{Path: imgs[i], Release: rel}, nil
		}
	}
	return KernelImage{}, fmt.Errorf("a kernel in /boot with modules (linux-image-amd64)")
}
