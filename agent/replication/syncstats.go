package replication

import (
	"fmt"
	"time"
)

// SyncStats are the figures of one synchronization.
type SyncStats struct {
	Elapsed       time.Duration
	Differences   int   // differences found by the comparison
	FilesWhole    int64 // files sent whole
	BytesWhole    int64
	FilesBlock    int64 // files sent block-level
	BytesLiteral  int64 // bytes block-level sync had to send
	BytesMatched  int64 // bytes it found already on the replica
	Removed       int64
	MetadataFixes int64
}

func (s SyncStats) String() string {
	if s.Differences == 0 {
		return "master and replica were already identical"
	}
	return fmt.Sprintf("%d differences; %d files whole (%d bytes), %d block-level (%d bytes sent, %d found on the replica), %d removed, %d metadata fixes",
		s.Differences, s.FilesWhole, s.BytesWhole, s.FilesBlock, s.BytesLiteral, s.BytesMatched, s.Removed, s.MetadataFixes)
}
