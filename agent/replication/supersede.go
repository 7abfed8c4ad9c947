package replication

import (
	"path"
	"strings"

	"github.com/holdfast/holdfast/agent/change"
)

// superseded returns batch without the whole-file replacements that a
// later replacement of the same path in the batch makes pointless, and
// without the metadata changes that only finished them. Capture sends a new
// file twice (its creation, then the write that filled it), and on the
// replica the second replacement of a path in a batch ends a run of whole
// files, costing a commit of its own; it also costs sending the first
// version at all.
//
// An OpReplaceFile c_i of path P is dropped for a later OpReplaceFile c_j
// of P only when the result cannot differ:
//   - every change between them is either a metadata change of P itself
//     (OpChmod, OpChown, OpSetTimes, OpSetXattr, OpRemoveXattr: it finished
//     c_i, and is dropped with it), a metadata change of a directory above
//     P (c_j moves that directory's entries just as c_i would have), or a
//     change that does not name P, a path above it or a path below it;
//   - what c_j would have inherited from c_i's result is set again after
//     c_j: a replacement carries over the owner and the extended
//     attributes of the file it replaces (its mode and mtime are its own),
//     so a dropped OpChown needs an OpChown, and a dropped xattr change of
//     a name a change of that name, among the metadata changes of P that
//     directly follow c_j.
//
// The last change of the batch is never dropped, so applying the rest
// still brings the replica's LastApplied to the batch's end. batch itself
// is not modified.
func superseded(batch []change.Change) []change.Change {
	type candidate struct {
		i        int   // index of the OpReplaceFile
		finished []int // indexes of the metadata changes of its path after it
	}
	live := map[string]*candidate{} // by path: the latest droppable replacement
	var drop []bool
	// blockAbove forgets the candidates at the directories above p.
	blockAbove := func(p string) {
		for a := path.Dir(p); a != "." && a != "/"; a = path.Dir(a) {
			delete(live, a)
		}
	}
	// blockAt forgets the candidates at p, above p and below p.
	blockAt := func(p string) {
		if p == "" {
			return
		}
		delete(live, p)
		blockAbove(p)
		for q := range live {
			if strings.HasPrefix(q, p+"/") {
				delete(live, q)
			}
		}
	}
	for k := range batch {
		c := &batch[k]
		if change.ValidPath(c.Path) != nil || (c.NewPath != "" && change.ValidPath(c.NewPath) != nil) {
			// The replica refuses it; reason about nothing across it.
			clear(live)
			continue
		}
		meta := isMetadataOp(c.Op)
		cand, isCand := live[c.Path]
		switch {
		case isCand && meta:
			// It finishes the candidate's file.
			cand.finished = append(cand.finished, k)
			blockAbove(c.Path)
		case isCand && c.Op == change.OpReplaceFile:
			if covers(batch, k, cand.finished) {
				if drop == nil {
					drop = make([]bool, len(batch))
				}
				drop[cand.i] = true
				for _, f := range cand.finished {
					drop[f] = true
				}
			}
			live[c.Path] = &candidate{i: k}
		case meta:
			// Metadata of a directory leaves the candidates below it
			// droppable; metadata of a path below a candidate (which
			// cannot exist while it is a file) does not.
			blockAbove(c.Path)
		default:
			blockAt(c.Path)
			blockAt(c.NewPath)
			if c.Op == change.OpReplaceFile {
				live[c.Path] = &candidate{i: k}
			}
		}
	}
	if drop == nil {
		return batch
	}
	out := make([]change.Change, 0, len(batch))
	for k := range batch {
		if !drop[k] {
			out = append(out, batch[k])
		}
	}
	return out
}

// covers reports whether the metadata changes of the path of batch[j] (an
// OpReplaceFile) that directly follow it set again everything that the
// changes at the indexes finished set on the file it replaces.
func covers(batch []change.Change, j int, finished []int) bool {
	p := batch[j].Path
	chown := false
	xattrs := map[string]bool{}
	for k := j + 1; k < len(batch) && batch[k].Path == p && isMetadataOp(batch[k].Op); k++ {
		switch batch[k].Op {
		case change.OpChown:
			chown = true
		case change.OpSetXattr, change.OpRemoveXattr:
			xattrs[batch[k].XattrName] = true
		}
	}
	for _, f := range finished {
		switch c := &batch[f]; c.Op {
		case change.OpChown:
			if !chown {
				return false
			}
		case change.OpSetXattr, change.OpRemoveXattr:
			if !xattrs[c.XattrName] {
				return false
			}
		}
		// OpChmod and OpSetTimes: the replacement sets its own mode and
		// mtime, whatever the file it replaces had.
	}
	return true
}

// isMetadataOp reports the changes that set an attribute of an existing
// entry without touching its name or content.
func isMetadataOp(op change.Op) bool {
	switch op {
	case change.OpChmod, change.OpChown, change.OpSetTimes, change.OpSetXattr, change.OpRemoveXattr:
		return true
	}
	return false
}
