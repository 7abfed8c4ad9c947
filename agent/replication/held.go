package replication

import (
	"path/filepath"
	"sync"
)

// Held is the set of local replicas a process holds open, by directory:
// a replica role's server holds its directory for as long as it serves,
// and nothing else may open it meanwhile (the applier's lock), so the
// appliance's rewind, snapshot and test service reaches it through here.
type Held struct {
	mu sync.Mutex
	m  map[string]*LocalReplica
}

// Add records r as the open replica of dir.
func (h *Held) Add(dir string, r *LocalReplica) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*LocalReplica{}
	}
	h.m[filepath.Clean(dir)] = r
}

// Remove forgets dir if r still holds it.
func (h *Held) Remove(dir string, r *LocalReplica) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m[filepath.Clean(dir)] == r {
		delete(h.m, filepath.Clean(dir))
	}
}

// Get returns the replica holding dir, or nil.
func (h *Held) Get(dir string) *LocalReplica {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[filepath.Clean(dir)]
}
