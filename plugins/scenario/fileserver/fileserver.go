// Package fileserver is the scenario handler for plain file servers: a
// scenario protects directory trees, and its entities are the volumes (file
// systems) those trees live on, so a backup or a restore can work volume by
// volume.
//
// The handler runs in the holdfast-fileserver plugin binary
// (cmd/holdfast-fileserver), out of holdfastd's process, like a partner's
// plugin would. For now the master is the machine the plugin runs on: roots
// are read through the local file system and /proc/self/mountinfo. Remote
// masters will be reached through the Holdfast agent later; only this
// package's file-system access will change then, not its contract.
package fileserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/appliance/version"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Type is the scenario type this handler serves.
const Type = "fileserver"

// EntityKind is the kind of every entity it lists.
const EntityKind = "volume"

// Handler implements sdk.ScenarioHandler for file servers.
type Handler struct {
	mu    sync.Mutex
	holds map[string]hold

	// Seams for tests: where mount information is read from, and how a file
	// is opened for Verify (so a test running as root can still make a file
	// unreadable).
	mountInfoPath string
	open          func(name string) (io.ReadCloser, error)
}

type hold struct {
	scenario uint64
	entity   string
	since    time.Time
}

// New returns a file server handler.
func New() *Handler {
	return &Handler{
		holds:         map[string]hold{},
		mountInfoPath: "/proc/self/mountinfo",
		open:          func(name string) (io.ReadCloser, error) { return os.Open(name) },
	}
}

var _ sdk.ScenarioHandler = (*Handler)(nil)

// Describe implements sdk.ScenarioHandler.
func (h *Handler) Describe(context.Context) (sdk.ScenarioInfo, error) {
	return sdk.ScenarioInfo{
		Type:        Type,
		DisplayName: "File Server",
		Version:     version.Version,
		EntityKind:  EntityKind,
		// Files can be restored one by one, and Verify reads a snapshot back.
		Capabilities: []string{sdk.CapabilityGranularRestore, sdk.CapabilityAssuredRecovery},
	}, nil
}

// ListEntities implements sdk.ScenarioHandler: one entity per volume that
// holds at least one of cfg's roots, named after the volume's mount point.
// Options are not used by this handler.
func (h *Handler) ListEntities(_ context.Context, cfg sdk.ScenarioConfig) ([]sdk.Entity, error) {
	if len(cfg.Roots) == 0 {
		return nil, errors.New("the scenario has no roots")
	}
	mounts, err := readMountInfo(h.mountInfoPath)
	if err != nil {
		return nil, err
	}
	type volume struct {
		dev   uint64
		mount mount
		roots []string
	}
	byDev := map[uint64]*volume{}
	var order []*volume
	for _, r := range cfg.Roots {
		root, dev, err := checkRoot(r)
		if err != nil {
			return nil, err
		}
		v := byDev[dev]
		if v == nil {
			// Symlinks are resolved to find the mount the data is really on.
			real, err := filepath.EvalSymlinks(root)
			if err != nil {
				return nil, fmt.Errorf("root %s: %w", root, err)
			}
			m, ok := mountOf(mounts, real)
			if !ok {
				return nil, fmt.Errorf("root %s: no mount in %s contains it", root, h.mountInfoPath)
			}
			v = &volume{dev: dev, mount: m}
			byDev[dev] = v
			order = append(order, v)
		}
		if !slices.Contains(v.roots, root) {
			v.roots = append(v.roots, root)
		}
	}
	names := map[string]int{}
	for _, v := range order {
		names[v.mount.point]++
	}
	ents := make([]sdk.Entity, 0, len(order))
	for _, v := range order {
		dev := fmt.Sprintf("%d:%d", unix.Major(v.dev), unix.Minor(v.dev))
		name := v.mount.point
		if names[name] > 1 {
			// Two file systems seen under one mount point (btrfs subvolumes
			// without mounts of their own): the device keeps names unique.
			name += " (device " + dev + ")"
		}
		ents = append(ents, sdk.Entity{
			Name:  name,
			Kind:  EntityKind,
			Paths: v.roots,
			Detail: map[string]string{
				"device":     dev,
				"fstype":     v.mount.fstype,
				"mountpoint": v.mount.point,
				"source":     v.mount.source,
			},
		})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	return ents, nil
}

// checkRoot returns the clean form of root and the device it is on.
func checkRoot(r string) (string, uint64, error) {
	if !filepath.IsAbs(r) {
		return "", 0, fmt.Errorf("root %q is not an absolute path", r)
	}
	root := filepath.Clean(r)
	fi, err := os.Stat(root)
	if err != nil {
		return "", 0, fmt.Errorf("root %s: %w", root, unwrapPath(err))
	}
	if !fi.IsDir() {
		return "", 0, fmt.Errorf("root %s is not a directory", root)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", 0, fmt.Errorf("root %s: no device number available", root)
	}
	return root, uint64(st.Dev), nil
}

// PrepareBackup implements sdk.ScenarioHandler. A file server has no
// application to quiesce, so the copy is crash-consistent; the hold only
// records that a backup of the entity is under way, so that ReleaseBackup
// can tell a stale or mistyped hold id from a real one.
func (h *Handler) PrepareBackup(ctx context.Context, cfg sdk.ScenarioConfig, entity string) (sdk.PrepareResult, error) {
	ents, err := h.ListEntities(ctx, cfg)
	if err != nil {
		return sdk.PrepareResult{}, err
	}
	var ent *sdk.Entity
	names := make([]string, 0, len(ents))
	for i := range ents {
		names = append(names, ents[i].Name)
		if ents[i].Name == entity {
			ent = &ents[i]
		}
	}
	if ent == nil {
		return sdk.PrepareResult{}, fmt.Errorf("scenario %s has no entity %q (entities: %s)", cfg.Name, entity, strings.Join(names, ", "))
	}
	for _, p := range ent.Paths {
		if err := checkReadable(p); err != nil {
			return sdk.PrepareResult{}, err
		}
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return sdk.PrepareResult{}, fmt.Errorf("make hold id: %w", err)
	}
	id := "fs-" + hex.EncodeToString(b[:])
	h.mu.Lock()
	h.holds[id] = hold{scenario: cfg.ID, entity: entity, since: time.Now()}
	h.mu.Unlock()
	return sdk.PrepareResult{HoldID: id, Consistency: sdk.ConsistencyCrash}, nil
}

// checkReadable opens the directory and reads one entry: permission to list
// it is what a backup needs first.
func checkReadable(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("root %s is not readable: %w", dir, unwrapPath(err))
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("root %s cannot be listed: %w", dir, unwrapPath(err))
	}
	return nil
}

// ReleaseBackup implements sdk.ScenarioHandler.
func (h *Handler) ReleaseBackup(_ context.Context, holdID string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.holds[holdID]; !ok {
		return fmt.Errorf("no backup hold %q (already released, or made before the plugin restarted)", holdID)
	}
	delete(h.holds, holdID)
	return nil
}

// Verify implements sdk.ScenarioHandler: it reads every regular file under
// req.Root to the end. A file server's data is usable when every file can be
// read; there is no application-level check to add. Symbolic links and
// special files are not followed or opened.
func (h *Handler) Verify(ctx context.Context, req sdk.VerifyRequest) (sdk.VerifyResult, error) {
	if !filepath.IsAbs(req.Root) {
		return sdk.VerifyResult{}, fmt.Errorf("verify root %q is not an absolute path", req.Root)
	}
	root := filepath.Clean(req.Root)
	fi, err := os.Stat(root)
	if err != nil {
		return sdk.VerifyResult{}, fmt.Errorf("verify root %s: %w", root, unwrapPath(err))
	}
	if !fi.IsDir() {
		return sdk.VerifyResult{}, fmt.Errorf("verify root %s is not a directory", root)
	}
	start := time.Now()
	var res sdk.VerifyResult
	var problems problemList
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, walkErr error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if walkErr != nil {
			// An unreadable directory: report it and carry on with the rest.
			problems.add(root, p, walkErr)
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		res.Checked++
		if err := h.readAll(p); err != nil {
			problems.add(root, p, err)
		}
		return nil
	})
	if err != nil {
		return sdk.VerifyResult{}, fmt.Errorf("verify %s: %w", root, err)
	}
	res.Problems = problems.list()
	res.Passed = len(res.Problems) == 0
	res.Duration = time.Since(start)
	return res, nil
}

func (h *Handler) readAll(name string) error {
	f, err := h.open(name)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// problemList keeps the first sdk.MaxProblems-1 problems and counts the rest,
// so a badly damaged snapshot still yields a valid reply.
type problemList struct {
	items []string
	more  int
}

func (l *problemList) add(root, p string, err error) {
	if len(l.items) >= sdk.MaxProblems-1 {
		l.more++
		return
	}
	rel, rerr := filepath.Rel(root, p)
	if rerr != nil {
		rel = p
	}
	// File names may hold any byte but a slash and NUL; quote the odd ones so
	// the problem stays one printable line.
	if sdk.SanitizeText(rel, len(rel)+1) != rel {
		rel = fmt.Sprintf("%q", rel)
	}
	l.items = append(l.items, sdk.SanitizeText(fmt.Sprintf("%s: %v", rel, unwrapPath(err)), sdk.MaxProblemLen))
}

func (l *problemList) list() []string {
	if l.more > 0 {
		return append(l.items, fmt.Sprintf("... and %d more problems", l.more))
	}
	return l.items
}

// BeforeRestore implements sdk.ScenarioHandler: the destination must be an
// absolute path that exists as a writable directory, or that can be created
// because its nearest existing ancestor is a writable directory, on a file
// system with free space and free inodes. It does not create anything: the
// restore itself does, so a check that fails leaves no trace.
func (h *Handler) BeforeRestore(_ context.Context, req sdk.RestoreRequest) error {
	dest := req.Destination
	if dest == "" {
		return errors.New("restore destination is empty")
	}
	if !filepath.IsAbs(dest) {
		return fmt.Errorf("restore destination %q is not an absolute path", dest)
	}
	dest = filepath.Clean(dest)
	existing := dest
	var fi os.FileInfo
	for {
		var err error
		fi, err = os.Stat(existing)
		if err == nil {
			break
		}
		// ENOTDIR: a file where a folder should be; the walk up finds it.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("restore destination %s: cannot check %s: %w", dest, existing, unwrapPath(err))
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			return fmt.Errorf("restore destination %s: no part of the path exists", dest)
		}
		existing = parent
	}
	if !fi.IsDir() {
		if existing == dest {
			return fmt.Errorf("restore destination %s exists and is not a directory", dest)
		}
		return fmt.Errorf("restore destination %s cannot be created: %s is not a directory", dest, existing)
	}
	if err := unix.Access(existing, unix.W_OK|unix.X_OK); err != nil {
		if existing == dest {
			return fmt.Errorf("restore destination %s is not writable: %w", dest, err)
		}
		return fmt.Errorf("restore destination %s cannot be created: %s is not writable: %w", dest, existing, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		return fmt.Errorf("restore destination %s: cannot read free space of %s: %w", dest, existing, err)
	}
	if st.Bavail == 0 {
		return fmt.Errorf("restore destination %s: the file system holding %s has no free space", dest, existing)
	}
	if st.Files > 0 && st.Ffree == 0 {
		return fmt.Errorf("restore destination %s: the file system holding %s has no free inodes", dest, existing)
	}
	return nil
}

// AfterRestore implements sdk.ScenarioHandler. Restored files are usable as
// soon as they are written: there is no application to restart, no index to
// rebuild, and ownership and permissions are set by the restore itself. It
// succeeds so that restore jobs do not depend on which handler they use.
func (h *Handler) AfterRestore(context.Context, sdk.RestoreRequest) error {
	return nil
}

// unwrapPath drops the path from a *fs.PathError whose path the caller
// already names, keeping the operation and the cause.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
