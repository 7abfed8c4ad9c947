package remote

import (
	"errors"

	"github.com/holdfast/holdfast/agent/apply"
	"github.com/holdfast/holdfast/agent/wire"
	"github.com/holdfast/holdfast/plugins/sdk"
)

// Error is a failure the replica host reported. It matches (errors.Is)
// the sentinel its code stands for, so that the engine treats a remote
// replica's failures as it treats a local one's.
type Error struct {
	Code wire.Code
	Text string
}

func (e *Error) Error() string { return e.Text }

// Is maps the code to apply's sentinels and sdk.ErrNotAuthorized.
func (e *Error) Is(target error) bool {
	switch e.Code {
	case wire.CodeNoSpace:
		return target == apply.ErrNoSpace
	case wire.CodeEscape:
		return target == apply.ErrEscape
	case wire.CodeBaseMismatch:
		return target == apply.ErrBaseMismatch
	case wire.CodeInUse:
		return target == apply.ErrInUse
	case wire.CodeNotAuthorized:
		return target == sdk.ErrNotAuthorized
	}
	return false
}

// failureOf describes err for the wire. A failure of one change keeps its
// name (seq, op, paths) and travels as such, so the client can rebuild an
// *apply.Error the engine recognises as the change's own fault.
func failureOf(err error, lastApplied uint64) wire.Failure {
	f := wire.Failure{Code: codeOf(err), Text: err.Error(), LastApplied: lastApplied}
	var ae *apply.Error
	if errors.As(err, &ae) {
		f.Change, f.Seq, f.Op, f.Path, f.NewPath = true, ae.Seq, ae.Op, ae.Path, ae.NewPath
		f.Text = ae.Err.Error()
	}
	return f
}

func codeOf(err error) wire.Code {
	switch {
	case errors.Is(err, apply.ErrNoSpace):
		return wire.CodeNoSpace
	case errors.Is(err, apply.ErrEscape):
		return wire.CodeEscape
	case errors.Is(err, apply.ErrBaseMismatch):
		return wire.CodeBaseMismatch
	case errors.Is(err, apply.ErrInUse):
		return wire.CodeInUse
	case errors.Is(err, sdk.ErrNotAuthorized):
		return wire.CodeNotAuthorized
	}
	return wire.CodeOther
}

// errorOf rebuilds the error a Failure describes.
func errorOf(f wire.Failure) error {
	err := error(&Error{Code: f.Code, Text: f.Text})
	if f.Change {
		return &apply.Error{Seq: f.Seq, Op: f.Op, Path: f.Path, NewPath: f.NewPath, Err: err}
	}
	return err
}
