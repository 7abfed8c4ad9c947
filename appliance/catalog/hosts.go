package catalog

import (
	"fmt"
)

// PutHost creates or replaces the host with h.Name, synced.
func (c *Catalog) PutHost(h Host) error {
	if h.Name == "" {
		return fmt.Errorf("put host: %w", invalidf("host name is empty"))
	}
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("put host %q: %w", h.Name, err)
	}
	defer done()
	c.hostMu.Lock()
	defer c.hostMu.Unlock()
	w := c.newBatch()
	w.set(hostKey(h.Name), encodeHost(h))
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("put host %q: %w", h.Name, err)
	}
	return nil
}

// Host returns the host called name.
func (c *Catalog) Host(name string) (Host, error) {
	done, err := c.enter()
	if err != nil {
		return Host{}, fmt.Errorf("read host %q: %w", name, err)
	}
	defer done()
	key := hostKey(name)
	raw, err := get(c.db, key)
	if err != nil {
		return Host{}, fmt.Errorf("read host %q: %w", name, err)
	}
	h, err := decodeHost(key, raw, name)
	if err != nil {
		return Host{}, fmt.Errorf("read host %q: %w", name, err)
	}
	return h, nil
}

// Hosts returns every host, ordered by name.
func (c *Catalog) Hosts() ([]Host, error) {
	done, err := c.enter()
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	defer done()
	out := []Host{}
	err = scanPrefix(c.db, []byte(prefixHost), false, func(key, value []byte) error {
		h, err := decodeHost(key, value, string(key[len(prefixHost):]))
		if err != nil {
			return err
		}
		out = append(out, h)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return out, nil
}

// DeleteHost removes the host called name, synced. ErrNotFound if absent.
func (c *Catalog) DeleteHost(name string) error {
	done, err := c.enterWrite()
	if err != nil {
		return fmt.Errorf("delete host %q: %w", name, err)
	}
	defer done()
	c.hostMu.Lock()
	defer c.hostMu.Unlock()
	key := hostKey(name)
	if _, err := get(c.db, key); err != nil {
		return fmt.Errorf("delete host %q: %w", name, err)
	}
	w := c.newBatch()
	w.del(key)
	if err := w.commit(c, true); err != nil {
		return fmt.Errorf("delete host %q: %w", name, err)
	}
	return nil
}
