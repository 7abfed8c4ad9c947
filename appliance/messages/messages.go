// Package messages is Holdfast's message catalog: every user-visible failure
// or notice has a code, and each code has a module, a text template, the likely
// reason and what the operator should do. The activity log, the API, the CLI
// and the consoles all show these, so an operator can look a code up once and
// know what it means wherever it appears.
package messages

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// Code identifies a message: "HF-" + severity letter + four digits. The first
// digit names the area: 1 daemon and API, 2 catalog, 3 plugins, 4 scenarios
// and replication, 5 backup, 6 restore, 7 tape, 8 appliance.
type Code string

// Message is one entry of the catalog.
type Message struct {
	Code     Code
	Severity catalog.Severity
	Module   string
	Text     string // fmt template; arguments come from the caller
	Reason   string
	Action   string
	// Legacy names the integration message of the product we replace that
	// means the same thing, so administrators migrating can map their runbooks.
	Legacy string
}

var registry = map[Code]Message{}

func register(ms ...Message) {
	for _, m := range ms {
		if _, dup := registry[m.Code]; dup {
			panic("messages: duplicate code " + string(m.Code))
		}
		registry[m.Code] = m
	}
}

// Lookup returns the catalog entry for code.
func Lookup(code Code) (Message, bool) {
	m, ok := registry[code]
	return m, ok
}

// All returns every message, ordered by code.
func All() []Message {
	out := make([]Message, 0, len(registry))
	for _, m := range registry {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Format renders the message text of code with args. An unknown code still
// renders, so a missing catalog entry never hides the underlying problem.
func Format(code Code, args ...any) string {
	m, ok := registry[code]
	if !ok {
		return fmt.Sprint(append([]any{string(code) + ":"}, args...)...)
	}
	return fmt.Sprintf(m.Text, args...)
}

// Error is an error that carries a message code. The API and the CLI show the
// code with the catalog's reason and action.
type Error struct {
	Code Code
	Msg  string
	Err  error // the underlying cause, if any
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s", e.Code, e.Text())
}

// Text is the message without its code: the rendered template, followed by
// the cause unless the template already shows it.
func (e *Error) Text() string {
	if e.Err != nil && !strings.Contains(e.Msg, e.Err.Error()) {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error whose text is the catalog template for code filled
// with args.
func New(code Code, args ...any) *Error {
	return &Error{Code: code, Msg: Format(code, args...)}
}

// Wrap is New with an underlying cause.
func Wrap(err error, code Code, args ...any) *Error {
	return &Error{Code: code, Msg: Format(code, args...), Err: err}
}

// CodeOf returns the code of the first *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
