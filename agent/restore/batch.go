package restore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"

	"golang.org/x/sys/unix"
)

// A batch is flushed when it holds this many files or bytes: large enough
// that the syncs of a restore of small files cost little, small enough
// that a crash leaves little to redo and that a failure is found soon.
// (Variables so that the crash test can make batches small.)
var (
	batchFiles       = 512
	batchBytes int64 = 256 << 20
)

// syncWorkers is how many fsyncs of one batch are in flight at once. The
// filesystem commits concurrent fsyncs together (one journal commit for
// many files), which is where batching saves; more workers than this only
// add threads blocked in the kernel.
const syncWorkers = 16

// EntryError is an entry Put accepted (Options.Batch) that failed when its
// batch was flushed: its temporary file is removed and its name is as it
// was before the restore.
type EntryError struct {
	Entry   Entry   // as given to Put
	Outcome Outcome // what Put decided for it
	Err     error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("restore %s %q as %q: %v", e.Entry.Type, e.Entry.Path, e.Outcome.Path, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// Failed lists the entries among err's causes, as Close returns them when
// Options.Failed is not set.
func Failed(err error) []*EntryError {
	var out []*EntryError
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *EntryError:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}

// queued is one file written under its temporary name, waiting for its
// rename.
type queued struct {
	entry   Entry
	out     Outcome
	dirName string   // its directory below the destination
	dir     int      // that directory, held open until the flush
	f       *os.File // the temporary file, held open for its fsync
	tmp     string
}

// batch is the queue of a Writer in batch mode.
type batch struct {
	files []queued
	bytes int64
	// names holds every name, below the destination, that a queued file
	// will take or now occupies under its temporary name: an entry that
	// touches one of them, or lies below one, waits for a flush first.
	names map[string]bool
	dirs  map[string]int // open directories of the queued files
}

func newBatch() batch { return batch{names: map[string]bool{}, dirs: map[string]int{}} }

// settle makes sure that restoring rel, or building it under its
// temporary name, touches no name a queued file or a file being flushed
// holds: so every decision about rel is taken against the disk as it
// would be had the entries before been written one by one.
func (w *Writer) settle(rel string) {
	if w.queue.clashes(rel) {
		w.flushNow()
	} else if w.inflight != nil && w.inflight.clashes(rel) {
		w.wait()
	}
}

// clashes reports whether restoring rel, or building it under its
// temporary name, would touch a name a file of b holds.
func (b *batch) clashes(rel string) bool {
	if len(b.files) == 0 {
		return false
	}
	if b.names[rel] {
		return true
	}
	dirName, base := path.Split(rel)
	if tmp := tempPrefix + base; len(tmp) <= 255 && b.names[dirName+tmp] {
		return true
	}
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if b.names[d] {
			return true
		}
	}
	return false
}

// queueFile writes a file under its temporary name and queues its rename.
func (w *Writer) queueFile(e Entry, out Outcome, dir int, dirName, name string, content io.Reader) error {
	held, ok := w.queue.dirs[dirName]
	if !ok {
		// The rename must go to the very directory the temporary file
		// is in, however the tree changes meanwhile: keep it open.
		var err error
		if held, err = unix.Dup(dir); err != nil {
			return os.NewSyscallError("dup", err)
		}
		unix.CloseOnExec(held)
		w.queue.dirs[dirName] = held
	}
	f, tmp, n, err := w.writeTemp(e, dir, name, content)
	if err != nil {
		return err
	}
	w.queue.files = append(w.queue.files, queued{entry: e, out: out, dirName: dirName, dir: held, f: f, tmp: tmp})
	w.queue.bytes += n
	w.queue.names[out.Path] = true
	w.queue.names[path.Join(dirName, tmp)] = true
	if len(w.queue.files) >= batchFiles || w.queue.bytes >= batchBytes {
		w.flush()
	}
	return nil
}

// flushing is a batch being synced and renamed in the background while
// Put writes the next one.
type flushing struct {
	batch
	done chan struct{}
	errs []error // per file; nil: in place
}

// flush starts the queued batch's flush, after the one before it ended,
// and returns at once.
func (w *Writer) flush() {
	w.wait()
	if len(w.queue.files) == 0 {
		return
	}
	fl := &flushing{batch: w.queue, done: make(chan struct{}), errs: make([]error, len(w.queue.files))}
	w.queue = newBatch()
	w.inflight = fl
	go fl.run()
}

// flushNow flushes everything queued and waits for it.
func (w *Writer) flushNow() {
	w.flush()
	w.wait()
}

// wait waits for the flush in flight, if any, and reports its failures.
func (w *Writer) wait() {
	fl := w.inflight
	if fl == nil {
		return
	}
	<-fl.done
	w.inflight = nil
	for i, qf := range fl.files {
		if err := fl.errs[i]; err != nil {
			w.fail(&EntryError{Entry: qf.entry, Outcome: qf.out, Err: fmt.Errorf("%w (in %s)", err, w.dest)})
			continue
		}
		w.synced[qf.dirName] = true
	}
}

// run makes the batch's files durable under their temporary names, then
// renames them in the order they were put. A file that cannot be synced
// or renamed is removed and its error kept; the others go on.
func (fl *flushing) run() {
	defer close(fl.done)
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(syncWorkers, len(fl.files)) {
		wg.Go(func() {
			for i := range next {
				if err := fl.files[i].f.Sync(); err != nil {
					fl.errs[i] = noSpace(fmt.Errorf("sync: %w", err))
				}
			}
		})
	}
	for i := range fl.files {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, qf := range fl.files {
		err := fl.errs[i]
		if cerr := qf.f.Close(); err == nil && cerr != nil {
			err = noSpace(fmt.Errorf("close: %w", cerr))
		}
		if err == nil {
			if rerr := unix.Renameat(qf.dir, qf.tmp, qf.dir, path.Base(qf.out.Path)); rerr != nil {
				err = os.NewSyscallError("renameat", rerr)
				if errors.Is(rerr, unix.EISDIR) || errors.Is(rerr, unix.ENOTEMPTY) || errors.Is(rerr, unix.EEXIST) {
					err = fmt.Errorf("%w: %q is a directory", ErrInTheWay, qf.out.Path)
				}
			}
		}
		if err != nil {
			_ = unix.Unlinkat(qf.dir, qf.tmp, 0)
		}
		fl.errs[i] = err
	}
	for _, fd := range fl.dirs {
		_ = unix.Close(fd)
	}
}

// fail hands a queued entry's failure to Options.Failed, or keeps it for
// Close.
func (w *Writer) fail(e *EntryError) {
	if w.opts.Failed != nil {
		w.opts.Failed(e)
		return
	}
	w.failed = append(w.failed, e)
}
