package diskstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrBusy: sessions are being written, so Prune cannot run now.
var ErrBusy = errors.New("sessions are being written")

// DeleteSession removes a session's root. Its chunks stay until Prune.
func (s *Store) DeleteSession(id string) error {
	if _, err := s.readRoot(id); err != nil && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("delete session: %w", err)
	}
	dir := filepath.Join(s.dir, "sessions")
	if err := os.Remove(filepath.Join(dir, id)); err != nil {
		return ioErr(err, "delete session %s", id)
	}
	return syncDir(dir)
}

// PruneStats says what Prune did.
type PruneStats struct {
	LiveChunks     int
	PacksDeleted   int
	PacksRewritten int
	BytesFreed     int64
}

// Prune deletes chunks no committed session names: packs without a live
// chunk are deleted, packs with dead chunks are rewritten with only their
// live ones (the blobs are copied as they are: nothing in a blob depends
// on its pack). Protocol:
//
//   - Other processes: the store's flock (held from Open to Close) means
//     no other process writes the store while this one prunes.
//   - This process: Prune takes the session lock exclusively and returns
//     ErrBusy if a session is being written (a writer deduplicates against
//     chunks no committed session may name yet); BeginSession waits
//     while Prune runs.
//   - Crash safety: a rewritten pack is durable under its final name
//     before the old one is deleted, so a crash leaves a chunk in two
//     packs at worst (both valid; the next Prune removes one), never in
//     none. If any session root or manifest cannot be read, Prune refuses:
//     it cannot know what that session needs.
func (s *Store) Prune() (PruneStats, error) {
	var st PruneStats
	if !s.active.TryLock() {
		return st, fmt.Errorf("prune: %w", ErrBusy)
	}
	defer s.active.Unlock()
	// Chunks of aborted sessions in the open pack: finish it so it is
	// pruned like any other.
	if err := s.flush(); err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	live, err := s.liveChunks()
	if err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	st.LiveChunks = len(live)

	s.mu.Lock()
	defer s.mu.Unlock()
	byPack := make([][]ID, len(s.packs))
	for id, l := range s.index {
		byPack[l.pack] = append(byPack[l.pack], id)
	}
	for n, ids := range byPack {
		// A chunk held by two packs (a crash during an earlier prune) is
		// listed only under the one the index points to; a pack none of
		// whose blobs the index points to is deleted.
		var keep []ID
		for _, id := range ids {
			if live[id] {
				keep = append(keep, id)
			}
		}
		if len(keep) == len(ids) && len(ids) > 0 {
			continue
		}
		old := packPath(s.dir, s.packs[n])
		fi, err := os.Stat(old)
		if err != nil {
			return st, ioErr(err, "prune")
		}
		if len(keep) > 0 {
			size, err := s.rewritePackLocked(n, keep)
			if err != nil {
				return st, fmt.Errorf("prune: rewrite pack %s: %w", s.packs[n], err)
			}
			st.PacksRewritten++
			st.BytesFreed -= size
		} else {
			st.PacksDeleted++
		}
		if f, ok := s.files[n]; ok {
			f.Close()
			delete(s.files, n)
		}
		if err := os.Remove(old); err != nil {
			return st, ioErr(err, "prune: delete pack %s", s.packs[n])
		}
		st.BytesFreed += fi.Size()
	}
	if err := syncDir(filepath.Join(s.dir, "packs")); err != nil {
		return st, err
	}
	for _, f := range s.files {
		f.Close()
	}
	s.files = map[int]*os.File{}
	s.packs, s.index = nil, map[ID]location{}
	if err := s.loadIndex(); err != nil {
		return st, fmt.Errorf("prune: reload index: %w", err)
	}
	s.log.Info("diskstore: pruned", "live_chunks", st.LiveChunks, "packs_deleted", st.PacksDeleted,
		"packs_rewritten", st.PacksRewritten, "bytes_freed", st.BytesFreed)
	return st, nil
}

// liveChunks returns every chunk a committed session names.
func (s *Store) liveChunks() (map[ID]bool, error) {
	sessions, err := s.ListSessions()
	if err != nil {
		return nil, fmt.Errorf("a session root cannot be read, so its chunks are unknown: %w", err)
	}
	live := map[ID]bool{}
	for _, info := range sessions {
		r, err := s.readRoot(info.ID)
		if err != nil {
			return nil, err
		}
		if r.lock != nil {
			// A protected session's chunks are known from its pins; its
			// manifest is not readable without the password.
			for _, id := range r.pins {
				live[id] = true
			}
			continue
		}
		for _, id := range r.manifest {
			live[id] = true
		}
		ss, err := s.OpenSession(info.ID)
		if err != nil {
			return nil, err
		}
		for _, en := range ss.entries {
			for _, id := range en.Chunks {
				live[id] = true
			}
		}
	}
	return live, nil
}

// rewritePackLocked copies the blobs keep of pack n into a new finished
// pack and returns the new pack's size.
func (s *Store) rewritePackLocked(n int, keep []ID) (int64, error) {
	f, err := s.packFileLocked(n)
	if err != nil {
		return 0, err
	}
	w, err := createPack(s.dir)
	if err != nil {
		return 0, err
	}
	for _, id := range keep {
		l := s.index[id]
		blob := make([]byte, l.length)
		if _, err := f.ReadAt(blob, int64(l.offset)); err != nil {
			w.abort()
			return 0, ioErr(err, "read chunk %s", shortID(id))
		}
		if _, err := w.append(l.kind, id, blob); err != nil {
			w.abort()
			return 0, err
		}
	}
	if err := w.finish(s.kr); err != nil {
		w.abort()
		return 0, err
	}
	fi, err := os.Stat(packPath(s.dir, w.name))
	if err != nil {
		return 0, ioErr(err, "stat new pack")
	}
	return fi.Size(), nil
}
