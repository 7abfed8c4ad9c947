package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// Modules the guest needs for the library, by name; modprobe adds their
// dependencies (virtio, scsi_mod, ...) in load order.
var Modules = []string{"virtio_pci", "virtio_scsi", "sg", "st", "ch"}

// File is one extra file to pack: Src on the host, Dst in the guest
// (relative, no leading slash).
type File struct{ Src, Dst string }

// Initramfs says what to pack.
type Initramfs struct {
	// Uinit is the Go import path of the main package u-root's init runs,
	// e.g. "github.com/holdfast/holdfast/tools/lab/sgprobe". It must call
	// guest.Main, which loads the modules and never returns.
	Uinit string
	Files []File
}

// urootDir is the small module that pins u-root (see its doc.go).
func urootDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("initramfs: cannot locate the lab's source")
	}
	dir := filepath.Join(filepath.Dir(file), "uroot")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("initramfs: u-root module: %w", err)
	}
	return dir, nil
}

// BuildInitramfs writes a u-root cpio archive to out with u-root's init,
// spec.Uinit, the kernel's modules for the library under guest.ModuleDir
// and spec.Files.
func BuildInitramfs(ctx context.Context, out string, k KernelImage, spec Initramfs) error {
	dir, err := urootDir()
	if err != nil {
		return err
	}
	work := filepath.Dir(out)
	mods, err := moduleFiles(ctx, k, work)
	if err != nil {
		return err
	}
	args := []string{"tool", "u-root", "-o", out, "-uinitcmd=" + path.Base(spec.Uinit), "-defaultsh="}
	for _, f := range append(mods, spec.Files...) {
		args = append(args, "-files", f.Src+":"+f.Dst)
	}
	args = append(args, "github.com/u-root/u-root/cmds/core/init", spec.Uinit)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	// The u-root module stands alone: no workspace, and its go.sum is
	// complete, so nothing is written back to it.
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initramfs: u-root: %w\n%s", err, log.Bytes())
	}
	return nil
}

// moduleFiles resolves Modules with their dependencies in load order and
// writes the order file the guest reads.
func moduleFiles(ctx context.Context, k KernelImage, work string) ([]File, error) {
	var files []File
	var order []string
	seen := map[string]bool{}
	for _, m := range Modules {
		out, err := exec.CommandContext(ctx, "modprobe", "-S", k.Release, "--show-depends", m).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("initramfs: modules of %s for %s: %w: %s", m, k.Release, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "insmod" || seen[f[1]] {
				continue // "builtin x" needs nothing
			}
			seen[f[1]] = true
			name := filepath.Base(f[1])
			order = append(order, name)
			files = append(files, File{Src: f[1], Dst: "lab/modules/" + name})
		}
	}
	list := filepath.Join(work, "modules-order.txt")
	if err := os.WriteFile(list, []byte(strings.Join(order, "\n")+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return append(files, File{Src: list, Dst: "lab/modules/order.txt"}), nil
}
