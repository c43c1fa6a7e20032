package tiered

import (
	"slices"
	"sync"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/internal/ledger"
)

// deliveries records which of its peers' invalidations a replica applied,
// and when. The ledger's grace is a guess at how long one delivery takes;
// on a loaded machine one can take longer. A read that returns an old value
// while the invalidation that would have dropped it is still on its way
// (published, not yet applied) is what "never stale beyond one invalidation
// delivery" allows; one whose invalidation was applied before the read
// began, or never arrived at all, is stale.
type deliveries struct {
	mu  sync.Mutex
	got []delivery
}

type delivery struct {
	kind      coherence.Kind
	keys      []string // keys, or tags
	published time.Time
	applied   time.Time
}

// record is a replica's Options.applied.
func (d *deliveries) record(m coherence.Message) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, delivery{kind: m.Kind, keys: slices.Clone(m.Keys), published: time.Unix(0, m.PublishedAt), applied: now})
}

// appliedAt is when the replica applied an invalidation of key (by name,
// by its tag, or a flush) published between from and to.
func (d *deliveries) appliedAt(key, tag string, from, to time.Time) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, g := range d.got {
		if g.published.Before(from) || g.published.After(to) {
			continue
		}
		switch g.kind {
		case coherence.KindKeys:
			if !slices.Contains(g.keys, key) {
				continue
			}
		case coherence.KindTags:
			if tag == "" || !slices.Contains(g.keys, tag) {
				continue
			}
		}
		return g.applied, true
	}
	return time.Time{}, false
}

// inFlight reports whether a read of key that began at start and returned
// version got did so while every write that should have stopped it (those
// after got that completed more than grace before start) was still being
// delivered to the replica: published, and applied only after start. A
// write the replica made itself is never in flight: its own write updates
// its local tier before it returns.
func (d *deliveries) inFlight(src *ledger.Ledger, key, tag string, got, floor int64, start time.Time, grace time.Duration) bool {
	if d == nil {
		return false
	}
	for v := got + 1; v <= floor; v++ {
		began, done, ok := src.Span(key, v)
		if !ok {
			return false
		}
		if !done.Before(start.Add(-grace)) {
			continue // within the grace: not yet owed
		}
		at, ok := d.appliedAt(key, tag, began, done)
		if !ok || at.Before(start) {
			return false
		}
	}
	return true
}
