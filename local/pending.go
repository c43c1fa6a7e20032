package local

import "sync/atomic"

// Pending inserts. ristretto applies the Set of a key it does not hold on
// its own goroutine, through a buffer: until then a Get misses. A hot key
// refilled after an invalidation would send every read of it in that
// window to Redis, each making a new fill; under load the window is tens
// to hundreds of microseconds, and a hot key is read many times in it.
// So the tier keeps recent inserts in slots (a key's slot follows from
// its stripe; a later insert takes a slot over), where a Get that
// ristretto missed finds them, until the drainer has seen the insert
// applied (drained reaches its number): from then on ristretto's answer
// is the only one, whether it admitted the insert or not.
//
// The slot is one more place a value is read from, so every way an entry
// stops being served covers it: Kill moves its deadline back as it does
// ristretto's copy, remove (Invalidate, Replace) empties it under the
// stripe lock before deleting (and, waiting for ristretto first when the
// stripe has inserted since the last drain, leaves drained past the
// slot's insert, which pendingGet then refuses anyway), and the epoch,
// expiry and tag checks of GetDespiteHold apply to it alike. The drainer
// empties the slots of applied inserts, and Close every slot, so they keep
// at most maxPendingSlots entries alive, each for about a drain, past
// ristretto's own (an insert ristretto refused or evicted at once is
// outside MaxCost for that long, as its own buffer's are).
//
// Not every fill is readable at once: when a later insert takes its slot
// over before ristretto applies it, it misses until then (as before the
// slots); and when a key is filled twice before ristretto applies the
// first insert, ristretto keeps the first and refuses the second, so a
// reader sees the second, then the first (both filled under fences that
// held, with no invalidation between them).

// maxPendingSlots bounds the slots: enough for the inserts of a drain
// (a millisecond) to rarely share one, few enough for the drainer to
// look at them all after each drain (about a microsecond).
const maxPendingSlots = 1024

func (t *Tier[V]) pendingSlot(key string) *atomic.Pointer[pendingInsert[V]] {
	return &t.pending[t.stripeIndex(key)&uint64(len(t.pending)-1)]
}

// pendingInsert is the last insert of the stripes that share a slot: its
// own small allocation, so that an entry ristretto holds does not keep its
// key.
type pendingInsert[V any] struct {
	key string
	st  *stored[V]
	seq uint64 // its number (Tier.fillSeq)
}

// setPending makes st, just handed to ristretto as insert number seq,
// key's pending insert. Called under the stripe lock.
func (t *Tier[V]) setPending(key string, st *stored[V], seq uint64) {
	t.pendingSlot(key).Store(&pendingInsert[V]{key: key, st: st, seq: seq})
}

// pendingGet returns key's pending insert, if its slot holds one ristretto
// may not have applied yet.
func (t *Tier[V]) pendingGet(key string) (*stored[V], bool) {
	p := t.pendingSlot(key).Load()
	if p == nil || p.key != key || p.seq <= t.drained.Load() || t.closed.Load() {
		return nil, false
	}
	return p.st, true
}

// dropPending empties key's slot if it holds key. Called under the
// stripe lock, so no insert of key races it.
func (t *Tier[V]) dropPending(key string) {
	slot := t.pendingSlot(key)
	if p := slot.Load(); p != nil && p.key == key {
		slot.CompareAndSwap(p, nil)
	}
}

// killPending makes key's pending insert miss at once, as Kill does its
// ristretto copy (without the stripe lock: Invalidate follows).
func (t *Tier[V]) killPending(key string) {
	if p := t.pendingSlot(key).Load(); p != nil && p.key == key {
		p.st.expires.Store(killed)
	}
}

// clearPending empties every slot: Close lets go of what they hold.
func (t *Tier[V]) clearPending() {
	for i := range t.pending {
		t.pending[i].Store(nil)
	}
}

// clearApplied empties the slots whose insert ristretto has applied, so
// that they keep no entry alive past ristretto's own. Run by the drainer
// after each wait: at most once per drainDelay while fills come.
func (t *Tier[V]) clearApplied() {
	drained := t.drained.Load()
	for i := range t.pending {
		if p := t.pending[i].Load(); p != nil && p.seq <= drained {
			t.pending[i].CompareAndSwap(p, nil)
		}
	}
}
