// Command blocksync is the benchmark harness for package agent/blocksync:
// it resyncs one file between a replica (server) and a master (client) over
// a real TCP connection and reports the wall time and the bytes that
// crossed the wire, so run.sh can set them against rsync's.
//
//	blocksync mkfiles -old OLD -new NEW -size-mb 1024 -percent 1 -region 4096
//	blocksync serve -listen 127.0.0.1:PORT -file REPLICA
//	blocksync sync -connect 127.0.0.1:PORT -file MASTER [-inplace] [-block N] [-rounds 1|2]
//	blocksync freeport
//
// The session: the client sends a request (mode, block size, rounds), the
// server computes the signature of its copy and sends it. With one round,
// the client diffs its file against it and streams the ops. With two (the
// default), the client scans its file (blocksync.NewPlan), sends the list of
// old blocks it wants described in smaller blocks, the server answers with
// that refinement, and the client streams the ops (Plan.Emit). The server
// patches (into a temporary file that it syncs and renames over its copy,
// or with -inplace over its copy, then syncs) and replies. The client's
// clock runs from connecting to the reply, so the wall time includes both
// sides' work and the fsync.
//
// It is a benchmark, not the replication protocol: one file, no
// authentication, loopback only.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/agent/blocksync"
)

const (
	reqMagic = "HFbs"
	// maxSig bounds the signatures and block lists either side accepts: a
	// little over the largest valid one (a sparse signature of MaxBlocks
	// blocks, each with a full-length index varint).
	maxSig = 32 + blocksync.MaxBlocks*(4+blocksync.StrongSize+binary.MaxVarintLen64)
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "mkfiles":
		err = mkfiles(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	case "sync":
		err = syncCmd(os.Args[2:])
	case "freeport":
		err = freeport()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "blocksync:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: blocksync mkfiles|serve|sync|freeport [flags]")
	os.Exit(2)
}

// mkfiles writes a random file and a copy of it with random regions
// overwritten (at unaligned offsets) until they cover the given share.
func mkfiles(args []string) error {
	fs := flag.NewFlagSet("mkfiles", flag.ExitOnError)
	oldPath := fs.String("old", "", "the replica's old version")
	newPath := fs.String("new", "", "the master's new version")
	sizeMB := fs.Int64("size-mb", 1024, "file size in MiB")
	percent := fs.Float64("percent", 1, "share of the file to change, in percent")
	region := fs.Int("region", 4096, "size of each changed region in bytes")
	seed := fs.Uint64("seed", 1, "random seed")
	_ = fs.Parse(args) // ExitOnError
	if *oldPath == "" || *newPath == "" || *sizeMB <= 0 || *region <= 0 {
		return errors.New("mkfiles: -old, -new, a positive -size-mb and -region are required")
	}
	size := *sizeMB << 20
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], *seed)
	src := rand.NewChaCha8(key)
	if err := writeFile(*oldPath, io.LimitReader(src, size)); err != nil {
		return err
	}
	data, err := os.ReadFile(*oldPath)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(*seed, 2))
	n := int(float64(size) * *percent / 100 / float64(*region))
	patch := make([]byte, *region)
	for range n {
		at := rng.Int64N(size - int64(*region))
		_, _ = src.Read(patch) // ChaCha8.Read never fails
		copy(data[at:], patch)
	}
	if err := writeFile(*newPath, bytes.NewReader(data)); err != nil {
		return err
	}
	fmt.Printf("mkfiles: %d MiB, %d regions of %d bytes changed (%.2f%%)\n", *sizeMB, n, *region,
		float64(n**region)/float64(size)*100)
	return nil
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

func freeport() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return l.Close()
}

// countingConn counts the payload bytes in each direction.
type countingConn struct {
	net.Conn
	read, written int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written += int64(n)
	return n, err
}

func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address; this benchmark stays on loopback", addr)
	}
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	path := fs.String("file", "", "the replica's copy of the file")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the sessions to this file")
	_ = fs.Parse(args) // ExitOnError
	if *path == "" {
		return errors.New("serve: -file is required")
	}
	if err := loopbackOnly(*listen); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println("listening", l.Addr())
	for n := 0; ; n++ {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		stop, err := startProfile(*profile, n)
		if err != nil {
			return err
		}
		msg, err := session(c, *path)
		stop()
		reply := []byte{0}
		if err != nil {
			reply, msg = []byte{1}, err.Error()
			fmt.Fprintln(os.Stderr, "serve:", err)
		}
		reply = binary.AppendUvarint(reply, uint64(len(msg)))
		reply = append(reply, msg...)
		if _, err := c.Write(reply); err != nil {
			fmt.Fprintln(os.Stderr, "serve: replying:", err)
		}
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "serve: closing:", err)
		}
	}
}

// session serves one resync and returns the server's timings.
func session(c net.Conn, path string) (string, error) {
	br := bufio.NewReader(c)
	hdr := make([]byte, len(reqMagic)+1)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return "", fmt.Errorf("reading request: %w", err)
	}
	if string(hdr[:len(reqMagic)]) != reqMagic {
		return "", errors.New("not a blocksync request")
	}
	inPlace := hdr[len(reqMagic)] == 1
	bs, err := binary.ReadUvarint(br)
	if err != nil {
		return "", fmt.Errorf("reading request: %w", err)
	}
	rounds, err := br.ReadByte()
	if err != nil {
		return "", fmt.Errorf("reading request: %w", err)
	}

	t0, cpu0 := time.Now(), cpuTime()
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if bs == 0 {
		bs = uint64(blocksync.BlockSize(fi.Size()))
	}
	sig, err := blocksync.ComputeSignature(f, int(min(bs, 1<<30)))
	if err != nil {
		return "", err
	}
	enc, err := sig.MarshalBinary()
	if err != nil {
		return "", err
	}
	tSig := time.Since(t0)
	if err := writeMsg(c, enc); err != nil {
		return "", err
	}

	var tRefine time.Duration
	if rounds == 2 {
		b, err := readMsg(br, maxSig)
		if err != nil {
			return "", fmt.Errorf("reading wanted blocks: %w", err)
		}
		t := time.Now()
		want, err := blocksync.UnmarshalBlockList(b)
		if err != nil {
			return "", err
		}
		fine, err := blocksync.ComputeRefinement(f, sig, want)
		if err != nil {
			return "", err
		}
		enc, err := fine.MarshalBinary()
		if err != nil {
			return "", err
		}
		tRefine = time.Since(t)
		if err := writeMsg(c, enc); err != nil {
			return "", err
		}
	}

	t1 := time.Now()
	ops := blocksync.NewOpReader(br)
	var tPatch, tSync time.Duration
	if inPlace {
		w, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		defer w.Close()
		if _, err := blocksync.PatchInPlace(w, ops); err != nil {
			return "", err
		}
		tPatch = time.Since(t1)
		t2 := time.Now()
		if err := w.Sync(); err != nil {
			return "", err
		}
		if err := w.Close(); err != nil {
			return "", err
		}
		tSync = time.Since(t2)
	} else {
		tPatch, tSync, err = patchToTemp(f, fi.Size(), ops, path)
		if err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("server_sig_s=%.3f server_refine_s=%.3f server_patch_s=%.3f server_fsync_s=%.3f server_cpu_s=%.3f",
		tSig.Seconds(), tRefine.Seconds(), tPatch.Seconds(), tSync.Seconds(), cpuTime()-cpu0), nil
}

// patchToTemp writes the new version next to the old one, syncs it and
// renames it over the old one: the replica never holds a half-patched file.
func patchToTemp(old *os.File, oldSize int64, ops blocksync.OpSource, path string) (patch, sync time.Duration, err error) {
	t0 := time.Now()
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".blocksync-*")
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err := blocksync.Patch(old, oldSize, ops, bw); err != nil {
		return 0, 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, err
	}
	patch = time.Since(t0)
	t1 := time.Now()
	if err := tmp.Sync(); err != nil {
		return 0, 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, 0, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return 0, 0, err
	}
	return patch, time.Since(t1), nil
}

func syncCmd(args []string) error {
	fs := flag.NewFlagSet("sync", flag.ExitOnError)
	addr := fs.String("connect", "", "the server's loopback address")
	path := fs.String("file", "", "the master's version of the file")
	inPlace := fs.Bool("inplace", false, "make an in-place delta and have the server patch its copy in place")
	block := fs.Int("block", 0, "block size; 0: blocksync.BlockSize of the master's file")
	rounds := fs.Int("rounds", 2, "1: Diff; 2: Plan, with a second, finer round")
	prehash := fs.Bool("prehash", true, "hash the file's aligned blocks while the server computes its signature")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	_ = fs.Parse(args) // ExitOnError
	stop, err := startProfile(*profile, 0)
	if err != nil {
		return err
	}
	defer stop()
	if *addr == "" || *path == "" || (*rounds != 1 && *rounds != 2) {
		return errors.New("sync: -connect and -file are required, and -rounds is 1 or 2")
	}
	if err := loopbackOnly(*addr); err != nil {
		return err
	}
	f, err := os.Open(*path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// The master picks the block size, so it can hash its blocks while the
	// replica computes its signature.
	if *block == 0 {
		*block = blocksync.BlockSize(fi.Size())
	}

	t0 := time.Now()
	nc, err := net.Dial("tcp", *addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := &countingConn{Conn: nc}
	req := []byte(reqMagic)
	if *inPlace {
		req = append(req, 1)
	} else {
		req = append(req, 0)
	}
	req = binary.AppendUvarint(req, uint64(*block))
	req = append(req, byte(*rounds))
	if _, err := c.Write(req); err != nil {
		return err
	}
	type prehashed struct {
		p   *blocksync.Prehashed
		err error
		d   time.Duration
	}
	pre := make(chan prehashed, 1)
	if *prehash {
		go func() {
			t := time.Now()
			p, err := blocksync.Prehash(f, fi.Size(), *block)
			pre <- prehashed{p, err, time.Since(t)}
		}()
	} else {
		pre <- prehashed{}
	}
	br := bufio.NewReaderSize(c, 1<<20)
	enc, err := readMsg(br, maxSig)
	if err != nil {
		return fmt.Errorf("reading signature: %w", err)
	}
	sig, err := blocksync.UnmarshalSignature(enc)
	if err != nil {
		return err
	}
	tSig := time.Since(t0)
	ph := <-pre
	if ph.err != nil {
		return ph.err
	}

	t1 := time.Now()
	opts := blocksync.DiffOptions{InPlace: *inPlace, Prehashed: ph.p}
	ow := blocksync.NewOpWriter(c)
	var st blocksync.Stats
	round1, fineBytes := int64(-1), 0
	if *rounds == 1 {
		if st, err = blocksync.DiffWith(sig, f, opts, ow.Write); err != nil {
			return err
		}
	} else {
		plan, err := blocksync.NewPlan(sig, f, opts)
		if err != nil {
			return err
		}
		round1 = plan.Stats().LiteralBytes
		want, err := blocksync.MarshalBlockList(plan.Wanted())
		if err != nil {
			return err
		}
		if err := writeMsg(c, want); err != nil {
			return err
		}
		b, err := readMsg(br, maxSig)
		if err != nil {
			return fmt.Errorf("reading refinement: %w", err)
		}
		fineBytes = len(b)
		fine, err := blocksync.UnmarshalSignature(b)
		if err != nil {
			return err
		}
		if st, err = plan.Emit(fine, f, ow.Write); err != nil {
			return err
		}
	}
	if err := ow.Flush(); err != nil {
		return err
	}
	tDiff := time.Since(t1)

	status, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("reading reply: %w", err)
	}
	mlen, err := binary.ReadUvarint(br)
	if err != nil || mlen > 1<<16 {
		return fmt.Errorf("reading reply: bad length (%v)", err)
	}
	msg := make([]byte, mlen)
	if _, err := io.ReadFull(br, msg); err != nil {
		return fmt.Errorf("reading reply: %w", err)
	}
	wall := time.Since(t0)
	if status != 0 {
		return fmt.Errorf("server: %s", msg)
	}
	fmt.Println(strings.Join([]string{
		fmt.Sprintf("wall_s=%.3f sent=%d received=%d total=%d", wall.Seconds(), c.written, c.read, c.written+c.read),
		fmt.Sprintf("rounds=%d block=%d sig_bytes=%d refine_bytes=%d literal_round1=%d literal=%d copied=%d ops=%d weak_hits=%d whole_file=%v",
			*rounds, sig.BlockSize, len(enc), fineBytes, round1, st.LiteralBytes, st.CopiedBytes, st.Ops, st.WeakHits, st.WholeFile()),
		fmt.Sprintf("client_sig_wait_s=%.3f client_prehash_s=%.3f client_diff_s=%.3f client_cpu_s=%.3f %s",
			tSig.Seconds(), ph.d.Seconds(), tDiff.Seconds(), cpuTime(), msg),
	}, " "))
	return nil
}

// cpuTime is the user and system CPU time this process has used, in
// seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// writeMsg sends b with its length in front.
func writeMsg(w io.Writer, b []byte) error {
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(b)))); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readMsg reads what writeMsg sent, refusing more than limit bytes.
func readMsg(r io.Reader, limit int) ([]byte, error) {
	var n uint32
	if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
		return nil, err
	}
	if int64(n) > int64(limit) {
		return nil, fmt.Errorf("message of %d bytes; at most %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// startProfile starts a CPU profile in path (with .N appended for session
// n > 0) if path is set, and returns the function that ends it.
func startProfile(path string, n int) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	if n > 0 {
		path = fmt.Sprintf("%s.%d", path, n)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing profile:", err)
		}
	}, nil
}
