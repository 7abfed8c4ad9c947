package vtl

import (
	"encoding/binary"

	"github.com/holdfast/holdfast/drivers/scsi"
)

// Sense keys (SPC-4).
const (
	keyNoSense        = 0x0
	keyNotReady       = 0x2
	keyMediumError    = 0x3
	keyHardwareError  = 0x4
	keyIllegalRequest = 0x5
	keyUnitAttention  = 0x6
	keyDataProtect    = 0x7
	keyBlankCheck     = 0x8
	keyVolumeOverflow = 0xD
)

// Flags in byte 2 of fixed-format sense data.
const (
	senseFM  = 0x80
	senseEOM = 0x40
	senseILI = 0x20
)

// sense is one condition to report in fixed format (response code 0x70).
type sense struct {
	key       byte
	asc, ascq byte
	flags     byte  // senseFM, senseEOM, senseILI
	info      int64 // the INFORMATION field; valid when infoValid
	infoValid bool
}

func (s sense) bytes() []byte {
	b := make([]byte, 18)
	b[0] = 0x70
	if s.infoValid {
		b[0] |= 0x80
	}
	b[2] = s.flags | s.key&0x0F
	binary.BigEndian.PutUint32(b[3:], uint32(int32(s.info)))
	b[7] = 10
	b[12], b[13] = s.asc, s.ascq
	return b
}

// checkCondition is a CHECK CONDITION result carrying s.
func checkCondition(s sense, residual int) scsi.Result {
	return scsi.Result{Status: scsi.StatusCheckCondition, Sense: s.bytes(), Residual: residual}
}

func illegal(asc, ascq byte) scsi.Result {
	return checkCondition(sense{key: keyIllegalRequest, asc: asc, ascq: ascq}, 0)
}

var (
	invalidOpcode  = func() scsi.Result { return illegal(0x20, 0x00) }
	invalidCDB     = func() scsi.Result { return illegal(0x24, 0x00) }
	invalidParam   = func() scsi.Result { return illegal(0x26, 0x00) }
	mediumAbsent   = sense{key: keyNotReady, asc: 0x3A, ascq: 0x00}
	mediumChanged  = sense{key: keyUnitAttention, asc: 0x28, ascq: 0x00}
	writeProtected = sense{key: keyDataProtect, asc: 0x27, ascq: 0x00}
	writeError     = sense{key: keyMediumError, asc: 0x0C, ascq: 0x00}
	readError      = sense{key: keyMediumError, asc: 0x11, ascq: 0x00}
	endOfData      = sense{key: keyBlankCheck, asc: 0x00, ascq: 0x05}
)

// reply copies data into the command's buffer and reports the residual.
func reply(cmd *scsi.Command, data []byte) scsi.Result {
	n := copy(cmd.Data, data)
	return scsi.Result{Residual: len(cmd.Data) - n}
}
