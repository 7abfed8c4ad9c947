package catalog

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// batchWriter stages writes in a Pebble batch and keeps the first error, so
// multi-key updates read as a plain list of sets and deletes.
type batchWriter struct {
	b   *pebble.Batch
	err error
}

func (c *Catalog) newBatch() *batchWriter {
	return &batchWriter{b: c.db.NewBatch()}
}

func (w *batchWriter) set(key, value []byte) {
	if w.err == nil {
		if err := w.b.Set(key, value, nil); err != nil {
			w.err = fmt.Errorf("stage %s: %w", FormatKey(key), err)
		}
	}
}

func (w *batchWriter) del(key []byte) {
	if w.err == nil {
		if err := w.b.Delete(key, nil); err != nil {
			w.err = fmt.Errorf("stage delete %s: %w", FormatKey(key), err)
		}
	}
}

// nextID allocates from sequence name inside this batch.
func (w *batchWriter) nextID(c *Catalog, name string) uint64 {
	if w.err != nil {
		return 0
	}
	id, err := nextID(c.db, w.b, name)
	w.err = err
	return id
}

// commit applies the batch atomically (with fsync when sync is set) and
// releases it. It must be called exactly once, also after a staging error,
// so the batch is always released.
func (w *batchWriter) commit(c *Catalog, sync bool) error {
	if w.err != nil {
		if err := w.b.Close(); err != nil {
			return errors.Join(w.err, fmt.Errorf("release batch: %w", err))
		}
		return w.err
	}
	return c.commit(w.b, sync)
}
