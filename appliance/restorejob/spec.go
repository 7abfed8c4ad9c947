package restorejob

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/holdfast/holdfast/agent/restore"
)

// Destinations besides a folder.
const (
	// Original means where the files were on the master.
	Original = "original"
	// Replica means the same place on the scenario's replicas; the
	// scenario is stopped first.
	Replica = "replica"
)

// Spec is a restore job's payload: what to restore — one session (all of
// it, or some of its paths), or a tree as it stood — and where to.
type Spec struct {
	Session uint64   `json:"session,omitempty"`
	Paths   []string `json:"paths,omitempty"` // master paths in Session; empty: the whole session
	// Tree restores, instead of one session, a directory or file of a
	// master host: every file below it at its latest version backed up
	// at or before AsOf (the latest when zero), whatever session holds it.
	Tree *Tree `json:"tree,omitempty"`
	// Destination is Original, Replica, an absolute folder on this
	// appliance, or HOST:/folder on an enrolled agent.
	Destination string `json:"destination"`
	Policy      string `json:"policy,omitempty"`
	// ContinueIfRunning lets a restore to the replica go on when the
	// scenario cannot be stopped.
	ContinueIfRunning bool `json:"continue_if_running,omitempty"`
}

// Tree is a restore by tree.
type Tree struct {
	Host string    `json:"host"`
	Path string    `json:"path"`
	AsOf time.Time `json:"as_of,omitzero"`
}

// Check validates a spec before it is queued.
func (s Spec) Check() error {
	switch {
	case s.Session == 0 && s.Tree == nil:
		return errors.New("session: missing: give the session number ('holdfast restore find' and 'holdfast job show' list them) or a tree to restore")
	case s.Session != 0 && s.Tree != nil:
		return errors.New("give a session or a tree, not both")
	case s.Tree != nil && len(s.Paths) > 0:
		return errors.New("paths: a tree restore takes its path in the tree, not in paths")
	}
	if s.Tree != nil {
		if s.Tree.Host == "" {
			return errors.New("tree: the master host is missing")
		}
		if !path.IsAbs(s.Tree.Path) || path.Clean(s.Tree.Path) != s.Tree.Path {
			return fmt.Errorf("tree: %q is not a clean absolute master path", s.Tree.Path)
		}
	}
	if _, _, err := ParseDestination(s.Destination); err != nil {
		return err
	}
	for _, p := range s.Paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("path: %q is not an absolute master path", p)
		}
	}
	if s.Policy != "" {
		if _, err := restore.ParsePolicy(s.Policy); err != nil {
			return err
		}
	}
	return nil
}

// ParseDestination splits a destination into an agent host ("" for this
// appliance, or for Original and Replica, which name no host) and a folder
// (or the keyword).
func ParseDestination(d string) (host, dir string, err error) {
	switch {
	case d == Original || d == Replica:
		return "", d, nil
	case filepath.IsAbs(d):
		return "", filepath.Clean(d), nil
	}
	host, dir, ok := strings.Cut(d, ":")
	if ok && host != "" && !strings.ContainsAny(host, "/ ") && filepath.IsAbs(dir) {
		return host, filepath.Clean(dir), nil
	}
	return "", "", fmt.Errorf("destination: %q: give %q, %q, an absolute folder here, or HOST:/folder on an enrolled agent", d, Original, Replica)
}
