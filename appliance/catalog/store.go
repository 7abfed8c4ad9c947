package catalog

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// schemaVersion is the layout of keys and records this build writes. Bump it
// only for changes old builds must not read (see docs/catalog.md); adding a
// field or a key family does not need a bump.
const schemaVersion = 1

// formatVersion pins Pebble's on-disk format so that upgrading the Pebble
// module never silently ratchets the catalog to a format an older appliance
// build cannot open. TableFormatV6 brings sstable footer checksums and WAL
// sync chunks (which tell a torn WAL tail from corruption on replay).
const formatVersion = pebble.FormatTableFormatV6

// Options tunes Open. The zero value opens read-write and logs Pebble's
// messages to slog.Default.
type Options struct {
	// ReadOnly opens an existing catalog without writing to it; every write
	// returns ErrReadOnly.
	ReadOnly bool
	// Logger receives Pebble's messages: informational ones at debug level,
	// errors at error level.
	Logger *slog.Logger

	// fs replaces the real filesystem; tests use a crash-simulating one.
	fs vfs.FS
}

// Catalog is an open catalog. All methods are safe for concurrent use.
type Catalog struct {
	db       *pebble.DB
	readOnly bool

	// state is held shared by every call and exclusively by Close, so that no
	// call touches the Pebble handle after it is closed (Pebble panics then).
	state  sync.RWMutex
	closed bool

	// One lock per record family serialises "read what is there, allocate an
	// ID, check a name, commit" so that IDs are never handed out twice and
	// the scenario name index stays unique. Reads take no lock.
	scenarioMu sync.Mutex
	hostMu     sync.Mutex
	jobMu      sync.Mutex
	sessionMu  sync.Mutex
	mediaMu    sync.Mutex
	activityMu sync.Mutex
	testMu     sync.Mutex
}

// Open opens the catalog in dir, creating it if it does not exist (unless
// ReadOnly). It refuses a store written with a newer schema version than this
// build knows, and a non-empty store that is not a catalog.
func Open(dir string, opts Options) (*Catalog, error) {
	if dir == "" {
		return nil, errors.New("open catalog: empty directory name")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	popts := &pebble.Options{
		FormatMajorVersion: formatVersion,
		ReadOnly:           opts.ReadOnly,
		Logger:             pebbleLogger{logger.With("component", "catalog")},
		FS:                 opts.fs,
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", dir, err)
	}
	c := &Catalog{db: db, readOnly: opts.ReadOnly}
	if err := c.checkSchema(); err != nil {
		if cerr := db.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close after failed open: %w", cerr))
		}
		return nil, fmt.Errorf("open catalog %s: %w", dir, err)
	}
	return c, nil
}

// checkSchema validates the schema-version key, writing it into a new store.
func (c *Catalog) checkSchema() error {
	key := []byte(keySchema)
	raw, err := get(c.db, key)
	switch {
	case errors.Is(err, ErrNotFound):
		empty, err := c.isEmpty()
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("store holds data but no %s key: not a Holdfast catalog", keySchema)
		}
		if c.readOnly {
			return fmt.Errorf("store is empty (no %s key) and opened read-only", keySchema)
		}
		if err := c.db.Set(key, encodeMeta(schemaVersion), pebble.Sync); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("read schema version: %w", err)
	}
	v, err := decodeMeta(key, raw)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case v == 0:
		return corruptf(key, "schema version 0")
	case v > schemaVersion:
		return fmt.Errorf("catalog schema version %d is newer than this build supports (%d): upgrade Holdfast", v, schemaVersion)
	}
	// v < schemaVersion would run migrations here; version 1 is the first.
	return nil
}

func (c *Catalog) isEmpty() (bool, error) {
	it, err := c.db.NewIter(nil)
	if err != nil {
		return false, fmt.Errorf("check for existing data: %w", err)
	}
	empty := !it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return false, fmt.Errorf("check for existing data: %w", err)
	}
	return empty, nil
}

// Close flushes nothing extra (every acknowledged write is already in the
// synced WAL) and releases the store. Calls after Close return ErrClosed.
func (c *Catalog) Close() error {
	c.state.Lock()
	defer c.state.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("close catalog: %w", err)
	}
	return nil
}

// enter admits a call while the catalog is open; the caller must call the
// returned function when done.
func (c *Catalog) enter() (func(), error) {
	c.state.RLock()
	if c.closed {
		c.state.RUnlock()
		return nil, ErrClosed
	}
	return c.state.RUnlock, nil
}

// enterWrite is enter for calls that write.
func (c *Catalog) enterWrite() (func(), error) {
	if c.readOnly {
		return nil, ErrReadOnly
	}
	return c.enter()
}

// SyncPoint makes everything written so far durable, including file versions
// committed without sync. It writes an empty WAL record with Sync, and a
// synced WAL record implies every earlier record is on disk too.
func (c *Catalog) SyncPoint() error {
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("sync catalog: %w", err)
	}
	defer done()
	if err := c.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync catalog: %w", err)
	}
	return nil
}

// commit applies b and releases it.
func (c *Catalog) commit(b *pebble.Batch, sync bool) error {
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	err := c.db.Apply(b, opts)
	if cerr := b.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("release batch: %w", cerr)
	}
	return err
}

// nextID allocates the next value of sequence name and records it in b, so
// the allocation becomes durable exactly when the record using it does. The
// caller holds the family lock until b is committed.
func nextID(r pebble.Reader, b *pebble.Batch, name string) (uint64, error) {
	key := seqKey(name)
	var last uint64
	raw, err := get(r, key)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return 0, fmt.Errorf("read sequence %s: %w", name, err)
	default:
		if last, err = decodeSequence(key, raw); err != nil {
			return 0, fmt.Errorf("read sequence %s: %w", name, err)
		}
	}
	if last == ^uint64(0) {
		return 0, fmt.Errorf("sequence %s exhausted", name)
	}
	if err := b.Set(key, encodeSequence(last+1), nil); err != nil {
		return 0, fmt.Errorf("stage sequence %s: %w", name, err)
	}
	return last + 1, nil
}

// get returns a copy of the value at key, because Pebble's slice is only
// valid until its closer is closed. A missing key wraps ErrNotFound.
func get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop scan")

// scan calls fn for each key in [lower, upper), in order, or in reverse order
// if reverse. Key and value are only valid during the call. fn returns
// errStop to end the scan.
func scan(r pebble.Reader, lower, upper []byte, reverse bool, fn func(key, value []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	var ok bool
	if reverse {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	for ; ok; ok = step(it, reverse) {
		v, verr := it.ValueAndErr()
		if verr != nil {
			err = verr
			break
		}
		if err = fn(it.Key(), v); err != nil {
			break
		}
	}
	if errors.Is(err, errStop) {
		err = nil
	}
	return errors.Join(err, it.Error(), it.Close())
}

func step(it *pebble.Iterator, reverse bool) bool {
	if reverse {
		return it.Prev()
	}
	return it.Next()
}

// scanPrefix scans every key that starts with prefix.
func scanPrefix(r pebble.Reader, prefix []byte, reverse bool, fn func(key, value []byte) error) error {
	return scan(r, prefix, prefixEnd(prefix), reverse, fn)
}

// pebbleLogger adapts slog to Pebble's logger interface.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}

// Fatalf must not return: Pebble calls it on invariant violations (such as a
// failed WAL write) and carries on as if the process had stopped. A panic
// stops the caller and, unlike os.Exit, lets the daemon's recovery log it.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "fatal", true)
	panic("catalog: pebble fatal error: " + msg)
}
