package local

import (
	"hash/maphash"
	"sync/atomic"
)

// Pending inserts. ristretto applies the Set of a key it does not hold on
// its own goroutine, through a buffer: until then a Get misses. A hot key
// refilled after an invalidation would send every read of it in that
// window to Redis, each making a new fill; under load the window is tens
// to hundreds of microseconds, and a hot key is read many times in it.
// So the tier keeps every insert ristretto may not have applied in a
// list, newest first, in one of pendingSlots slots (by the key's hash),
// where a Get that ristretto missed finds the key's newest,
// until the drainer has seen it applied (drained reaches its number): from
// then on ristretto's answer is the only one, whether it admitted the
// insert or not. (A key's inserts are made under its stripe lock, so its
// own are in the order of their numbers; other keys' may interleave.)
//
// The lists are one more place a value is read from, so every way an
// entry stops being served covers them: Kill moves back the deadline of
// every insert of the key in its slot's list, as it does ristretto's copy
// (an insert leaves a list only once applied, when it is in ristretto's
// map or refused); remove (Invalidate, Replace) leaves drained past every
// insert of the stripe before it deletes (waiting for ristretto when the
// stripe has inserted since the last drain), so the lists' copies of the
// key are refused from then on; and the epoch, expiry and tag checks of
// GetDespiteHold apply to them alike. The drainer cuts applied inserts off
// the lists after each drain, and Close empties them, so they hold what
// ristretto's buffer holds and what was applied since the last drain
// (an insert ristretto refused or evicted at once is outside MaxCost for
// that long, as its buffer's are). A drain is drainDelay plus ristretto's
// Wait, which under a flood of fills queues behind its buffer (up to 32K
// inserts): then the lists hold tens of thousands of inserts in all, and
// a miss or a Kill walks its key's list, some tens of nodes on 1,024
// slots (measured at about a million fills a second).
//
// When a key is filled twice before ristretto applies the first insert,
// ristretto keeps the first and refuses the second, so a reader sees the
// second, then the first (both filled under fences that held, with no
// invalidation between them).

// pendingSlots is the number of lists: enough to keep them short, few
// enough (8 KiB) for the drainer to look at them all after each drain.
// It does not follow Options.Stripes, which may be small.
const pendingSlots = 1024

func (t *Tier[V]) pendingSlot(key string) *atomic.Pointer[pendingInsert[V]] {
	return &t.pending[maphash.String(t.seed, key)&(pendingSlots-1)]
}

// pendingInsert is an insert in its slot's list: its own small allocation,
// so that an entry ristretto holds does not keep its key.
type pendingInsert[V any] struct {
	key  string
	st   *stored[V]
	seq  uint64 // its number (Tier.fillSeq)
	next atomic.Pointer[pendingInsert[V]]
}

// setPending adds st, just handed to ristretto as insert number seq, to
// its slot's list. Called under key's stripe lock; the slot may be shared
// with other stripes, whose inserts race this one.
func (t *Tier[V]) setPending(key string, st *stored[V], seq uint64) {
	p := &pendingInsert[V]{key: key, st: st, seq: seq}
	slot := t.pendingSlot(key)
	for {
		head := slot.Load()
		p.next.Store(head)
		if slot.CompareAndSwap(head, p) {
			return
		}
	}
}

// pendingGet returns key's newest insert if ristretto may not have applied
// it yet.
func (t *Tier[V]) pendingGet(key string) (*stored[V], bool) {
	if t.closed.Load() {
		return nil, false
	}
	for p := t.pendingSlot(key).Load(); p != nil; p = p.next.Load() {
		if p.key == key {
			if p.seq <= t.drained.Load() {
				return nil, false // applied: ristretto answered
			}
			return p.st, true
		}
	}
	return nil, false
}

// killPending makes every insert of key in its slot's list miss at once,
// as Kill does its ristretto copy (without the stripe lock: Invalidate
// follows).
func (t *Tier[V]) killPending(key string) {
	for p := t.pendingSlot(key).Load(); p != nil; p = p.next.Load() {
		if p.key == key {
			p.st.expires.Store(killed)
		}
	}
}

// clearPending empties every list: Close lets go of what they hold.
func (t *Tier[V]) clearPending() {
	for i := range t.pending {
		t.pending[i].Store(nil)
	}
}

// clearApplied cuts the inserts ristretto has applied off the lists, so
// that they keep nothing alive past ristretto's own. Run by the drainer
// after each wait: at most once per drainDelay while fills come. Inserts
// of different stripes may be out of order in a list, so it keeps every
// one up to the last not yet applied.
func (t *Tier[V]) clearApplied() {
	drained := t.drained.Load()
	for i := range t.pending {
		slot := &t.pending[i]
		head := slot.Load()
		if head == nil {
			continue
		}
		var last *pendingInsert[V] // the last insert not yet applied
		for p := head; p != nil; p = p.next.Load() {
			if p.seq > drained {
				last = p
			}
		}
		if last == nil {
			slot.CompareAndSwap(head, nil) // a new insert keeps the list
		} else {
			last.next.Store(nil)
		}
	}
}
