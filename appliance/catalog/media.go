package catalog

import (
	"fmt"
	"time"
)

// CreateMedia stores a new medium, assigning its ID from the media sequence
// and setting Created when zero. Synced.
func (c *Catalog) CreateMedia(m Media) (Media, error) {
	done, err := c.enterWrite()
	if err != nil {
		return Media{}, fmt.Errorf("create media %q: %w", m.Label, err)
	}
	defer done()
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	w := c.newBatch()
	m.ID = w.nextID(c, seqMedia)
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	w.set(mediaKey(m.ID), encodeMedia(m))
	if err := w.commit(c, true); err != nil {
		return Media{}, fmt.Errorf("create media %q: %w", m.Label, err)
	}
	return m, nil
}

// PutMedia replaces an existing medium (usage, pool moves); ErrNotFound if
// CreateMedia never handed out its ID. Synced.
func (c *Catalog) PutMedia(m Media) error {
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("put media %d: %w", m.ID, err)
	}
	defer done()
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	key := mediaKey(m.ID)
	if _, err := get(c.db, key); err != nil {
		return fmt.Errorf("put media %d: %w", m.ID, err)
	}
	w := c.newBatch()
	w.set(key, encodeMedia(m))
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("put media %d: %w", m.ID, err)
	}
	return nil
}

// Media returns the medium with the given ID.
func (c *Catalog) Media(id uint64) (Media, error) {
	done, err := c.enter()
	if err != nil {
		return Media{}, fmt.Errorf("read media %d: %w", id, err)
	}
	defer done()
	m, err := readByID(c.db, mediaKey(id), id, decodeMedia)
	if err != nil {
		return Media{}, fmt.Errorf("read media %d: %w", id, err)
	}
	return m, nil
}

// MediaList returns every medium in ID order.
func (c *Catalog) MediaList() ([]Media, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list media: %w", err)
	}
	defer done()
	out, err := listByID(c.db, prefixMedia, decodeMedia)
	if err != nil {
		return nil, fmt.Errorf("list media: %w", err)
	}
	return out, nil
}
