package diskstore

import (
	"fmt"
	"io"
	"runtime"
	"sync"
)

// DefaultReadAheadBytes bounds the content a ReadAhead holds decoded
// before it is read: enough to keep the decoders busy through many small
// files or a few chunks of a large one.
const DefaultReadAheadBytes = 64 << 20

// ReadAhead reads the content of a list of files, in their order, ahead of
// its use: chunks are read, opened and checked by as many goroutines as
// the process has cores while the caller writes the file before. A restore
// then spends its time decoding and writing at once instead of in turn.
// Its methods are for one goroutine.
type ReadAhead struct {
	ss      *Session
	files   []Entry
	next    int              // index in files of the next file to open
	ordered chan *fetch      // every chunk of every file, in order
	budget  *budget          // bytes fetched and not yet read
	stop    chan struct{}    // closed by Close
	done    sync.WaitGroup   // the dispatcher and the workers
	cur     *readAheadReader // the reader handed out last
}

// fetch is one chunk being read.
type fetch struct {
	id    ID
	cost  int64 // what it holds of the budget
	ready chan struct{}
	b     []byte
	err   error
}

// ReadAhead starts reading the files at paths, in that order, keeping at
// most about maxBytes decoded ahead (0: DefaultReadAheadBytes). Paths that
// are not files of the session are left out. Open them with Open in the
// same order; Close ends the reading.
func (ss *Session) ReadAhead(paths []string, maxBytes int64) *ReadAhead {
	if maxBytes <= 0 {
		maxBytes = DefaultReadAheadBytes
	}
	ra := &ReadAhead{ss: ss, budget: newBudget(maxBytes), stop: make(chan struct{}), ordered: make(chan *fetch, 1024)}
	for _, p := range paths {
		if en, ok := ss.Entry(p); ok && en.Type == TypeFile {
			ra.files = append(ra.files, en)
		}
	}
	work := make(chan *fetch)
	workers := max(runtime.GOMAXPROCS(0), 1)
	ra.done.Add(1 + workers)
	go ra.dispatch(work)
	for range workers {
		go func() {
			defer ra.done.Done()
			for f := range work {
				f.b, f.err = ss.s.get(kindData, f.id)
				close(f.ready)
			}
		}()
	}
	return ra
}

// dispatch queues every chunk, in order, as the budget allows.
func (ra *ReadAhead) dispatch(work chan<- *fetch) {
	defer ra.done.Done()
	defer close(work)
	defer close(ra.ordered)
	for _, en := range ra.files {
		// The chunks' sizes are known only once read: charge each the
		// file's average, so the bound holds on the whole.
		per := int64(0)
		if len(en.Chunks) > 0 {
			per = max(en.Size/int64(len(en.Chunks)), 1)
		}
		for _, id := range en.Chunks {
			if !ra.budget.take(per, ra.stop) {
				return
			}
			f := &fetch{id: id, cost: per, ready: make(chan struct{})}
			select {
			case ra.ordered <- f:
			case <-ra.stop:
				return
			}
			select {
			case work <- f:
			case <-ra.stop:
				return
			}
		}
	}
}

// Open returns the reader of the file at path. Files of the list before
// it that were not opened are passed over. A path that is not next in the
// list is read without read-ahead, as Session.Open does.
func (ra *ReadAhead) Open(path string) (io.ReadCloser, error) {
	select {
	case <-ra.stop:
		return nil, fmt.Errorf("session %s: %s: %w", ra.ss.info.ID, path, errReadAheadClosed)
	default:
	}
	if ra.cur != nil {
		ra.cur.Close()
		ra.cur = nil
	}
	i := ra.next
	for i < len(ra.files) && ra.files[i].Path != path {
		i++
	}
	if i == len(ra.files) {
		return ra.ss.Open(path)
	}
	for ; ra.next < i; ra.next++ {
		if err := ra.skip(ra.files[ra.next]); err != nil {
			return nil, err
		}
	}
	ra.next++
	ra.cur = &readAheadReader{ra: ra, en: ra.files[i]}
	return ra.cur, nil
}

// skip takes a file's chunks off the queue unread.
func (ra *ReadAhead) skip(en Entry) error {
	for range en.Chunks {
		f, err := ra.take()
		if err != nil {
			return err
		}
		<-f.ready
		ra.budget.give(f.cost)
	}
	return nil
}

func (ra *ReadAhead) take() (*fetch, error) {
	select {
	case <-ra.stop:
		// What is left on the queue is being drained by Close.
		return nil, fmt.Errorf("session %s: read-ahead: %w", ra.ss.info.ID, errReadAheadClosed)
	default:
	}
	f, ok := <-ra.ordered
	if !ok {
		return nil, fmt.Errorf("session %s: read-ahead: %w", ra.ss.info.ID, errReadAheadClosed)
	}
	return f, nil
}

var errReadAheadClosed = fmt.Errorf("read-ahead closed")

// Close stops the reading and waits for its goroutines.
func (ra *ReadAhead) Close() {
	select {
	case <-ra.stop:
		return
	default:
	}
	close(ra.stop)
	// Wake the dispatcher if it waits for budget: it checks stop under
	// the budget's lock, so it either sees it or is waiting now.
	ra.budget.wake()
	// Release the dispatcher if it waits to queue; then let the workers
	// finish what they hold.
	go func() {
		for range ra.ordered {
		}
	}()
	ra.done.Wait()
}

// readAheadReader reads one file's chunks off the queue.
type readAheadReader struct {
	ra     *ReadAhead
	en     Entry
	next   int   // next chunk
	offset int64 // offset of buf[0] in the file
	buf    []byte
	err    error
	closed bool
}

func (r *readAheadReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next == len(r.en.Chunks) {
			if r.offset != r.en.Size {
				r.err = r.fail(corrupt("file ends at %d, manifest says %d bytes", r.offset, r.en.Size))
			} else {
				r.err = io.EOF
			}
			return 0, r.err
		}
		f, err := r.ra.take()
		if err != nil {
			r.err = err
			return 0, err
		}
		<-f.ready
		r.ra.budget.give(f.cost)
		r.next++
		if f.err != nil {
			r.err = r.fail(f.err)
			return 0, r.err
		}
		r.buf = f.b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.offset += int64(n)
	return n, nil
}

func (r *readAheadReader) fail(err error) error {
	return fmt.Errorf("session %s, file %s, offset %d: %w", r.ra.ss.info.ID, r.en.Path, r.offset, err)
}

// Close takes the file's unread chunks off the queue, so the next file
// starts at its own.
func (r *readAheadReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.buf = nil
	for ; r.next < len(r.en.Chunks); r.next++ {
		f, err := r.ra.take()
		if err != nil {
			break
		}
		<-f.ready
		r.ra.budget.give(f.cost)
	}
	if r.err == nil {
		r.err = errReaderClosed
	}
	return nil
}

var errReaderClosed = fmt.Errorf("reader closed")

// budget is a counting limit on bytes in flight.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	free  int64
	limit int64
}

func newBudget(limit int64) *budget {
	b := &budget{free: limit, limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// take waits until n bytes are free (any n when nothing is held, so one
// chunk larger than the limit still passes) or stop is closed.
func (b *budget) take(n int64, stop <-chan struct{}) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.free < n && b.free < b.limit {
		select {
		case <-stop:
			return false
		default:
		}
		b.cond.Wait()
	}
	select {
	case <-stop:
		return false
	default:
	}
	b.free -= n
	return true
}

// wake makes every take look at its stop channel again. Taken under the
// lock, so a take that checked stop before it was closed is now waiting
// and gets the broadcast.
func (b *budget) wake() {
	b.mu.Lock()
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *budget) give(n int64) {
	b.mu.Lock()
	b.free += n
	b.mu.Unlock()
	b.cond.Broadcast()
}
