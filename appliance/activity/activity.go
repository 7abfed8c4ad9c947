// Package activity is the appliance's activity log: the operator-facing record
// of what Holdfast did and what went wrong, each entry with a message code.
// Entries go to the catalog (so they survive restarts and can be filtered) and
// to the structured daemon log.
package activity

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/holdfast/holdfast/appliance/catalog"
	"github.com/holdfast/holdfast/appliance/messages"
)

// Recorder is what parts of the appliance need to report an event. Parts take
// this interface rather than *Log so they can be tested without a catalog.
type Recorder interface {
	Record(ctx context.Context, code messages.Code, args ...any)
}

// Store is the part of the catalog the log writes to.
type Store interface {
	AppendActivity(e catalog.ActivityEntry) (catalog.ActivityEntry, error)
}

// Log writes activity entries for one host.
type Log struct {
	store  Store
	host   string
	logger *slog.Logger
	now    func() time.Time
}

// New returns a Log that stores entries in store, attributed to host.
func New(store Store, host string, logger *slog.Logger) *Log {
	return &Log{store: store, host: host, logger: logger, now: time.Now}
}

type jobKey struct{}

// WithJob returns a context whose entries are attributed to job id.
func WithJob(ctx context.Context, id uint64) context.Context {
	return context.WithValue(ctx, jobKey{}, id)
}

func jobOf(ctx context.Context) uint64 {
	id, _ := ctx.Value(jobKey{}).(uint64)
	return id
}

type hostKey struct{}

// WithHost returns a context whose entries are attributed to host instead
// of the log's own: what an agent reports happened on the agent.
func WithHost(ctx context.Context, host string) context.Context {
	return context.WithValue(ctx, hostKey{}, host)
}

// Record appends an entry for code, its text filled with args. A failure to
// store the entry is itself logged to the daemon log: the activity log must
// never be the reason an operation fails.
func (l *Log) Record(ctx context.Context, code messages.Code, args ...any) {
	l.write(ctx, code, messages.Format(code, args...))
}

// RecordError records err under the code of the first *messages.Error in its
// chain, with the text it already carries; an error without a code is
// recorded as an internal error so that it is never lost.
func (l *Log) RecordError(ctx context.Context, err error) {
	var me *messages.Error
	if !errors.As(err, &me) {
		l.write(ctx, messages.InternalError, messages.Format(messages.InternalError, err))
		return
	}
	l.write(ctx, me.Code, me.Text())
}

func (l *Log) write(ctx context.Context, code messages.Code, text string) {
	sev := catalog.Error
	if m, ok := messages.Lookup(code); ok {
		sev = m.Severity
	}
	e := catalog.ActivityEntry{
		Time:     l.now().UTC(),
		JobID:    jobOf(ctx),
		Severity: sev,
		Code:     string(code),
		Host:     l.host,
		Message:  text,
	}
	if h, ok := ctx.Value(hostKey{}).(string); ok && h != "" {
		e.Host = h
	}
	level := slog.LevelInfo
	switch sev {
	case catalog.Warning:
		level = slog.LevelWarn
	case catalog.Error:
		level = slog.LevelError
	}
	l.logger.Log(ctx, level, e.Message, "code", e.Code, "job", e.JobID)
	if _, err := l.store.AppendActivity(e); err != nil {
		l.logger.Error("activity log entry not stored", "code", e.Code, "err", err)
	}
}
