package sdk

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxErrorLen bounds the text of an error carried from a plugin to the host;
// longer messages are cut.
const MaxErrorLen = 4096

// HandlerError is an error a plugin's handler returned, as the host sees it.
// Anything else a client call returns is a failure to reach the plugin
// (crash, timeout, broken connection), which the host treats differently:
// a handler error says the work failed, not that the plugin did.
type HandlerError struct {
	Method  string // the call, e.g. "ListEntities"
	Message string // the handler's error text, sanitized by SanitizeText

	notAuthorized bool // the plugin returned ErrNotAuthorized
}

func (e *HandlerError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrNotAuthorized) hold on the host side when the
// plugin's error was (or wrapped) ErrNotAuthorized.
func (e *HandlerError) Is(target error) bool { return target == ErrNotAuthorized && e.notAuthorized }

// handlerStatus turns a handler's error into the gRPC status that marks it
// as the handler's own. codes.Unknown is reserved for this: gRPC itself uses
// other codes for transport failures (Unavailable, Canceled, Internal...).
func handlerStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	if errors.Is(err, ErrNotAuthorized) {
		code = codes.PermissionDenied
	}
	return status.Error(code, SanitizeText(err.Error(), MaxErrorLen))
}

// clientError classifies an error returned by a gRPC call into the plugin.
func clientError(method string, err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unknown:
			return &HandlerError{Method: method, Message: SanitizeText(st.Message(), MaxErrorLen)}
		case codes.PermissionDenied:
			return &HandlerError{Method: method, Message: SanitizeText(st.Message(), MaxErrorLen), notAuthorized: true}
		}
	}
	return fmt.Errorf("plugin call %s: %w", method, err)
}

// IsHandlerError reports whether err (or an error it wraps) is a
// HandlerError.
func IsHandlerError(err error) bool {
	var he *HandlerError
	return errors.As(err, &he)
}

// SanitizeText makes text from a plugin safe to put in a log line or an
// operator-facing message: invalid UTF-8 and control characters become
// U+FFFD or a space, and the result is cut to at most max bytes. Plugins are
// separate programs; their output is data, never formatting.
func SanitizeText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			r = ' '
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r):
			r = '\uFFFD'
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
