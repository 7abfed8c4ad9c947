// Package scsi is the pass-through every tape driver speaks: a Device
// executes one command descriptor block (CDB) with an optional data
// transfer and a timeout, and returns the SCSI status, the sense data
// and how much data moved. Real hardware answers through SG_IO on
// /dev/sg* (Linux), a USB autoloader through the same node (usb-storage)
// or a Bulk-Only Transport path, and the virtual library (drivers/vtl)
// answers from file-backed tapes — so the changer and tape drivers
// above run unchanged against all of them.
package scsi

import (
	"context"
	"time"
)

// Direction is the data transfer's direction.
type Direction uint8

const (
	// None: the command moves no data.
	None Direction = iota
	// FromDevice: the device fills Data (READ, INQUIRY, ...).
	FromDevice
	// ToDevice: the device reads Data (WRITE, MODE SELECT, ...).
	ToDevice
)

// Command is one CDB to execute.
type Command struct {
	CDB  []byte
	Dir  Direction
	Data []byte // the buffer to fill or send; its length is the transfer length
	// Timeout bounds the command on the device side; zero means the
	// Device's default. Tape commands differ widely: a REWIND or a LOCATE
	// takes minutes, a TEST UNIT READY seconds.
	Timeout time.Duration
}

// Status codes a device returns (SAM-5).
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusTaskAborted         = 0x40
)

// Result is what came back from one command.
type Result struct {
	Status byte
	// Sense holds the sense data returned with a CHECK CONDITION (fixed or
	// descriptor format), empty otherwise.
	Sense []byte
	// Residual is the part of Data that was not transferred (a short
	// read of a variable block, for instance).
	Residual int
}

// Device executes commands on one logical unit. Implementations are safe
// for use by one goroutine at a time; drivers serialize their commands.
type Device interface {
	// Do runs the command. An error means the command could not be
	// delivered or its outcome is unknown (transport failure, timeout,
	// device gone); a command the device answered with a non-GOOD status
	// returns a nil error and the status and sense in the Result, for the
	// driver to interpret.
	Do(ctx context.Context, cmd *Command) (Result, error)
	// Close releases the device.
	Close() error
}
