package tiered

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/internal/ledger"
)

// How the staleness ledger judges reads: which invalidations each replica
// applied and when, the batch reads, and the bounds of a run.

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
// its local tier before it returns. Nor is a tracking push: that
// transport does not report messages (Options.applied), so its ledgers are
// judged by the grace alone.
func (d *deliveries) inFlight(src *ledger.Ledger, key, tag string, got, floor int64, start time.Time, grace time.Duration) bool {
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

// retryUntilDone calls write until it succeeds: a write whose source change
// has happened must complete, whatever Redis does meanwhile.
func retryUntilDone(write func() error) {
	for write() != nil {
		time.Sleep(time.Millisecond) // Redis is failing: retry, without spinning
	}
}

// batchRead is one GetOrLoadMany of the ledger; it returns the keys whose
// version was older than the floor, to be judged at the end.
func batchRead(t *testing.T, r *Cache[int64], src *ledger.Ledger, res *ledgerResult, grace time.Duration, keys []string) []staleRead {
	start := time.Now()
	floors := make(map[string]int64, len(keys))
	for _, k := range keys {
		floors[k] = src.Floor(k, start.Add(-grace))
	}
	got, err := r.GetOrLoadMany(context.Background(), keys, func(ctx context.Context, ks []string) (map[string]int64, error) {
		atomic.AddInt64(&res.loads, 1)
		out := make(map[string]int64, len(ks))
		for _, k := range ks {
			out[k] = src.Read(k)
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		return out, nil
	})
	if err != nil {
		t.Errorf("GetOrLoadMany: %v", err)
		return nil
	}
	var suspects []staleRead
	for k, floor := range floors {
		atomic.AddInt64(&res.reads, 1)
		v, ok := got[k]
		if !ok {
			t.Errorf("batch read of %s: missing", k)
			continue
		}
		if v < floor {
			suspects = append(suspects, staleRead{start: start, key: k, got: v, floor: floor})
		}
	}
	return suspects
}

// assertLedgerRan checks a run did enough reads to mean something. Runs
// aim at 100,000 reads within their maximum duration; on a loaded machine
// they may stop short of it, which says nothing about staleness, so the
// bound is a fifth of that rather than a hidden wall-clock limit.
func assertLedgerRan(t *testing.T, res ledgerResult) {
	t.Helper()
	assert.GreaterOrEqual(t, res.reads, int64(20_000), "too few reads for the ledger to judge")
}
