// Command replication measures continuous replication (agent/replication)
// with a replica on the same machine, either opened directly
// (-transport local, replication.LocalReplica) or on the other side of the
// real TCP transport over loopback (-transport tcp, see tcpLink): the lag from a write on the
// master to its arrival on the replica, and the rate of the initial
// synchronization of a populated master into an empty replica. run.sh
// drives it and runs `cp -a` beside it.
//
// Modes:
//
//	-mode gen        -dir D -total-mb N      write a mixed tree of about N MiB
//	-mode throughput -master M -replica R -spool S
//	                 time Start → Phase replicating, then check the trees
//	-mode lag        -dir D -rate R -duration T -size B
//	                 write R small files a second for T on a live engine and
//	                 time each one's arrival on the replica
//
// -transport applies to throughput and lag. Every mode prints one line of key=value pairs for run.sh to parse.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/holdfast/holdfast/agent/capture"
	"github.com/holdfast/holdfast/agent/change"
	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/treesync"
)

func main() {
	mode := flag.String("mode", "", "gen, throughput or lag")
	dir := flag.String("dir", "", "gen: the tree to create; lag: a work directory (master, replica, spool are made in it)")
	totalMB := flag.Int("total-mb", 2048, "gen: approximate size of the tree in MiB")
	seed := flag.Uint64("seed", 1, "gen: random seed, so that every run gets the same tree")
	master := flag.String("master", "", "throughput: the populated master")
	replica := flag.String("replica", "", "throughput: the replica directory (empty or absent)")
	spoolDir := flag.String("spool", "", "throughput: the engine's spool directory")
	backendName := flag.String("backend", "auto", "capture backend: auto, inotify or fanotify")
	flag.StringVar(&transport, "transport", "local", "throughput, lag: local (the replica opened in this process) or tcp (through two TCP transports over loopback)")
	rate := flag.Int("rate", 1000, "lag: writes per second")
	duration := flag.Duration("duration", 10*time.Second, "lag: how long to write")
	size := flag.Int("size", 256, "lag: bytes per file")
	timeout := flag.Duration("timeout", 10*time.Minute, "throughput: give up after this long")
	traceApply = flag.Bool("trace", false, "print to stderr what the replica was asked to apply: calls, batch sizes, ops, time spent")
	cpuProfile := flag.String("cpuprofile", "", "throughput, lag: write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		stopProfile, err := profileCPU(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "replication bench:", err)
			os.Exit(1)
		}
		defer stopProfile()
	}

	backend, err := parseBackend(*backendName)
	if err == nil && transport != "local" && transport != "tcp" {
		err = fmt.Errorf("unknown -transport %q: want local or tcp", transport)
	}
	if err == nil {
		switch *mode {
		case "gen":
			err = gen(*dir, int64(*totalMB)<<20, *seed)
		case "throughput":
			err = throughput(*master, *replica, *spoolDir, backend, *timeout)
		case "lag":
			err = lag(*dir, backend, *rate, *duration, *size)
		default:
			err = fmt.Errorf("unknown -mode %q: want gen, throughput or lag", *mode)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "replication bench:", err)
		os.Exit(1)
	}
}

// profileCPU starts a CPU profile written to path; the function it returns
// stops it.
func profileCPU(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "replication bench: cpu profile:", err)
		}
	}, nil
}

func parseBackend(s string) (capture.Backend, error) {
	switch s {
	case "auto":
		return capture.Auto, nil
	case "inotify":
		return capture.Inotify, nil
	case "fanotify":
		return capture.Fanotify, nil
	}
	return 0, fmt.Errorf("unknown -backend %q: want auto, inotify or fanotify", s)
}

// gen writes the throughput data set: about 10% of the bytes in small files
// (512 B to 16 KiB, a third of them text, 500 to a directory), 40% in
// medium ones (1 to 8 MiB of random data) and 50% in four large ones.
// Random data is incompressible, so nothing can win by compressing.
func gen(dir string, total int64, seed uint64) error {
	if dir == "" {
		return errors.New("gen needs -dir")
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	var files, bytes int64
	buf := make([]byte, 8<<20)
	write := func(rel string, n int64, text bool) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("create directory for %s: %w", p, err)
		}
		f, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		for left := n; left > 0; {
			chunk := buf[:min(left, int64(len(buf)))]
			if text {
				fillText(rng, chunk)
			} else {
				fillRandom(rng, chunk)
			}
			if _, err := f.Write(chunk); err != nil {
				f.Close()
				return fmt.Errorf("write %s: %w", p, err)
			}
			left -= int64(len(chunk))
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", p, err)
		}
		files++
		bytes += n
		return nil
	}
	for i, sum := 0, int64(0); sum < total/10; i++ {
		n := 512 + rng.Int64N(16<<10-512)
		if err := write(fmt.Sprintf("small/d%03d/f%05d", i/500, i), n, i%3 == 0); err != nil {
			return err
		}
		sum += n
	}
	for i, sum := 0, int64(0); sum < total*4/10; i++ {
		n := 1<<20 + rng.Int64N(7<<20)
		if err := write(fmt.Sprintf("medium/m%04d.bin", i), n, false); err != nil {
			return err
		}
		sum += n
	}
	for i := range 4 {
		if err := write(fmt.Sprintf("large/l%d.bin", i), total/8, false); err != nil {
			return err
		}
	}
	fmt.Printf("files=%d bytes=%d\n", files, bytes)
	return nil
}

func seedBytes(seed uint64) (s [32]byte) {
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

var words = strings.Fields("backup replica master spool change apply fsync rename directory file block " +
	"signature snapshot volume retention schedule the a of and to in is that it for on with as")

func fillText(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); {
		w := words[rng.IntN(len(words))]
		i += copy(b[i:], w)
		if i < len(b) {
			if rng.IntN(12) == 0 {
				b[i] = '\n'
			} else {
				b[i] = ' '
			}
			i++
		}
	}
}

// transport is the -transport flag: where the replica is.
var transport string

// openReplica opens the replica in dir as -transport says.
func openReplica(dir string) (replication.Replica, error) {
	if transport == "tcp" {
		return dialTCP(dir)
	}
	rep, err := replication.OpenLocal(dir)
	if err != nil {
		return nil, fmt.Errorf("open replica: %w", err)
	}
	return rep, nil
}

// start opens the replica and starts an engine on master with the
// options the appliance would use, except a short retry interval.
func start(master, replica, spoolDir string, backend capture.Backend) (*replication.Engine, replication.Replica, error) {
	rep, err := openReplica(replica)
	if err != nil {
		return nil, nil, err
	}
	r := rep
	if *traceApply {
		r = &tracedReplica{Replica: rep, ops: map[string]int{}}
		traced = r.(*tracedReplica)
	}
	eng, err := replication.Start(replication.Config{Root: master, Replica: r, SpoolDir: spoolDir,
		Backend: backend, RetryEvery: 100 * time.Millisecond, Notify: func(n replication.Notice) {
			// Notices are the engine's only way to say that something went
			// wrong without stopping; a benchmark run with any of them
			// must not pass unnoticed.
			switch n.Kind {
			case replication.NoticeStarted, replication.NoticeSyncDone, replication.NoticeRecovered:
			default:
				fmt.Fprintf(os.Stderr, "notice %d: %s %s %v\n", n.Kind, n.Path, n.Text, n.Err)
			}
		}})
	if err != nil {
		return nil, nil, errors.Join(fmt.Errorf("start engine: %w", err), rep.Close())
	}
	return eng, rep, nil
}

func stop(eng *replication.Engine, rep replication.Replica) error {
	var errs []error
	if err := eng.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("stop engine: %w", err))
	}
	if traced != nil {
		traced.report(os.Stderr)
	}
	if err := rep.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close replica: %w", err))
	}
	return errors.Join(errs...)
}

// waitPhase polls every 5 ms: fine enough against synchronizations that
// take seconds, cheap enough not to compete with the engine.
func waitPhase(eng *replication.Engine, p replication.Phase, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st := eng.Status()
		if st.Phase == p {
			return nil
		}
		if st.Phase == replication.PhaseProblem {
			return fmt.Errorf("engine has a problem: %s", st.Problem)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := eng.Status()
	return fmt.Errorf("engine phase %s after %v, want %s (%s)", st.Phase, timeout, p, st.Problem)
}

// differences compares the trees as the engine's difference report does:
// type, size, mode, owner, mtime, links and user xattrs, not content.
func differences(master, replica string) ([]treesync.Difference, error) {
	m, _, err := treesync.Scan(master, treesync.ScanOptions{})
	if err != nil {
		return nil, fmt.Errorf("scan master: %w", err)
	}
	r, _, err := treesync.Scan(replica, treesync.ScanOptions{})
	if err != nil {
		return nil, fmt.Errorf("scan replica: %w", err)
	}
	return treesync.Compare(m, r), nil
}

// throughput times one initial synchronization. The engine reports Phase
// replicating only after the synchronization's last batch was applied and
// acknowledged, and the applier acknowledges only what it has fsynced, so
// the time includes the replica's fsyncs. The tree comparison afterwards is
// a check, not part of the time, unless the trees still differ then (they
// should not: nothing writes to the master during the run).
func throughput(master, replica, spoolDir string, backend capture.Backend, timeout time.Duration) error {
	if master == "" || replica == "" || spoolDir == "" {
		return errors.New("throughput needs -master, -replica and -spool")
	}
	t0 := time.Now()
	eng, rep, err := start(master, replica, spoolDir, backend)
	if err != nil {
		return err
	}
	if err := waitPhase(eng, replication.PhaseReplicating, timeout); err != nil {
		return errors.Join(err, stop(eng, rep))
	}
	syncDone := time.Since(t0)
	st := eng.Status()
	d, err := differences(master, replica)
	if err != nil {
		return errors.Join(err, stop(eng, rep))
	}
	identical := syncDone
	if len(d) > 0 {
		// Replicating with differences left: keep waiting, and count the
		// wait, so that the figure is never flattering.
		deadline := time.Now().Add(timeout)
		for len(d) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			if d, err = differences(master, replica); err != nil {
				return errors.Join(err, stop(eng, rep))
			}
		}
		if len(d) > 0 {
			return errors.Join(fmt.Errorf("replica still differs from master: %d differences, first %s", len(d), d[0]), stop(eng, rep))
		}
		identical = time.Since(t0)
	}
	if err := stop(eng, rep); err != nil {
		return err
	}
	fmt.Printf("transport=%s backend=%s wall_s=%.3f identical_s=%.3f engine_sync_s=%.3f files_whole=%d bytes_whole=%d files_block=%d bytes_literal=%d\n",
		transport, st.Backend, syncDone.Seconds(), identical.Seconds(), st.Sync.Elapsed.Seconds(),
		st.Sync.FilesWhole, st.Sync.BytesWhole, st.Sync.FilesBlock, st.Sync.BytesLiteral)
	return nil
}

// lag starts an engine on an almost empty master, then writes small files
// with unique names at a steady rate (each one created, written and closed:
// the time taken after close is "the write"), while a checker watches the
// replica directory with inotify and notes when each file appears there
// with its full size. The applier fsyncs a new file before renaming it into
// place, but a write into an existing file is fsynced with the rest of its
// batch, before the batch is acknowledged: so the checker's moment is "visible
// and complete on the replica", at most one batch commit before "durable".
// The engine's own figures (capture → durable, acknowledged apply) are
// printed beside it.
func lag(dir string, backend capture.Backend, rate int, duration time.Duration, size int) error {
	if dir == "" || rate <= 0 || duration <= 0 || size <= 0 {
		return errors.New("lag needs -dir, and positive -rate, -duration and -size")
	}
	master, replica, spoolDir := filepath.Join(dir, "master"), filepath.Join(dir, "replica"), filepath.Join(dir, "spool")
	// The files go into one directory that exists before the engine starts,
	// so that the initial synchronization creates it on the replica and the
	// checker can watch it before the first write.
	if err := os.MkdirAll(filepath.Join(master, "lag"), 0o755); err != nil {
		return fmt.Errorf("create master: %w", err)
	}
	eng, rep, err := start(master, replica, spoolDir, backend)
	if err != nil {
		return err
	}
	result, err := runLag(eng, master, replica, rate, duration, size)
	if serr := stop(eng, rep); serr != nil {
		return errors.Join(err, serr)
	}
	if err != nil {
		return err
	}
	fmt.Println(result)
	return nil
}

func runLag(eng *replication.Engine, master, replica string, rate int, duration time.Duration, size int) (_ string, err error) {
	if err := waitPhase(eng, replication.PhaseReplicating, time.Minute); err != nil {
		return "", err
	}
	n := rate * int(duration/time.Second)
	if n == 0 {
		return "", errors.New("-duration must be at least one second")
	}
	ck, err := newChecker(filepath.Join(replica, "lag"), n, int64(size))
	if err != nil {
		return "", err
	}
	// On the way out of an error; the normal path closes it below and
	// close is idempotent.
	defer func() {
		if cerr := ck.close(); cerr != nil && err != nil {
			err = errors.Join(err, cerr)
		}
	}()

	content := make([]byte, size)
	for i := range content {
		content[i] = 'a' + byte(i%26)
	}
	written := make([]time.Time, n)
	interval := time.Second / time.Duration(rate)
	begin := time.Now()
	behind := 0
	for i := range n {
		// A fixed schedule rather than a sleep per write: a late write does
		// not push the later ones back, so the rate is the one asked for.
		due := begin.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if d < -interval {
			behind++
		}
		if err := os.WriteFile(filepath.Join(master, "lag", fileName(i)), content, 0o644); err != nil {
			return "", fmt.Errorf("write on master: %w", err)
		}
		written[i] = time.Now()
	}
	writeTime := time.Since(begin)

	// Everything should arrive well within a few seconds; the bound only
	// keeps a broken run from hanging.
	deadline := time.Now().Add(30 * time.Second)
	for ck.count() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := eng.Status()
	if err := ck.close(); err != nil {
		return "", err
	}
	seen := ck.seenTimes()
	var lags []time.Duration
	missing, early := 0, 0
	for i := range n {
		switch {
		case seen[i].IsZero():
			missing++
		case seen[i].Before(written[i]):
			// The replica had it before WriteFile returned on the master:
			// possible, as the engine can capture and apply between the
			// write and the close; counted as zero lag.
			early++
			lags = append(lags, 0)
		default:
			lags = append(lags, seen[i].Sub(written[i]))
		}
	}
	// Files still missing when the wait ends count as infinitely late: an
	// engine that cannot keep up must show in the percentiles, not be left
	// out of them. Only a complete run is checked against the master.
	if missing == 0 {
		d, err := differences(master, replica)
		if err != nil {
			return "", err
		}
		if len(d) > 0 {
			return "", fmt.Errorf("replica differs from master after the run: %d differences, first %s", len(d), d[0])
		}
	}
	for range missing {
		lags = append(lags, time.Duration(math.MaxInt64))
	}
	slices.Sort(lags)
	pct := func(p int) float64 { return ms(lags[min(len(lags)-1, len(lags)*p/100)]) }
	return fmt.Sprintf("transport=%s backend=%s writes=%d rate=%.0f behind=%d ext_p50_ms=%.2f ext_p99_ms=%.2f ext_max_ms=%.2f missing=%d early=%d eng_p50_ms=%.2f eng_p99_ms=%.2f eng_changes=%d spool_pending=%d",
		transport, st.Backend, n, float64(n)/writeTime.Seconds(), behind, pct(50), pct(99), pct(100), missing, early,
		ms(st.LagP50), ms(st.LagP99), st.Counters.Changes, st.SpoolPending), nil
}

// ms is d in milliseconds; a missing file's lag prints as +Inf.
func ms(d time.Duration) float64 {
	if d == math.MaxInt64 {
		return math.Inf(1)
	}
	return float64(d) / float64(time.Millisecond)
}

func fileName(i int) string { return fmt.Sprintf("w%07d", i) }

// checker learns from inotify when each file appears complete in one
// replica directory. The applier renames new files into place
// (IN_MOVED_TO) and writes existing ones in place (IN_CLOSE_WRITE); on
// either, the file is stat'ed, and counts once it has its full size.
type checker struct {
	dir  string
	size int64
	f    *os.File
	done chan error

	mu       sync.Mutex
	seen     []time.Time
	n        int
	closeErr error
	closed   bool
}

func newChecker(dir string, n int, size int64) (*checker, error) {
	// Non-blocking, so that os.File puts it on Go's poller and Close
	// wakes the reader up.
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", os.NewSyscallError("inotify_init1", err))
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, os.NewSyscallError("inotify_add_watch", err))
	}
	c := &checker{dir: dir, size: size, f: os.NewFile(uintptr(fd), "inotify"), done: make(chan error, 1), seen: make([]time.Time, n)}
	go func() { c.done <- c.read() }()
	return c, nil
}

func (c *checker) read() error {
	buf := make([]byte, 1<<16)
	for {
		k, err := c.f.Read(buf)
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read inotify events: %w", err)
		}
		// One timestamp per read: it is when the checker learnt of every
		// event in the buffer.
		now := time.Now()
		for off := 0; off+unix.SizeofInotifyEvent <= k; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				return errors.New("inotify queue overflowed: arrival times were lost")
			}
			var i int
			name := strings.TrimRight(string(nameBytes), "\x00")
			if _, err := fmt.Sscanf(name, "w%07d", &i); err != nil || i < 0 || i >= len(c.seen) {
				continue // the applier's temporary names, and anything else
			}
			if c.has(i) {
				continue
			}
			st, err := os.Lstat(filepath.Join(c.dir, name))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("stat replica file: %w", err)
			}
			if st.Size() == c.size {
				c.mark(i, now)
			}
		}
	}
}

func (c *checker) has(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.seen[i].IsZero()
}

func (c *checker) mark(i int, t time.Time) {
	c.mu.Lock()
	c.seen[i] = t
	c.n++
	c.mu.Unlock()
}

func (c *checker) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *checker) seenTimes() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

// close stops the reader and returns its error, if any; later calls return
// the same.
func (c *checker) close() error {
	c.mu.Lock()
	if c.closed {
		defer c.mu.Unlock()
		return c.closeErr
	}
	c.closed = true
	c.mu.Unlock()
	err := c.f.Close()
	if rerr := <-c.done; rerr != nil {
		err = errors.Join(err, rerr)
	}
	c.mu.Lock()
	c.closeErr = err
	c.mu.Unlock()
	return err
}

// traceApply and traced: see the -trace flag.
var (
	traceApply *bool
	traced     *tracedReplica
)

// tracedReplica counts what the engine asks of the replica, to find out
// where apply time goes.
type tracedReplica struct {
	replication.Replica
	mu      sync.Mutex
	calls   int
	changes int
	maxLen  int
	busy    time.Duration
	ops     map[string]int
	sample  []string // ops of the first batches, in order
}

func (r *tracedReplica) ApplyBatch(cs []change.Change) error {
	t0 := time.Now()
	err := r.Replica.ApplyBatch(cs)
	d := time.Since(t0)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.changes += len(cs)
	r.maxLen = max(r.maxLen, len(cs))
	r.busy += d
	for _, c := range cs {
		r.ops[c.Op.String()]++
		if len(r.sample) < 60 {
			r.sample = append(r.sample, c.Op.String()+":"+c.Path)
		}
	}
	return err
}

func (r *tracedReplica) report(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(w, "trace: %d ApplyBatch calls, %d changes (largest batch %d), %.3f s inside ApplyBatch, ops %v\n",
		r.calls, r.changes, r.maxLen, r.busy.Seconds(), r.ops)
	fmt.Fprintf(w, "trace: first changes: %s\n", strings.Join(r.sample, " "))
}
