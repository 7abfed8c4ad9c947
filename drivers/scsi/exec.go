package scsi

import (
	"context"
	"errors"
	"fmt"
)

// Operation codes the drivers send.
const (
	OpTestUnitReady          = 0x00
	OpRewind                 = 0x01
	OpRequestSense           = 0x03
	OpReadBlockLimits        = 0x05
	OpInitializeElementStat  = 0x07
	OpRead6                  = 0x08
	OpWrite6                 = 0x0A
	OpWriteFilemarks         = 0x10
	OpSpace                  = 0x11
	OpInquiry                = 0x12
	OpModeSelect6            = 0x15
	OpErase                  = 0x19
	OpModeSense6             = 0x1A
	OpLoadUnload             = 0x1B
	OpPreventAllowRemoval    = 0x1E
	OpLocate10               = 0x2B
	OpReadPosition           = 0x34
	OpLogSelect              = 0x4C
	OpLogSense               = 0x4D
	OpModeSelect10           = 0x55
	OpModeSense10            = 0x5A
	OpReadAttribute          = 0x8C
	OpWriteAttribute         = 0x8D
	OpLocate16               = 0x92
	OpMoveMedium             = 0xA5
	OpExchangeMedium         = 0xA6
	OpReadElementStatus      = 0xB8
	OpInitializeElementRange = 0xE7
)

var opNames = map[byte]string{
	OpTestUnitReady: "TEST UNIT READY", OpRewind: "REWIND", OpRequestSense: "REQUEST SENSE",
	OpReadBlockLimits: "READ BLOCK LIMITS", OpInitializeElementStat: "INITIALIZE ELEMENT STATUS",
	OpRead6: "READ(6)", OpWrite6: "WRITE(6)", OpWriteFilemarks: "WRITE FILEMARKS", OpSpace: "SPACE",
	OpInquiry: "INQUIRY", OpModeSelect6: "MODE SELECT(6)", OpErase: "ERASE", OpModeSense6: "MODE SENSE(6)",
	OpLoadUnload: "LOAD UNLOAD", OpPreventAllowRemoval: "PREVENT ALLOW MEDIUM REMOVAL",
	OpLocate10: "LOCATE(10)", OpReadPosition: "READ POSITION", OpLogSelect: "LOG SELECT",
	OpLogSense: "LOG SENSE", OpModeSelect10: "MODE SELECT(10)", OpModeSense10: "MODE SENSE(10)",
	OpReadAttribute: "READ ATTRIBUTE", OpWriteAttribute: "WRITE ATTRIBUTE", OpLocate16: "LOCATE(16)",
	OpMoveMedium: "MOVE MEDIUM", OpExchangeMedium: "EXCHANGE MEDIUM",
	OpReadElementStatus: "READ ELEMENT STATUS", OpInitializeElementRange: "INITIALIZE ELEMENT STATUS WITH RANGE",
}

// OpName names a CDB's operation code for messages.
func OpName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("operation 0x%02x", op)
}

var statusNames = map[byte]string{
	StatusGood: "GOOD", StatusCheckCondition: "CHECK CONDITION", StatusConditionMet: "CONDITION MET",
	StatusBusy: "BUSY", StatusReservationConflict: "RESERVATION CONFLICT",
	StatusTaskSetFull: "TASK SET FULL", StatusTaskAborted: "TASK ABORTED",
}

// StatusName names a SCSI status byte.
func StatusName(s byte) string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status 0x%02x", s)
}

// CheckConditionError is a command the device refused or completed with
// an exception, with its sense decoded. When the sense could not be
// decoded, SenseErr says why and Sense is zero.
type CheckConditionError struct {
	Op       byte
	Sense    Sense
	SenseErr error
	Residual int
}

func (e *CheckConditionError) Error() string {
	if e.SenseErr != nil {
		return fmt.Sprintf("%s: CHECK CONDITION with unusable sense: %v", OpName(e.Op), e.SenseErr)
	}
	return fmt.Sprintf("%s: CHECK CONDITION: %s", OpName(e.Op), e.Sense)
}

// StatusError is a command answered with a status other than GOOD or
// CHECK CONDITION (BUSY, RESERVATION CONFLICT, TASK SET FULL, ...): the
// command did not run, and may be retried later.
type StatusError struct {
	Op     byte
	Status byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: %s", OpName(e.Op), StatusName(e.Status))
}

// Exec runs cmd on dev and turns every outcome other than GOOD into an
// error: a transport failure (wrapped, as Do returned it), a
// *CheckConditionError or a *StatusError. The Result is returned in all
// cases so a caller can read the residual of a short transfer.
func Exec(ctx context.Context, dev Device, cmd *Command) (Result, error) {
	if len(cmd.CDB) == 0 {
		return Result{}, errors.New("scsi: empty CDB")
	}
	op := cmd.CDB[0]
	res, err := dev.Do(ctx, cmd)
	if err != nil {
		return res, fmt.Errorf("%s: %w", OpName(op), err)
	}
	switch res.Status {
	case StatusGood, StatusConditionMet:
		return res, nil
	case StatusCheckCondition:
		s, serr := ParseSense(res.Sense)
		return res, &CheckConditionError{Op: op, Sense: s, SenseErr: serr, Residual: res.Residual}
	default:
		return res, &StatusError{Op: op, Status: res.Status}
	}
}

// SenseOf finds the decoded sense in an error chain.
func SenseOf(err error) (Sense, bool) {
	var cc *CheckConditionError
	if errors.As(err, &cc) && cc.SenseErr == nil {
		return cc.Sense, true
	}
	return Sense{}, false
}

// IsSense reports whether err carries sense with this key, ASC and ASCQ.
func IsSense(err error, key, asc, ascq byte) bool {
	s, ok := SenseOf(err)
	return ok && s.Key == key && s.ASC == asc && s.ASCQ == ascq
}
