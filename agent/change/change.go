// Package change is the unit of replication: one captured change to a
// master's tree, as it is spooled on the master, sent over the transport and
// applied on a replica. Its binary encoding is versioned and checksummed,
// because every decoder of it reads bytes that crossed a disk or a network.
package change

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// Op is what a change does.
type Op uint8

const (
	OpWrite       Op = iota + 1 // write Data at Offset (creating the file if absent)
	OpTruncate                  // set the file's size to Size
	OpCreate                    // create an empty regular file with Mode
	OpMkdir                     // create a directory with Mode
	OpSymlink                   // create a symlink at Path pointing to Target
	OpLink                      // create a hard link at NewPath to the file at Path
	OpRename                    // rename Path to NewPath (files or directories)
	OpRemove                    // remove a file, symlink or empty directory
	OpChmod                     // set Mode's permission bits
	OpChown                     // set UID and GID
	OpSetTimes                  // set the modification time to MTime
	OpSetXattr                  // set extended attribute XattrName to XattrValue
	OpRemoveXattr               // remove extended attribute XattrName
	OpReplaceFile               // replace the file at Path with Data whole (file-level sync)
	OpPatch                     // rebuild the file at Path from its current content and the delta in Data (block-level sync)
	opLimit
)

var opNames = [...]string{"", "write", "truncate", "create", "mkdir", "symlink", "link", "rename", "remove",
	"chmod", "chown", "settimes", "setxattr", "removexattr", "replacefile", "patch"}

func (o Op) String() string {
	if o > 0 && o < opLimit {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Change is one captured change. Paths are relative to the scenario root,
// slash-separated and clean (see ValidPath); the replica resolves them below
// its target directory and nowhere else.
//
// For OpPatch, Data is a delta of package blocksync in its wire encoding
// (the op frames written by blocksync.AppendOp or OpWriter, from the
// header op to the end op). This package treats it as opaque bytes: the
// frames carry their own version and checksums, and only the replica,
// which holds the old file, can check them against it.
type Change struct {
	Seq        uint64 // per scenario, increasing; the transport acknowledges by it
	Op         Op
	Path       string
	NewPath    string // OpRename, OpLink
	Target     string // OpSymlink
	Offset     int64  // OpWrite
	Size       int64  // OpTruncate
	Data       []byte // OpWrite, OpReplaceFile; OpPatch: an encoded delta (see below)
	Mode       uint32 // OpCreate, OpMkdir, OpChmod, OpReplaceFile, OpPatch
	UID, GID   uint32 // OpChown
	MTime      int64  // OpSetTimes, OpReplaceFile, OpPatch: Unix nanoseconds
	XattrName  string
	XattrValue []byte
	Captured   int64 // when the master saw it, Unix nanoseconds: replication lag
}

// Limits on decoded values, so a hostile or damaged record cannot make a
// decoder allocate without bound.
const (
	MaxPath      = 4096
	MaxData      = 16 << 20
	MaxXattrName = 255
	MaxXattrVal  = 64 << 10
)

// ErrInvalid is wrapped by every validation and decoding failure.
var ErrInvalid = errors.New("invalid change")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ValidPath checks a relative replication path: non-empty, valid UTF-8,
// no NUL, not absolute, clean, and never climbing out with "..".
func ValidPath(p string) error {
	switch {
	case p == "":
		return invalid("empty path")
	case len(p) > MaxPath:
		return invalid("path longer than %d bytes", MaxPath)
	case !utf8.ValidString(p):
		return invalid("path %q is not valid UTF-8", p)
	case strings.ContainsRune(p, 0):
		return invalid("path contains NUL")
	case strings.HasPrefix(p, "/"):
		return invalid("path %q is absolute", p)
	case path.Clean(p) != p || p == ".":
		return invalid("path %q is not clean", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return invalid("path %q leaves the root", p)
	}
	return nil
}

// Validate checks that the fields the op needs are present and sane.
func (c *Change) Validate() error {
	if c.Op == 0 || c.Op >= opLimit {
		return invalid("unknown op %d", c.Op)
	}
	if err := ValidPath(c.Path); err != nil {
		return err
	}
	switch c.Op {
	case OpRename, OpLink:
		if err := ValidPath(c.NewPath); err != nil {
			return fmt.Errorf("new path: %w", err)
		}
	case OpSymlink:
		if c.Target == "" || len(c.Target) > MaxPath || strings.ContainsRune(c.Target, 0) {
			return invalid("symlink target missing, too long or with NUL")
		}
	case OpWrite:
		if c.Offset < 0 {
			return invalid("negative offset %d", c.Offset)
		}
	case OpTruncate:
		if c.Size < 0 {
			return invalid("negative size %d", c.Size)
		}
	case OpPatch:
		// A delta holds at least its header and end ops; an empty one is
		// a sender's bug, not a no-op.
		if len(c.Data) == 0 {
			return invalid("patch without a delta")
		}
	case OpSetXattr, OpRemoveXattr:
		if c.XattrName == "" || len(c.XattrName) > MaxXattrName || strings.ContainsRune(c.XattrName, 0) {
			return invalid("xattr name missing, too long or with NUL")
		}
	}
	if len(c.Data) > MaxData {
		return invalid("data of %d bytes; at most %d", len(c.Data), MaxData)
	}
	if len(c.XattrValue) > MaxXattrVal {
		return invalid("xattr value of %d bytes; at most %d", len(c.XattrValue), MaxXattrVal)
	}
	return nil
}
