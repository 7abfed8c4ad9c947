package treesync

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DiffKind says how one path differs between master and replica.
type DiffKind uint8

const (
	// MissingOnReplica: the master has the path, the replica does not.
	// For a directory, this one difference stands for everything below it.
	MissingOnReplica DiffKind = iota + 1
	// ExtraOnReplica: the replica has a path the master does not. Every
	// such path is listed, those below an extra directory included, so
	// that they can be removed deepest first.
	ExtraOnReplica
	// TypeDiffers: both have the path, as different types of object. When
	// the master's is a directory, this one difference stands for
	// everything below it, as for MissingOnReplica.
	TypeDiffers
	// ContentDiffers: a regular file's size or modification time differs.
	// Like rsync's quick check, equal size and mtime count as equal
	// content: reading every byte of both trees would make a verify scan
	// cost a full read of each.
	ContentDiffers
	// MetadataDiffers: the mode, owner, user.* extended attributes,
	// symlink target, or (for directories and symlinks) modification time
	// differs.
	MetadataDiffers
	// LinkDiffers: a regular file is a hard link of other paths on one
	// side and not on the other, or of other paths. Difference.Link tells
	// what the master has.
	LinkDiffers
	diffKindLimit
)

var kindNames = [...]string{"", "missing on replica", "extra on replica", "type differs",
	"content differs", "metadata differs", "hard links differ"}

func (k DiffKind) String() string {
	if k > 0 && k < diffKindLimit {
		return kindNames[k]
	}
	return "diffkind(" + strconv.Itoa(int(k)) + ")"
}

// Difference is one path that differs. Master and Replica are the entries
// on either side (nil where absent).
type Difference struct {
	Path    string
	Kind    DiffKind
	Master  *Entry
	Replica *Entry
	// Link is set when the master's entry is a regular file that other
	// master paths are hard links of and Path is not the first of them:
	// it is that first path, whose content stands for all of them. The
	// planner links Path to it instead of sending the content again.
	Link string
}

// String says what differs, for a person reading a difference report.
func (d Difference) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", d.Kind, d.Path)
	switch d.Kind {
	case MissingOnReplica:
		fmt.Fprintf(&b, " (%s", describe(d.Master))
		if d.Master.Type == Dir {
			b.WriteString(", with everything below it")
		}
		if d.Link != "" {
			fmt.Fprintf(&b, ", a hard link of %s", d.Link)
		}
		b.WriteString(")")
	case ExtraOnReplica:
		fmt.Fprintf(&b, " (%s)", describe(d.Replica))
	case TypeDiffers:
		fmt.Fprintf(&b, " (master: %s; replica: %s)", describe(d.Master), describe(d.Replica))
	case ContentDiffers:
		fmt.Fprintf(&b, " (master: %d bytes, modified %s; replica: %d bytes, modified %s)",
			d.Master.Size, stamp(d.Master.MTime), d.Replica.Size, stamp(d.Replica.MTime))
	case MetadataDiffers:
		fmt.Fprintf(&b, " (%s)", strings.Join(metaDetails(d.Master, d.Replica), "; "))
	case LinkDiffers:
		if d.Link != "" {
			fmt.Fprintf(&b, " (master: a hard link of %s; replica: not)", d.Link)
		} else {
			b.WriteString(" (master: a file of its own; replica: a hard link of other paths)")
		}
	}
	return b.String()
}

func describe(e *Entry) string {
	if e == nil {
		return "absent"
	}
	switch e.Type {
	case File:
		return fmt.Sprintf("file, %d bytes", e.Size)
	case Symlink:
		return fmt.Sprintf("symlink to %q", e.Target)
	}
	return e.Type.String()
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// metaDetails lists the metadata that differs, master's value first.
func metaDetails(m, r *Entry) []string {
	var out []string
	if m.Type == Symlink && m.Target != r.Target {
		out = append(out, fmt.Sprintf("target %q on master, %q on replica", m.Target, r.Target))
	}
	if m.Type != Symlink && m.Mode != r.Mode {
		out = append(out, fmt.Sprintf("mode %#o on master, %#o on replica", m.Mode, r.Mode))
	}
	if m.UID != r.UID || m.GID != r.GID {
		out = append(out, fmt.Sprintf("owner %d:%d on master, %d:%d on replica", m.UID, m.GID, r.UID, r.GID))
	}
	if m.Type != File && m.MTime != r.MTime {
		out = append(out, fmt.Sprintf("modified %s on master, %s on replica", stamp(m.MTime), stamp(r.MTime)))
	}
	if names := xattrsDiffer(m, r); len(names) > 0 {
		out = append(out, "extended attributes "+strings.Join(names, ", "))
	}
	return out
}

// xattrsDiffer lists the attribute names that differ, unless either side
// could not read its attributes.
func xattrsDiffer(m, r *Entry) []string {
	if m.XattrsUnread || r.XattrsUnread {
		return nil
	}
	var names []string
	for n, v := range m.Xattrs {
		if w, ok := r.Xattrs[n]; !ok || !bytes.Equal(v, w) {
			names = append(names, n)
		}
	}
	for n := range r.Xattrs {
		if _, ok := m.Xattrs[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// CompareOptions adjust Compare. The zero value compares everything.
type CompareOptions struct {
	// IgnoreOwner leaves owners out, for a replica whose applier does not
	// preserve them (not running as root, or apply.OwnerIgnore).
	IgnoreOwner bool
}

// Compare lists how replica differs from master, sorted by path. See
// CompareWith.
func Compare(master, replica []Entry) []Difference {
	return CompareWith(master, replica, CompareOptions{})
}

// CompareWith lists how replica differs from master, sorted by path, one
// Difference per path. The entries need not be sorted.
//
// A directory missing on the replica, or of another type there, is one
// difference: what lies below it is implied, not listed (the planner reads
// it from the master when it creates the directory). An extra directory on
// the replica is listed with everything below it. Below a directory that
// is Unlisted on either side nothing is compared, since one side's
// listing is unknown; the scan's problems say so.
//
// Hard links count: a file that is another name of a file on one side must
// be the same on the other, or the paths differ with LinkDiffers. Inode
// numbers themselves mean nothing across hosts and are not compared, nor
// are link counts (other names may lie outside the tree).
func CompareWith(master, replica []Entry, opts CompareOptions) []Difference {
	m, r := byPath(master), byPath(replica)
	paths := make([]string, 0, max(len(m), len(r)))
	for p := range m {
		paths = append(paths, p)
	}
	for p := range r {
		if _, ok := m[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	mLinks := Links(master)
	rLinks := replicaLinks(replica, m)

	skip := map[string]bool{} // directories whose contents are implied or unknown
	var out []Difference
	for _, p := range paths {
		if below(p, skip) {
			continue
		}
		me, re := m[p], r[p]
		d := Difference{Path: p, Master: me, Replica: re}
		switch {
		case re == nil:
			d.Kind = MissingOnReplica
			if me.Type == Dir {
				skip[p] = true
			}
		case me == nil:
			d.Kind = ExtraOnReplica
		case me.Type != re.Type:
			d.Kind = TypeDiffers
			if me.Type == Dir {
				skip[p] = true
			}
		default:
			if me.Type == Dir && (me.Unlisted || re.Unlisted) {
				skip[p] = true
			}
			d.Kind = compareEntries(me, re, leader(me, mLinks), leader(re, rLinks), opts)
			if d.Kind == 0 {
				continue
			}
		}
		if me != nil && me.Type == File {
			if l := leader(me, mLinks); l != p {
				d.Link = l
			}
		}
		out = append(out, d)
	}
	return out
}

func byPath(entries []Entry) map[string]*Entry {
	m := make(map[string]*Entry, len(entries))
	for i := range entries {
		e := entries[i]
		m[e.Path] = &e
	}
	return m
}

// below reports whether an ancestor of p is in set.
func below(p string, set map[string]bool) bool {
	if len(set) == 0 {
		return false
	}
	for i := strings.LastIndexByte(p, '/'); i > 0; i = strings.LastIndexByte(p[:i], '/') {
		if set[p[:i]] {
			return true
		}
	}
	return false
}

// Links maps every regular file that has several names among entries to
// the first of those names in path order. Compare uses it for the master's
// hard links; give it to Planner.Links too, so that the planner links the
// files it finds below new directories instead of sending them again.
func Links(entries []Entry) map[FileID]string {
	return linkGroups(entries, func(*Entry) bool { return true })
}

// replicaLinks is Links of the replica, counting only paths that are
// regular files on the master too: a link to an extra path that is about
// to be removed says nothing about the paths that stay.
func replicaLinks(replica []Entry, master map[string]*Entry) map[FileID]string {
	return linkGroups(replica, func(e *Entry) bool {
		me := master[e.Path]
		return me != nil && me.Type == File
	})
}

func linkGroups(entries []Entry, keep func(*Entry) bool) map[FileID]string {
	first := map[FileID]string{}
	count := map[FileID]int{}
	for i := range entries {
		e := &entries[i]
		if e.Type != File || e.Nlink < 2 || !keep(e) {
			continue
		}
		id := e.ID()
		if l, ok := first[id]; !ok || e.Path < l {
			first[id] = e.Path
		}
		count[id]++
	}
	for id, n := range count {
		if n < 2 {
			delete(first, id)
		}
	}
	return first
}

// leader is the first name of e's hard-link group, or e's own path.
func leader(e *Entry, links map[FileID]string) string {
	if e.Type == File && e.Nlink > 1 {
		if l, ok := links[e.ID()]; ok {
			return l
		}
	}
	return e.Path
}

// compareEntries compares two entries of the same path and type; 0 means
// equal. mLeader and rLeader are the first names of the path's hard-link
// group on either side.
func compareEntries(m, r *Entry, mLeader, rLeader string, opts CompareOptions) DiffKind {
	if m.Type == File && mLeader != rLeader {
		return LinkDiffers
	}
	if m.Type == File && (m.Size != r.Size || m.MTime != r.MTime) {
		return ContentDiffers
	}
	switch {
	case m.Type == Symlink && m.Target != r.Target,
		m.Type != Symlink && m.Mode != r.Mode,
		!opts.IgnoreOwner && (m.UID != r.UID || m.GID != r.GID),
		m.Type != File && m.MTime != r.MTime,
		len(xattrsDiffer(m, r)) > 0:
		return MetadataDiffers
	}
	return 0
}
