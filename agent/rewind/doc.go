// Package rewind is continuous data protection for a replica tree: before
// a replicated change is applied (package apply), it records durably what
// undoes it, so that the whole tree, or one path of it, can be rewound to
// any applied change (a point), a time or a named bookmark. A rewind is
// journaled like changes are, so it can itself be undone. See
// docs/rewind.md for the design and its limits.
//
// The journal lives in <target>/.holdfast/rewind/: segment files of
// checksummed records and blobs/, the old file versions kept (hard links
// to the old inode where the applier never writes it again, copies
// otherwise). Retention by size and age drops whole oldest segments.
package rewind
