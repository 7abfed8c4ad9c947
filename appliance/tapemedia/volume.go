// Package tapemedia puts Holdfast's tape layout (appliance/tapeformat) on
// a real drive (drivers/tape): it adapts a drive to the format's block
// interfaces, mapping the driver's conditions (early warning, end of
// medium, filemark, end of data) to the format's, and it works out where
// a session's blocks lie on a volume, so that one file can be read back
// after a LOCATE instead of the whole session.
package tapemedia

import (
	"context"
	"errors"
	"fmt"

	"github.com/holdfast/holdfast/appliance/tapeformat"
	"github.com/holdfast/holdfast/drivers/tape"
)

// Volume is a loaded tape seen through the format's interfaces. Its
// context bounds every command; each command has its own timeout in the
// driver besides.
type Volume struct {
	Ctx   context.Context
	Drive *tape.Drive
}

var (
	_ tapeformat.Drive  = Volume{}
	_ tapeformat.Source = Volume{}
)

// WriteBlock writes one variable-length block.
func (v Volume) WriteBlock(p []byte) error {
	n, err := v.Drive.Write(v.Ctx, p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tape.ErrEarlyWarning):
		return fmt.Errorf("%w (%v)", tapeformat.ErrEarlyWarning, err)
	case errors.Is(err, tape.ErrEndOfMedium) && n == 0:
		return fmt.Errorf("%w (%v)", tapeformat.ErrEndOfMedium, err)
	}
	return err
}

// WriteFilemarks writes n filemarks.
func (v Volume) WriteFilemarks(n int) error {
	err := v.Drive.WriteFilemarks(v.Ctx, n)
	if errors.Is(err, tape.ErrEarlyWarning) {
		return fmt.Errorf("%w (%v)", tapeformat.ErrEarlyWarning, err)
	}
	return err
}

// ReadBlock reads the next block.
func (v Volume) ReadBlock(p []byte) (int, error) {
	n, err := v.Drive.Read(v.Ctx, p)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, tape.ErrFilemark):
		return 0, tapeformat.ErrFilemark
	case errors.Is(err, tape.ErrEndOfData):
		return 0, tapeformat.ErrEndOfData
	}
	return n, err
}

// Prepare readies a loaded tape for the format: variable-block mode, at
// the beginning.
func Prepare(ctx context.Context, d *tape.Drive) error {
	if err := d.SetBlockSize(ctx, 0); err != nil {
		return fmt.Errorf("set variable-block mode: %w", err)
	}
	if err := d.Rewind(ctx); err != nil {
		return fmt.Errorf("rewind: %w", err)
	}
	return nil
}

// SessionStart is where a session's tape file starts on a volume: the
// logical object number of its header block (from READ POSITION before
// it was written), and the number of the first data block that follows.
type SessionStart struct {
	Object    uint64
	FirstData uint64
}

// Locate positions the drive at the data block of a session holding pos,
// from where the session's part on this volume starts. Data blocks follow
// their header one after the other, so block n is at Object+1+(n-First).
func Locate(ctx context.Context, d *tape.Drive, start SessionStart, pos tapeformat.Position) error {
	if pos.Seq < start.FirstData {
		return fmt.Errorf("block %d is before this volume's part of the session (from block %d)", pos.Seq, start.FirstData)
	}
	return d.Locate(ctx, start.Object+1+(pos.Seq-start.FirstData))
}
