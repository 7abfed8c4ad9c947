package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/holdfast/holdfast/agent/replication"
	"github.com/holdfast/holdfast/agent/treesync"
	"github.com/holdfast/holdfast/agent/wire"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// ServerConfig is one replica served on this host.
type ServerConfig struct {
	Transport sdk.Transport
	Session   string // the session the master sends on
	// Master is the authenticated host name (sdk.Frame.Peer) allowed to
	// write; frames from any other host are refused.
	Master   string
	Scenario string // what the master's Hello must name
	Replica  string
	Target   string // the replica directory
	Logger   *slog.Logger
	// Held, when set, lists the replica while the server holds it open.
	Held *replication.Held
	// Local, when set, is how the replica is opened (its rewind journal);
	// nil opens it with the defaults.
	Local *replication.LocalOptions
}

// Server applies what one master sends for one replica.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	rep *replication.LocalReplica

	// Per receiving stream state.
	asm      wire.Assembler
	lastSeq  uint64            // highest frame Seq handled since the last Hello
	replies  map[uint64][]byte // recent replies by frame Seq, for redelivered frames
	replyLog []uint64

	sigID  uint64
	sigFor string
	sig    []byte
	scanID uint64
	scan   []scanItem

	// Page sizes; tests make them small to see many pages.
	sigPage, scanBudget int
}

// scanItem is one entry of a scan page, or one problem.
type scanItem struct {
	entry   *treesync.Entry
	problem *wire.Problem
}

// keepReplies is how many replies the server keeps for frames delivered
// again; a transport redelivers only the frames in flight.
const keepReplies = 64

// NewServer opens (creating if needed) the replica directory.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Master == "" || cfg.Session == "" || cfg.Transport == nil {
		return nil, errors.New("remote server: transport, session and master host are required")
	}
	var rep *replication.LocalReplica
	var err error
	if cfg.Local != nil {
		rep, err = replication.OpenLocalWith(cfg.Target, *cfg.Local)
	} else {
		rep, err = replication.OpenLocal(cfg.Target)
	}
	if err != nil {
		return nil, err
	}
	cfg.Held.Add(cfg.Target, rep)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("session", cfg.Session, "replica", cfg.Replica)
	return &Server{cfg: cfg, log: log, rep: rep, replies: map[uint64][]byte{},
		sigPage: wire.MaxPage, scanBudget: pageBudget}, nil
}

// LastApplied is the highest change Seq durably applied.
func (s *Server) LastApplied() uint64 { return s.rep.LastApplied() }

// Close closes the replica. Call it after Serve returned.
func (s *Server) Close() error {
	s.cfg.Held.Remove(s.cfg.Target, s.rep)
	return s.rep.Close()
}

// Serve receives and applies until ctx ends. A receiving stream that
// fails is opened again, after a pause that grows while it keeps failing.
func (s *Server) Serve(ctx context.Context) error {
	pause := 50 * time.Millisecond
	for {
		err := s.serveStream(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Warn("replica stream ended", "err", err)
			pause = min(2*pause, 5*time.Second)
		} else {
			pause = 50 * time.Millisecond
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) serveStream(ctx context.Context) error {
	// The transport keeps other senders off the session; the check of
	// every frame's Peer below stays, for transports that cannot.
	rcv, err := s.cfg.Transport.Receive(ctx, s.cfg.Session, s.cfg.Master)
	if err != nil {
		return fmt.Errorf("receive session %s: %w", s.cfg.Session, err)
	}
	defer rcv.Close()
	s.asm.Reset()
	for {
		f, err := rcv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive session %s: %w", s.cfg.Session, err)
		}
		reply := s.handle(f)
		if err := rcv.Ack(sdk.Ack{Seq: f.Seq, Payload: reply}); err != nil {
			return fmt.Errorf("acknowledge frame %d: %w", f.Seq, err)
		}
	}
}

// handle takes one frame and returns the reply its ack carries: nil for a
// fragment that does not end a message.
func (s *Server) handle(f sdk.Frame) []byte {
	if f.Peer != s.cfg.Master {
		// Nothing of it is kept: a message begun by the master is not
		// to be completed by another host's fragments either.
		s.asm.Reset()
		s.log.Warn("frame from a host that may not write this replica refused", "peer", f.Peer, "master", s.cfg.Master)
		return wire.Marshal(wire.Failure{Code: wire.CodeNotAuthorized,
			Text: fmt.Sprintf("host %q may not write replica %q", f.Peer, s.cfg.Replica)})
	}
	if f.Seq <= s.lastSeq && !isHello(f.Payload) {
		// Delivered again: the first delivery was handled.
		return s.replies[f.Seq]
	}
	msg, done, err := s.asm.Add(f.Payload)
	if err != nil {
		s.lastSeq = f.Seq
		return s.reply(f.Seq, wire.Failure{Code: wire.CodeBadRequest, Text: err.Error()})
	}
	if !done {
		s.lastSeq = f.Seq
		return nil
	}
	m, err := wire.Unmarshal(msg)
	if err != nil {
		s.lastSeq = f.Seq
		return s.reply(f.Seq, wire.Failure{Code: wire.CodeBadRequest, Text: err.Error()})
	}
	if _, ok := m.(wire.Hello); ok {
		// A Hello starts a stream: frame numbers restart above it.
		clear(s.replies)
		s.replyLog = s.replyLog[:0]
	}
	s.lastSeq = f.Seq
	return s.reply(f.Seq, s.serve(m))
}

// isHello says a frame holds a whole Hello message.
func isHello(payload []byte) bool {
	var a wire.Assembler
	msg, done, err := a.Add(payload)
	if err != nil || !done {
		return false
	}
	m, err := wire.Unmarshal(msg)
	_, ok := m.(wire.Hello)
	return err == nil && ok
}

// reply encodes r and keeps it for a redelivery of frame seq.
func (s *Server) reply(seq uint64, r wire.Message) []byte {
	b := wire.Marshal(r)
	if len(s.replyLog) == keepReplies {
		delete(s.replies, s.replyLog[0])
		s.replyLog = append(s.replyLog[:0], s.replyLog[1:]...)
	}
	s.replies[seq] = b
	s.replyLog = append(s.replyLog, seq)
	return b
}

func (s *Server) serve(m wire.Message) wire.Message {
	switch m := m.(type) {
	case wire.Hello:
		if m.Version != wire.ProtocolVersion {
			return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("protocol version %d; this replica speaks %d", m.Version, wire.ProtocolVersion)}
		}
		if m.Scenario != s.cfg.Scenario || m.Replica != s.cfg.Replica {
			return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("this session serves replica %q of scenario %q, not %q of %q",
				s.cfg.Replica, s.cfg.Scenario, m.Replica, m.Scenario)}
		}
		return wire.HelloReply{LastApplied: s.rep.LastApplied()}
	case wire.Apply:
		if err := s.rep.ApplyBatch(m.Changes); err != nil {
			s.log.Warn("apply failed", "err", err)
			return failureOf(err, s.rep.LastApplied())
		}
		return wire.Applied{LastApplied: s.rep.LastApplied()}
	case wire.SignatureRequest:
		return s.signaturePage(m)
	case wire.ScanRequest:
		return s.scanPage(m)
	}
	return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("a replica does not answer %s", m.Kind())}
}

func (s *Server) signaturePage(m wire.SignatureRequest) wire.Message {
	if m.ID == 0 {
		sig, err := s.rep.Signature(m.Path)
		if err != nil {
			return failureOf(err, s.rep.LastApplied())
		}
		b, err := sig.MarshalBinary()
		if err != nil {
			return failureOf(fmt.Errorf("signature of %s: %w", m.Path, err), s.rep.LastApplied())
		}
		s.sigID++
		s.sigFor, s.sig = m.Path, b
	} else if m.ID != s.sigID || m.Path != s.sigFor {
		return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("signature %d of %s is no longer kept; ask again", m.ID, m.Path)}
	}
	if m.Offset > int64(len(s.sig)) {
		return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("signature offset %d past its end %d", m.Offset, len(s.sig))}
	}
	end := min(int64(len(s.sig)), m.Offset+int64(s.sigPage))
	return wire.SignaturePage{ID: s.sigID, Total: int64(len(s.sig)), Offset: m.Offset, Data: s.sig[m.Offset:end]}
}

// pageBudget is what one scan page's entries and problems may take,
// leaving room for the message's own fields.
const pageBudget = wire.MaxPage - 8<<10

func (s *Server) scanPage(m wire.ScanRequest) wire.Message {
	if m.ID == 0 {
		entries, problems, err := s.rep.Scan()
		if err != nil {
			return failureOf(err, s.rep.LastApplied())
		}
		items := make([]scanItem, 0, len(entries)+len(problems))
		for i := range entries {
			e := &entries[i]
			if len(wire.AppendEntry(nil, e)) > s.scanBudget/2 {
				// Only extended attributes make an entry this large;
				// marked unread, the comparison leaves them alone.
				cp := *e
				cp.Xattrs, cp.XattrsUnread = nil, true
				e = &cp
				items = append(items, scanItem{problem: &wire.Problem{Path: e.Path, Text: "extended attributes too large to send in one page"}})
			}
			items = append(items, scanItem{entry: e})
		}
		for _, p := range problems {
			items = append(items, scanItem{problem: &wire.Problem{Path: p.Path, Text: p.Err.Error()}})
		}
		s.scanID++
		s.scan = items
	} else if m.ID != s.scanID {
		return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("scan %d is no longer kept; ask again", m.ID)}
	}
	if m.From > uint64(len(s.scan)) {
		return wire.Failure{Code: wire.CodeBadRequest, Text: fmt.Sprintf("scan cursor %d past its end %d", m.From, len(s.scan))}
	}
	page := wire.ScanPage{ID: s.scanID}
	size, i := 0, int(m.From)
	for ; i < len(s.scan) && size < s.scanBudget; i++ {
		it := s.scan[i]
		if it.entry != nil {
			n := len(wire.AppendEntry(nil, it.entry)) + 8
			if size+n > s.scanBudget && size > 0 {
				break
			}
			size += n
			page.Entries = append(page.Entries, *it.entry)
		} else {
			size += len(it.problem.Path) + len(it.problem.Text) + 16
			page.Problems = append(page.Problems, *it.problem)
		}
	}
	page.Next, page.More = uint64(i), i < len(s.scan)
	if !page.More {
		s.scan = nil // the last page was sent; memory back
	}
	return page
}
