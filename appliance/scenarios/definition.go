// Package scenarios registers protected data sets with the appliance: it
// validates scenario definitions, asks the scenario's handler plugin for its
// entities and keeps both in the catalog. Running, stopping and replicating
// scenarios belong to the replication engine, not here.
package scenarios

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/holdfast/holdfast/appliance/catalog"
)

// DefaultSnapshotsKeep is how many replica snapshots a scenario keeps unless
// told otherwise, the number operators of the product we replace expect.
const DefaultSnapshotsKeep = 10

// Definition is what an operator submits to create a scenario.
type Definition struct {
	Name            string    `json:"name" toml:"name"`
	Type            string    `json:"type" toml:"type"`
	Master          Master    `json:"master" toml:"master"`
	Replicas        []Replica `json:"replicas" toml:"replicas"`
	AssuredRecovery bool      `json:"assured_recovery,omitempty" toml:"assured_recovery"`
	// Suspend defaults to true when nil: a backup needs a consistent image,
	// and suspending replication for a snapshot is the way that always works.
	Suspend       *bool  `json:"suspend,omitempty" toml:"suspend"`
	SnapshotsKeep uint32 `json:"snapshots_keep,omitempty" toml:"snapshots_keep"`
	// Sync chooses how synchronization sends a file that differs: "auto"
	// (the default: whole up to 1 MiB, only changed blocks above), "file"
	// (always whole: fast LANs, many small files) or "block" (changed
	// blocks whenever the replica has a version: slow WANs).
	Sync string `json:"sync,omitempty" toml:"sync"`
}

// Master is the production host and the directories protected on it.
type Master struct {
	Host  string   `json:"host" toml:"host"`
	Roots []string `json:"roots" toml:"roots"`
}

// Replica is one target host and the directory that mirrors the roots.
type Replica struct {
	Host   string `json:"host" toml:"host"`
	Target string `json:"target" toml:"target"`
}

// FieldError says which field of a definition is wrong and why.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

const (
	maxNameLen  = 64
	maxRoots    = 256
	maxReplicas = 16
	maxPathLen  = 4096
)

// Hosts says which host names a definition may use.
type Hosts struct {
	Local []string // names that mean this appliance
	// Enrolled reports whether an agent with that name is enrolled (and
	// not revoked); nil means none is.
	Enrolled func(host string) bool
}

func (h Hosts) known(host string) bool {
	return slices.Contains(h.Local, host) || h.Enrolled != nil && h.Enrolled(host)
}

// Normalize fills defaults and checks everything that can be checked without
// asking a plugin or a host. localHosts are the names that mean this appliance.
func (d *Definition) Normalize(localHosts []string) error {
	return d.NormalizeFor(Hosts{Local: localHosts})
}

// NormalizeFor is Normalize for an appliance with enrolled agents.
func (d *Definition) NormalizeFor(hosts Hosts) error {
	localHosts := hosts.Local
	d.Name = strings.TrimSpace(d.Name)
	if err := checkName(d.Name); err != nil {
		return err
	}
	d.Type = strings.TrimSpace(d.Type)
	if d.Type == "" {
		return fieldErr("type", "missing: name a scenario type, e.g. fileserver ('holdfast plugins list' shows the installed ones)")
	}
	if err := checkHost("master.host", d.Master.Host, hosts); err != nil {
		return err
	}
	if len(d.Master.Roots) == 0 {
		return fieldErr("master.roots", "missing: give at least one directory to protect")
	}
	if len(d.Master.Roots) > maxRoots {
		return fieldErr("master.roots", "%d roots; at most %d", len(d.Master.Roots), maxRoots)
	}
	for i, r := range d.Master.Roots {
		if err := checkPath(fmt.Sprintf("master.roots[%d]", i), r); err != nil {
			return err
		}
	}
	for i, a := range d.Master.Roots {
		for j, b := range d.Master.Roots {
			if i != j && within(b, a) {
				if a == b {
					return fieldErr(fmt.Sprintf("master.roots[%d]", j), "%s is listed twice", b)
				}
				return fieldErr(fmt.Sprintf("master.roots[%d]", j), "%s lies inside root %s; list only the outer one", b, a)
			}
		}
	}
	if len(d.Replicas) == 0 {
		return fieldErr("replicas", "missing: give at least one replica host and target directory")
	}
	if len(d.Replicas) > maxReplicas {
		return fieldErr("replicas", "%d replicas; at most %d", len(d.Replicas), maxReplicas)
	}
	seen := map[string]bool{}
	for i, r := range d.Replicas {
		f := fmt.Sprintf("replicas[%d]", i)
		if err := checkHost(f+".host", r.Host, hosts); err != nil {
			return err
		}
		if hostKey(d.Master.Host, localHosts) == "\x00local" && hostKey(r.Host, localHosts) != "\x00local" {
			return fieldErr(f+".host", "%s is an agent and the master is the appliance itself; the appliance protects agents' data, so make the agent holding the data the master", r.Host)
		}
		if err := checkPath(f+".target", r.Target); err != nil {
			return err
		}
		key := hostKey(r.Host, localHosts) + "\x00" + r.Target
		if seen[key] {
			return fieldErr(f, "replica %s:%s is listed twice", r.Host, r.Target)
		}
		seen[key] = true
		if hostKey(r.Host, localHosts) == hostKey(d.Master.Host, localHosts) {
			for _, root := range d.Master.Roots {
				if within(r.Target, root) || within(root, r.Target) {
					return fieldErr(f+".target", "%s overlaps master root %s on the same host; replication would copy into its own source", r.Target, root)
				}
			}
		}
	}
	if d.Suspend == nil {
		on := !d.AssuredRecovery
		d.Suspend = &on
	}
	if d.SnapshotsKeep == 0 {
		d.SnapshotsKeep = DefaultSnapshotsKeep
	}
	if d.SnapshotsKeep > 1000 {
		return fieldErr("snapshots_keep", "%d; at most 1000", d.SnapshotsKeep)
	}
	switch d.Sync {
	case "":
		d.Sync = "auto"
	case "auto", "file", "block":
	default:
		return fieldErr("sync", "%q; use auto (whole small files, changed blocks of large ones), file or block", d.Sync)
	}
	return nil
}

func checkName(n string) error {
	if n == "" {
		return fieldErr("name", "missing")
	}
	if len(n) > maxNameLen {
		return fieldErr("name", "%d characters; at most %d", len(n), maxNameLen)
	}
	for i, r := range n {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.' || r == ' '
		if !ok {
			return fieldErr("name", "character %q at position %d; use letters, digits, space, '-', '_' and '.'", r, i+1)
		}
	}
	if r := rune(n[0]); !(unicode.IsLetter(r) || unicode.IsDigit(r)) {
		return fieldErr("name", "must start with a letter or digit")
	}
	return nil
}

func checkHost(field, h string, hosts Hosts) error {
	if h == "" {
		return fieldErr(field, "missing")
	}
	if hosts.known(h) {
		return nil
	}
	return fieldErr(field, "host %q is not enrolled: enroll its agent first ('holdfast agent token %s'), or use the appliance itself (%s)", h, h, strings.Join(hosts.Local, ", "))
}

func hostKey(h string, localHosts []string) string {
	if slices.Contains(localHosts, h) {
		return "\x00local"
	}
	return h
}

func checkPath(field, p string) error {
	if p == "" {
		return fieldErr(field, "missing")
	}
	if len(p) > maxPathLen {
		return fieldErr(field, "path longer than %d bytes", maxPathLen)
	}
	if strings.ContainsRune(p, 0) {
		return fieldErr(field, "path contains a NUL byte")
	}
	if !filepath.IsAbs(p) {
		return fieldErr(field, "%q is not an absolute path", p)
	}
	if filepath.Clean(p) != p {
		return fieldErr(field, "%q is not in clean form; write %q", p, filepath.Clean(p))
	}
	if p == "/" {
		return fieldErr(field, "the whole root filesystem cannot be a scenario root or target")
	}
	return nil
}

// within reports whether p is dir or lies below it. Both are clean and absolute.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// Record turns a normalized definition into the catalog's scenario record.
func (d *Definition) Record() catalog.Scenario {
	s := catalog.Scenario{
		Name:            d.Name,
		Type:            d.Type,
		MasterHost:      d.Master.Host,
		Roots:           append([]string(nil), d.Master.Roots...),
		AssuredRecovery: d.AssuredRecovery,
		Suspend:         d.Suspend != nil && *d.Suspend,
		SnapshotsKeep:   d.SnapshotsKeep,
		SyncMode:        d.Sync,
		State:           catalog.StateStopped,
	}
	for _, r := range d.Replicas {
		s.Replicas = append(s.Replicas, catalog.Replica{Host: r.Host, Target: r.Target})
	}
	return s
}
