package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// WritableMethod is how a Writable keeps its writes apart from the snapshot.
type WritableMethod string

const (
	// Overlay: an overlayfs mount, the snapshot its lower layer, the
	// writes in an upper directory in scratch.
	Overlay WritableMethod = "overlay"
	// Clone: a clone of the snapshot (reflink where scratch's filesystem
	// allows, else a copy) in scratch.
	Clone WritableMethod = "clone"
)

// WritableOption changes how Store.Writable works.
type WritableOption func(*writableConfig)

type writableConfig struct{ noOverlay bool }

// WithoutOverlay makes Writable clone the snapshot even where it could
// mount an overlay.
func WithoutOverlay() WritableOption {
	return func(c *writableConfig) { c.noOverlay = true }
}

// Scratch entries a Writable creates (and Discard removes).
const (
	scratchTree  = "tree"
	scratchUpper = "upper"
	scratchWork  = "work"
)

// Writable is a writable tree that starts equal to a snapshot, for
// Assured Recovery: the application runs on Dir, and Discard drops all it
// wrote. The snapshot itself never changes, and cannot be released until
// Discard.
type Writable struct {
	dir     string
	scratch string
	method  WritableMethod
	mu      sync.Mutex
	lock    *os.File // nil once discarded
}

// Writable makes a writable tree of snapshot id in the directory scratch
// (created if missing; it must not already hold a Writable's entries). It
// mounts an overlay when the process may (root, and scratch on a
// filesystem overlayfs accepts as upper layer: ext4, XFS, tmpfs, btrfs);
// otherwise, or with WithoutOverlay, it clones the snapshot into scratch.
func (s *Store) Writable(ctx context.Context, id, scratch string, opts ...WritableOption) (*Writable, error) {
	var cfg writableConfig
	for _, o := range opts {
		o(&cfg)
	}
	lock, err := s.hold(id)
	if err != nil {
		return nil, err
	}
	w, err := s.writable(ctx, id, scratch, cfg)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	w.lock = lock
	return w, nil
}

func (s *Store) writable(ctx context.Context, id, scratch string, cfg writableConfig) (*Writable, error) {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, noSpace(fmt.Errorf("writable snapshot %s: create scratch %s: %w", id, scratch, err))
	}
	w := &Writable{dir: filepath.Join(scratch, scratchTree), scratch: scratch}
	if err := os.Mkdir(w.dir, 0o700); err != nil {
		return nil, noSpace(fmt.Errorf("writable snapshot %s: %w (Discard the earlier one first)", id, err))
	}
	lower := filepath.Join(s.dir, id, treeName)
	if !cfg.noOverlay {
		err := mountOverlay(lower, scratch, w.dir)
		if err == nil {
			w.method = Overlay
			return w, nil
		}
		slog.Info("snapshot: cannot mount an overlay, cloning the snapshot instead", "id", id, "scratch", scratch, "err", err)
	}
	w.method = Clone
	// The tree is made again by the copier, with the snapshot root's mode.
	if err := os.Remove(w.dir); err != nil {
		return nil, fmt.Errorf("writable snapshot %s: %w", id, err)
	}
	c := &copier{ctx: ctx, clone: &cloneChoice{}, dstRoot: w.dir, links: map[inode]string{}}
	if err := c.copyTree(lower, w.dir); err != nil {
		err = fmt.Errorf("writable snapshot %s: clone into %s: %w", id, w.dir, err)
		if rerr := removeTree(w.dir); rerr != nil {
			err = fmt.Errorf("%w (and removing the clone: %w)", err, rerr)
		}
		return nil, err
	}
	return w, nil
}

// overlayOptions make the overlay behave like the replica's own
// filesystem for the application: redirect_dir lets it rename directories
// of the snapshot (refused with EXDEV otherwise), and index keeps hard
// links shared when one of their names is written (otherwise the copy-up
// breaks them apart).
var overlayOptions = [][2]string{{"redirect_dir", "on"}, {"index", "on"}}

// mountOverlay mounts lower with upper and work directories made in
// scratch on target. The new mount API takes each directory as one
// parameter, so no path needs escaping; kernels before 6.8 lack
// "lowerdir+" and get mount(2) with the paths in one option string.
func mountOverlay(lower, scratch, target string) (err error) {
	upper, work := filepath.Join(scratch, scratchUpper), filepath.Join(scratch, scratchWork)
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return noSpace(fmt.Errorf("create %s: %w", d, err))
		}
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(upper)
			_ = os.RemoveAll(work)
		}
	}()
	// The root of an overlay takes its owner, mode, times and attributes
	// from the upper directory, which must therefore start as the
	// snapshot's root.
	if err := copyRootMeta(lower, upper); err != nil {
		return err
	}
	err = mountOverlayFsconfig(lower, upper, work, target)
	if !errors.Is(err, errOldKernel) {
		return err
	}
	for _, p := range []string{lower, upper, work} {
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("mount overlay on %s: path %q has a character mount(2) options cannot hold", target, p)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	for _, kv := range overlayOptions {
		opts += "," + kv[0] + "=" + kv[1]
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

func copyRootMeta(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("open %s: %w", from, err)
	}
	defer src.Close()
	dst, err := os.Open(to)
	if err != nil {
		return fmt.Errorf("open %s: %w", to, err)
	}
	defer dst.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", from, err)
	}
	c := &copier{owners: os.Geteuid() == 0}
	if err := c.setMeta(int(src.Fd()), int(dst.Fd()), &st, to); err != nil {
		return noSpace(err)
	}
	return nil
}

var errOldKernel = errors.New("the kernel lacks overlay's lowerdir+ parameter")

func mountOverlayFsconfig(lower, upper, work, target string) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return errOldKernel
	}
	if err != nil {
		return fmt.Errorf("mount overlay on %s: fsopen: %w", target, err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "lowerdir+", lower); errors.Is(err, unix.EINVAL) {
		return errOldKernel
	} else if err != nil {
		return fmt.Errorf("mount overlay on %s: lower %s: %w", target, lower, err)
	}
	if err := unix.FsconfigSetString(fsfd, "upperdir", upper); err != nil {
		return fmt.Errorf("mount overlay on %s: upper %s: %w", target, upper, err)
	}
	if err := unix.FsconfigSetString(fsfd, "workdir", work); err != nil {
		return fmt.Errorf("mount overlay on %s: work %s: %w", target, work, err)
	}
	for _, kv := range overlayOptions {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return fmt.Errorf("mount overlay on %s: %s=%s: %w", target, kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mount overlay on %s: fsmount: %w", target, err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount overlay on %s: move_mount: %w", target, err)
	}
	return nil
}

// Dir is the writable tree.
func (w *Writable) Dir() string { return w.dir }

// Method says whether Dir is an overlay mount or a clone.
func (w *Writable) Method() WritableMethod { return w.method }

// Discard removes every write (and the scratch entries the Writable made)
// and lets the snapshot be released again. An overlay that is still in use
// (a process has a file open or its working directory in it) is not
// detached lazily: Discard fails with EBUSY and can be called again once
// the application is stopped.
func (w *Writable) Discard() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lock == nil {
		return nil
	}
	if w.method == Overlay {
		if err := unix.Unmount(w.dir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("discard writable snapshot: unmount %s: %w", w.dir, err)
		}
		// EINVAL: not mounted any more (an earlier Discard unmounted it
		// and then failed to remove the scratch entries).
	}
	for _, name := range []string{scratchTree, scratchUpper, scratchWork} {
		p := filepath.Join(w.scratch, name)
		if err := removeTree(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("discard writable snapshot: %w", err)
		}
	}
	err := w.lock.Close()
	w.lock = nil
	if err != nil {
		return fmt.Errorf("discard writable snapshot: %w", err)
	}
	return nil
}

// DiscardLeftover removes what a Writable in scratch left behind when its
// process died before Discard: the overlay stays mounted after a crash,
// and its upper layer holds what the test wrote. Call it only for scratch
// folders no live Writable uses.
func DiscardLeftover(scratch string) error {
	dir := filepath.Join(scratch, scratchTree)
	if err := unix.Unmount(dir, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("discard leftover writable snapshot: unmount %s: %w", dir, err)
	}
	if err := removeTree(scratch); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("discard leftover writable snapshot: %w", err)
	}
	return nil
}
