package tiered

import "sync"

// waiters are the flights of this replica waiting for another replica to
// fill a key. The holder's fill (and any Set or Delete of the key) arrives
// as an invalidation of the key, which wakes them: no polling. When the
// holder is this replica (a batch's lease, or a flight begun after an
// invalidation while an older one loads), its own wake-up comes back as an
// echo the bus skips: its fill and release wake them here instead.
type waiters struct {
	mu    sync.Mutex
	slots map[string]*waitSlot
}

type waitSlot struct {
	ch   chan struct{}
	refs int
}

// add registers interest in key. Register before reading Redis, so a wake
// that lands between the read and the wait is not missed.
func (w *waiters) add(key string) *waitSlot {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.slots == nil {
		w.slots = map[string]*waitSlot{}
	}
	s := w.slots[key]
	if s == nil {
		s = &waitSlot{ch: make(chan struct{})}
		w.slots[key] = s
	}
	s.refs++
	return s
}

func (w *waiters) remove(key string, s *waitSlot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s.refs--
	if s.refs == 0 && w.slots[key] == s {
		delete(w.slots, key)
	}
}

// wake releases everything waiting on keys.
func (w *waiters) wake(keys ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		if s := w.slots[k]; s != nil {
			close(s.ch)
			delete(w.slots, k)
		}
	}
}

// wakeAll releases every waiter (a namespace flush).
func (w *waiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, s := range w.slots {
		close(s.ch)
		delete(w.slots, k)
	}
}
