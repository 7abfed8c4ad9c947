package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/holdfast/holdfast/appliance/messages"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// call runs one request to a plugin with the host's guarantees: it fails
// fast when the plugin is down, gives up after CallTimeout (VerifyTimeout
// for Verify), turns a reply
// that fails validation into PluginBadReply, and turns a panic while
// handling a reply into an error rather than a dead daemon.
//
// Errors: PluginUnavailable (down, or the connection broke during the call),
// PluginTimeout, PluginBadReply, the caller's own context error, or the
// plugin's answer (an *sdk.HandlerError, wrapped with the plugin's name) for
// the caller to report with its own code.
func (in *instance) call(ctx context.Context, method string, fn func(ctx context.Context, s sdk.ScenarioHandler, t sdk.Transport) error) (err error) {
	scen, trans, err := in.current()
	if err != nil {
		return err
	}
	timeout := in.host.cfg.timeoutFor(method)
	ours := time.Now().Add(timeout)
	cctx, cancel := context.WithDeadline(ctx, ours)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			in.host.logger.Error("panic while calling a plugin", "plugin", in.man.Name, "method", method, "panic", r, "stack", string(debug.Stack()))
			err = in.callProblem(messages.New(messages.PluginBadReply, in.man.Name, method, fmt.Sprintf("reply could not be handled: %v", r)))
		}
	}()
	err = fn(cctx, scen, trans)
	return in.classify(ctx, cctx, ours, method, err)
}

// classify maps a call's error. ours is the deadline the host set; the
// caller's ctx may have an earlier one of its own.
func (in *instance) classify(ctx, cctx context.Context, ours time.Time, method string, err error) error {
	if err == nil {
		return nil
	}
	name := in.man.Name
	// gRPC can report the deadline (the plugin's side hit it first) a
	// moment before cctx's own timer fires, hence the status check.
	timedOut := cctx.Err() != nil || status.Code(err) == codes.DeadlineExceeded
	callerDeadline, hasCallerDeadline := ctx.Deadline()
	var bad *badReplyError
	switch {
	case errors.As(err, &bad):
		return in.callProblem(messages.New(messages.PluginBadReply, name, method, bad.err))
	case ctx.Err() != nil:
		// The caller gave up; not the plugin's fault.
		return fmt.Errorf("plugin %s: %s: %w", name, method, ctx.Err())
	case timedOut && hasCallerDeadline && !callerDeadline.After(ours):
		return fmt.Errorf("plugin %s: %s: %w", name, method, context.DeadlineExceeded)
	case timedOut:
		return in.callProblem(messages.New(messages.PluginTimeout, name, method, in.host.cfg.timeoutFor(method)))
	case sdk.IsHandlerError(err):
		return fmt.Errorf("plugin %s: %s: %w", name, method, err)
	}
	// The connection failed: most likely the process died. Have the
	// supervisor look now rather than at its next poll.
	in.poke()
	return in.callProblem(messages.Wrap(err, messages.PluginUnavailable, name, "the connection failed during "+method))
}

// callProblem keeps a call's failure as the plugin's last problem (List
// shows it) and logs it. It is not recorded in the activity log: the caller
// gets the coded error and reports it within its job.
func (in *instance) callProblem(e *messages.Error) error {
	in.mu.Lock()
	in.status.LastError = sdk.SanitizeText(e.Msg, maxErrorText)
	in.status.LastCode = string(e.Code)
	in.mu.Unlock()
	in.host.logger.Warn("plugin call failed", "plugin", in.man.Name, "code", e.Code, "err", e.Msg)
	return e
}

// scenarioHandle is the sdk.ScenarioHandler the rest of the daemon uses. It
// stays bound to the plugin, not to one process, so it keeps working after
// a restart.
type scenarioHandle struct{ in *instance }

var _ sdk.ScenarioHandler = (*scenarioHandle)(nil)

func (s *scenarioHandle) Describe(ctx context.Context) (info sdk.ScenarioInfo, err error) {
	err = s.in.call(ctx, "Describe", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		i, err := h.Describe(ctx)
		if err != nil {
			return err
		}
		info = i
		return validated(sdk.ValidateInfo(i))
	})
	if err != nil {
		return sdk.ScenarioInfo{}, err
	}
	return info, nil
}

func (s *scenarioHandle) ListEntities(ctx context.Context, cfg sdk.ScenarioConfig) (ents []sdk.Entity, err error) {
	err = s.in.call(ctx, "ListEntities", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		e, err := h.ListEntities(ctx, cfg)
		if err != nil {
			return err
		}
		ents = e
		return validated(sdk.ValidateEntities(cfg, e))
	})
	if err != nil {
		return nil, err
	}
	return ents, nil
}

func (s *scenarioHandle) PrepareBackup(ctx context.Context, cfg sdk.ScenarioConfig, entity string) (r sdk.PrepareResult, err error) {
	err = s.in.call(ctx, "PrepareBackup", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		res, err := h.PrepareBackup(ctx, cfg, entity)
		if err != nil {
			return err
		}
		r = res
		return validated(sdk.ValidatePrepareResult(res))
	})
	if err != nil {
		return sdk.PrepareResult{}, err
	}
	return r, nil
}

func (s *scenarioHandle) ReleaseBackup(ctx context.Context, holdID string) error {
	return s.in.call(ctx, "ReleaseBackup", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		return h.ReleaseBackup(ctx, holdID)
	})
}

func (s *scenarioHandle) Verify(ctx context.Context, req sdk.VerifyRequest) (r sdk.VerifyResult, err error) {
	err = s.in.call(ctx, "Verify", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		res, err := h.Verify(ctx, req)
		if err != nil {
			return err
		}
		r = res
		return validated(sdk.ValidateVerifyResult(res))
	})
	if err != nil {
		return sdk.VerifyResult{}, err
	}
	return r, nil
}

func (s *scenarioHandle) BeforeRestore(ctx context.Context, req sdk.RestoreRequest) error {
	return s.in.call(ctx, "BeforeRestore", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		return h.BeforeRestore(ctx, req)
	})
}

func (s *scenarioHandle) AfterRestore(ctx context.Context, req sdk.RestoreRequest) error {
	return s.in.call(ctx, "AfterRestore", func(ctx context.Context, h sdk.ScenarioHandler, _ sdk.Transport) error {
		return h.AfterRestore(ctx, req)
	})
}

// transportHandle is the sdk.Transport the rest of the daemon uses.
// Describe is bounded by CallTimeout like any call; a stream lives as long
// as the ctx it was opened with, so the caller bounds it. Frames and acks
// from the plugin are checked: frames must fit sdk.MaxFramePayload and come
// with increasing sequence numbers; each ack must be for the oldest frame
// not yet acked.
type transportHandle struct{ in *instance }

var _ sdk.Transport = (*transportHandle)(nil)

func (t *transportHandle) Describe(ctx context.Context) (info sdk.TransportInfo, err error) {
	err = t.in.call(ctx, "Describe", func(ctx context.Context, _ sdk.ScenarioHandler, tr sdk.Transport) error {
		i, err := tr.Describe(ctx)
		if err != nil {
			return err
		}
		info = i
		return validated(sdk.ValidateTransportInfo(i))
	})
	if err != nil {
		return sdk.TransportInfo{}, err
	}
	return info, nil
}

// Configure gives the transport its settings and remembers them, so that
// a transport restarted after a crash is configured again before use.
func (t *transportHandle) Configure(ctx context.Context, settings map[string]string) error {
	kept := make(map[string]string, len(settings))
	for k, v := range settings {
		kept[k] = v
	}
	err := t.in.call(ctx, "Configure", func(ctx context.Context, _ sdk.ScenarioHandler, tr sdk.Transport) error {
		return tr.Configure(ctx, kept)
	})
	if err == nil {
		t.in.mu.Lock()
		t.in.settings = kept
		t.in.mu.Unlock()
	}
	return err
}

func (t *transportHandle) Send(ctx context.Context, peer, session string) (sdk.FrameSender, error) {
	_, tr, err := t.in.current()
	if err != nil {
		return nil, err
	}
	s, err := tr.Send(ctx, peer, session)
	if err != nil {
		return nil, t.in.streamError(ctx, "Send", err)
	}
	return &checkedSender{in: t.in, ctx: ctx, s: s}, nil
}

func (t *transportHandle) Receive(ctx context.Context, session, peer string) (sdk.FrameReceiver, error) {
	_, tr, err := t.in.current()
	if err != nil {
		return nil, err
	}
	r, err := tr.Receive(ctx, session, peer)
	if err != nil {
		return nil, t.in.streamError(ctx, "Receive", err)
	}
	return &checkedReceiver{in: t.in, ctx: ctx, r: r}, nil
}

// streamError classifies an error from a stream like classify does for
// calls; io.EOF passes through untouched since it is how streams end.
func (in *instance) streamError(ctx context.Context, method string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var bad *badReplyError
	switch {
	case errors.As(err, &bad):
		return in.callProblem(messages.New(messages.PluginBadReply, in.man.Name, method, bad.err))
	case ctx.Err() != nil:
		return fmt.Errorf("plugin %s: %s: %w", in.man.Name, method, ctx.Err())
	case errors.Is(err, io.EOF), sdk.IsHandlerError(err):
		return fmt.Errorf("plugin %s: %s: %w", in.man.Name, method, err)
	}
	in.poke()
	return in.callProblem(messages.Wrap(err, messages.PluginUnavailable, in.man.Name, "the connection failed during "+method))
}

type checkedSender struct {
	in  *instance
	ctx context.Context
	s   sdk.FrameSender

	mu      sync.Mutex
	lastSeq uint64
	sentAny bool
	unacked []uint64
}

func (c *checkedSender) Send(f sdk.Frame) error {
	if err := sdk.ValidateFrame(f); err != nil {
		return fmt.Errorf("send to plugin %s: %w", c.in.man.Name, err)
	}
	c.mu.Lock()
	if c.sentAny && f.Seq <= c.lastSeq {
		c.mu.Unlock()
		return fmt.Errorf("send to plugin %s: frame %d does not follow frame %d", c.in.man.Name, f.Seq, c.lastSeq)
	}
	c.lastSeq, c.sentAny = f.Seq, true
	c.unacked = append(c.unacked, f.Seq)
	c.mu.Unlock()
	return c.in.streamError(c.ctx, "Send", c.s.Send(f))
}

func (c *checkedSender) Recv() (sdk.Ack, error) {
	a, err := c.s.Recv()
	if err != nil {
		return sdk.Ack{}, c.in.streamError(c.ctx, "Send", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.unacked) == 0 || c.unacked[0] != a.Seq {
		want := "no frame is waiting for one"
		if len(c.unacked) > 0 {
			want = fmt.Sprintf("expected ack %d", c.unacked[0])
		}
		return sdk.Ack{}, c.in.streamError(c.ctx, "Send", &badReplyError{fmt.Errorf("ack %d out of order: %s", a.Seq, want)})
	}
	c.unacked = c.unacked[1:]
	if err := sdk.ValidateAck(a); err != nil {
		return sdk.Ack{}, c.in.streamError(c.ctx, "Send", &badReplyError{err})
	}
	return a, nil
}

func (c *checkedSender) CloseSend() error { return c.in.streamError(c.ctx, "Send", c.s.CloseSend()) }

type checkedReceiver struct {
	in  *instance
	ctx context.Context
	r   sdk.FrameReceiver

	mu      sync.Mutex
	lastSeq uint64
	gotAny  bool
}

func (c *checkedReceiver) Recv() (sdk.Frame, error) {
	f, err := c.r.Recv()
	if err != nil {
		return sdk.Frame{}, c.in.streamError(c.ctx, "Receive", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := sdk.ValidateFrame(f); err != nil {
		return sdk.Frame{}, c.in.streamError(c.ctx, "Receive", &badReplyError{err})
	}
	if c.gotAny && f.Seq <= c.lastSeq {
		return sdk.Frame{}, c.in.streamError(c.ctx, "Receive", &badReplyError{fmt.Errorf("frame %d does not follow frame %d", f.Seq, c.lastSeq)})
	}
	c.lastSeq, c.gotAny = f.Seq, true
	return f, nil
}

func (c *checkedReceiver) Ack(a sdk.Ack) error {
	return c.in.streamError(c.ctx, "Receive", c.r.Ack(a))
}

func (c *checkedReceiver) Close() error { return c.in.streamError(c.ctx, "Receive", c.r.Close()) }
