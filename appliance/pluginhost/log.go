package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/holdfast/holdfast/plugins/sdk"
)

// hclogAdapter lets go-plugin log into the daemon's slog logger.
//
// GetLevel deliberately reports hclog.Off. go-plugin parses a plugin's JSON
// log lines itself only when its logger is enabled, and that parser panics
// on a line such as {"@message": 5}: any plugin could crash holdfastd with
// one line of stderr. With the level reported as Off, go-plugin hands every
// stderr line untouched to ClientConfig.Stderr, where lineLogger parses it
// defensively. go-plugin's own messages still arrive through the methods
// below, which consult the slog handler's level instead.
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	implied []any
}

func newHCLogger(l *slog.Logger) hclog.Logger { return &hclogAdapter{l: l} }

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lv := slogLevel(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, len(a.implied)+len(args)+2)
	if a.name != "" {
		all = append(all, "logger", a.name)
	}
	all = append(all, a.implied...)
	all = append(all, args...)
	a.l.Log(ctx, lv, msg, all...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(level hclog.Level) bool {
	return a.l.Enabled(context.Background(), slogLevel(level))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any{}, a.implied...), args...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

// SetLevel is a no-op: the daemon's log level is set on its slog handler.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel reports Off; see the type's comment for why.
func (a *hclogAdapter) GetLevel() hclog.Level { return hclog.Off }

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineLogger{l: a.l, stream: "go-plugin"}
}

// maxLogLine bounds one logged line from a plugin; the rest is dropped.
const maxLogLine = 16 << 10

// maxLogFields bounds the fields taken from one JSON log line.
const maxLogFields = 32

// lineLogger turns a plugin's output stream into slog records, one per line.
// Lines that are hclog JSON (what the SDK's logger writes) keep their level
// and fields; other lines are logged as text, their level guessed from a
// "[LEVEL]" prefix, and everything after a Go panic header at error level so
// a crashing plugin's stack trace is not lost. Nothing from a plugin reaches
// the daemon's stdout.
type lineLogger struct {
	mu        sync.Mutex
	l         *slog.Logger
	stream    string
	buf       []byte
	truncated bool
	inPanic   bool
}

func newLineLogger(l *slog.Logger, stream string) *lineLogger {
	return &lineLogger{l: l, stream: stream}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.add(p)
			break
		}
		w.add(p[:i])
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineLogger) add(p []byte) {
	room := maxLogLine - len(w.buf)
	if len(p) > room {
		p = p[:room]
		w.truncated = true
	}
	w.buf = append(w.buf, p...)
}

func (w *lineLogger) emit() {
	line := strings.TrimRight(string(w.buf), "\r")
	truncated := w.truncated
	w.buf, w.truncated = w.buf[:0], false
	if strings.TrimSpace(line) == "" {
		return
	}
	attrs := []any{"stream", w.stream}
	if truncated {
		attrs = append(attrs, "truncated", true)
	}
	if msg, lv, fields, ok := parseJSONLine(line); ok {
		w.l.Log(context.Background(), lv, msg, append(attrs, fields...)...)
		return
	}
	lv := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[TRACE]"):
		lv = slog.LevelDebug - 4
	case strings.HasPrefix(line, "[DEBUG]"):
		lv = slog.LevelDebug
	case strings.HasPrefix(line, "[WARN]"):
		lv = slog.LevelWarn
	case strings.HasPrefix(line, "[ERROR]"):
		lv = slog.LevelError
	case strings.HasPrefix(line, "panic: "), strings.HasPrefix(line, "fatal error: "):
		w.inPanic = true
		lv = slog.LevelError
	case w.inPanic:
		lv = slog.LevelError
	}
	w.l.Log(context.Background(), lv, sdk.SanitizeText(line, maxLogLine), attrs...)
}

// parseJSONLine reads an hclog JSON line, checking every type: a plugin's
// output is untrusted.
func parseJSONLine(line string) (msg string, lv slog.Level, fields []any, ok bool) {
	if !strings.HasPrefix(line, "{") {
		return "", 0, nil, false
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return "", 0, nil, false
	}
	msg, isStr := m["@message"].(string)
	if !isStr {
		return "", 0, nil, false
	}
	lv = slog.LevelInfo
	if s, _ := m["@level"].(string); s != "" {
		switch strings.ToLower(s) {
		case "trace":
			lv = slog.LevelDebug - 4
		case "debug":
			lv = slog.LevelDebug
		case "warn", "warning":
			lv = slog.LevelWarn
		case "error":
			lv = slog.LevelError
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		switch k {
		case "@message", "@level", "@timestamp":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > maxLogFields {
		keys = keys[:maxLogFields]
	}
	for _, k := range keys {
		v := m[k]
		if s, isStr := v.(string); isStr {
			v = sdk.SanitizeText(s, maxLogLine)
		}
		fields = append(fields, "plugin."+sdk.SanitizeText(strings.TrimPrefix(k, "@"), 64), v)
	}
	return sdk.SanitizeText(msg, maxLogLine), lv, fields, true
}
