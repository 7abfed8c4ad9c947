// Package jobsecrets keeps the passwords jobs need — the password that
// protects the sessions a backup writes, the one that opens a session a
// restore reads — in memory only, by job number. Job specs are stored in
// clear in the catalog, so a password never goes there; the price is that
// after holdfastd restarts a job whose password it no longer knows fails
// with a message asking to submit it again.
package jobsecrets

import "sync"

// Secrets maps job numbers to passwords. The zero value is ready to use;
// it is safe for concurrent use.
type Secrets struct {
	mu sync.Mutex
	m  map[uint64]string
}

// Set keeps the password of a job.
func (s *Secrets) Set(job uint64, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[uint64]string{}
	}
	s.m[job] = password
}

// Get returns the password of a job, and whether one is known.
func (s *Secrets) Get(job uint64) (string, bool) {
	if s == nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[job]
	return p, ok
}

// Forget drops the password of a job (deleted, or done for good).
func (s *Secrets) Forget(job uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, job)
}
