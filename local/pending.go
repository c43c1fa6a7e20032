package local

import (
	"hash/maphash"
	gobits "math/bits"
	"sync/atomic"
)

// Pending inserts. A fill does not call ristretto: ristretto applies the
// Set of a key it does not hold later, on its own goroutine, and the Set
// wakes that goroutine, which on an idle machine costs the filling caller
// a thread wake-up (a sixth of a miss answered by Redis, measured). So a
// fill puts its insert in a list, newest first, in one of pendingSlots
// slots (by the key's hash), where a Get that ristretto missed, or found
// only a copy it cannot serve of (Refill kills the copy it replaces),
// finds the key's newest at once; and the drainer hands the inserts to
// ristretto, a key's newest only, at most once per drainDelay while fills
// come, waits until ristretto has applied them and cuts them off the
// lists. From then on ristretto's answer is the only
// one, whether it admitted the insert or not. (A key's inserts are made
// under its stripe lock, so its own are in order in its list; other keys'
// may interleave.)
//
// No reader goes back from a key's newer fill to an older one: a fill
// kills the key's insert below it in the list, unless applied, before it
// can itself be served (a hand-over under way would otherwise bring that
// one into ristretto after the newer was served; the inserts below that
// one were dealt with by its own fill), and a Get that finds the key in
// its list looks in ristretto once more and serves a live copy there, as
// the next Get would, until the newer is handed over. A Get that finds the
// key in neither place looks in ristretto once more when a hand-over
// applied its inserts between its two looks (Tier.applied): the key's
// insert may have moved from its list into ristretto meanwhile. An insert
// is not handed over before its fill has given it its deadline: for a key
// ristretto holds, the hand-over replaces the live copy at once.
//
// The lists are one more place a value is read from, so every way an
// entry stops being served covers them: Kill moves back the deadline of
// every insert of the key in its slot's list, as it does ristretto's copy
// (an insert leaves a list only once applied: in ristretto's map, refused
// or dropped there, or never handed over, dead or superseded); remove
// (Invalidate, Replace) kills them too before it deletes ristretto's copy,
// so that one handed over later is dead there as well; and the epoch,
// expiry and tag checks of GetDespiteHold apply to them alike. An insert
// that can no longer be served is not handed over.
//
// The lists hold what was filled since the last hand-over and what
// ristretto has not yet applied of it (an insert ristretto refuses or
// drops is outside MaxCost for that long): under a flood of fills, a
// hand-over's worth. Close empties them.

// pendingSlots is the number of lists: enough to keep them short. It does
// not follow Options.Stripes, which may be small.
const pendingSlots = 1024

// pendingSlot is key's list, and the hash of key that chose it.
func (t *Tier[V]) pendingSlot(key string) (*atomic.Pointer[pendingInsert[V]], uint64) {
	h := maphash.String(t.seed, key)
	return &t.pending[h&(pendingSlots-1)], h
}

// pendingMarks says which lists a hand-over has to look at: one bit a
// list, set by each insert pushed to it, taken by the hand-over, and set
// again by the hand-over for a list it leaves inserts in. A hand-over
// under a steady miss rate finds a few inserts; looking at every list for
// them, and again to cut them off, was a quarter of its time
// (BenchmarkHandOverFew). Each word has a cache line of its own, so that
// fills on two cores seldom write the same line.
type pendingMarks [pendingSlots / 64]struct {
	bits atomic.Uint64
	_    [56]byte
}

// mark notes that list i has inserts to look at. Call it after the push:
// a hand-over that takes the mark must find the insert.
func (m *pendingMarks) mark(i uint64) { m[i/64].bits.Or(1 << (i % 64)) }

// take returns the marks set since the last take, clearing them.
func (m *pendingMarks) take() (taken [pendingSlots / 64]uint64) {
	for w := range m {
		if m[w].bits.Load() != 0 {
			taken[w] = m[w].bits.Swap(0)
		}
	}
	return taken
}

// forEach calls f with the index of every list marked in taken.
func forEach(taken *[pendingSlots / 64]uint64, f func(i uint64)) {
	for w, bits := range taken {
		for ; bits != 0; bits &= bits - 1 {
			f(uint64(w*64 + gobits.TrailingZeros64(bits)))
		}
	}
}

// pendingInsert is an insert in its slot's list: its own small allocation,
// so that an entry ristretto holds does not keep its key.
type pendingInsert[V any] struct {
	key   string
	hash  uint64 // key's, which picked the slot: a cheap first comparison
	st    *stored[V]
	cost  int64
	state atomic.Uint32
	next  atomic.Pointer[pendingInsert[V]]
}

// An insert's states, in order.
const (
	waiting uint32 = iota // not yet handed to ristretto
	handed                // handed over: ristretto may not have applied it
	applied               // applied, or refused, dropped, dead or superseded: ristretto answers
)

// setPending adds st to its slot's list and returns its node. Called under
// key's stripe lock; the slot may be shared with other stripes, whose
// inserts race this one.
func (t *Tier[V]) setPending(key string, st *stored[V], cost int64) *pendingInsert[V] {
	slot, h := t.pendingSlot(key)
	p := &pendingInsert[V]{key: key, hash: h, st: st, cost: cost}
	for {
		head := slot.Load()
		p.next.Store(head)
		if slot.CompareAndSwap(head, p) {
			t.marks.mark(h & (pendingSlots - 1))
			return p
		}
	}
}

// killOlder kills the key's insert below p in its list, unless applied:
// a hand-over under way may bring it into ristretto after p was served.
// The key's inserts below that one were dealt with when it was made.
func (t *Tier[V]) killOlder(p *pendingInsert[V]) {
	for q := p.next.Load(); q != nil; q = q.next.Load() {
		if q.hash == p.hash && q.key == p.key {
			if q.state.Load() != applied {
				q.st.expires.Store(killed)
			}
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
	slot, h := t.pendingSlot(key)
	for p := slot.Load(); p != nil; p = p.next.Load() {
		if p.hash == h && p.key == key {
			if p.state.Load() == applied {
				return nil, false // ristretto answers
			}
			return p.st, true
		}
	}
	return nil, false
}

// killPending makes every insert of key in its slot's list miss at once,
// as Kill does its ristretto copy.
func (t *Tier[V]) killPending(key string) {
	slot, h := t.pendingSlot(key)
	for p := slot.Load(); p != nil; p = p.next.Load() {
		if p.hash == h && p.key == key {
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

// flush hands every waiting insert to ristretto, waits until ristretto has
// applied them, and cuts them off the lists. Only a key's newest insert is
// handed over (ristretto would keep the first of two Sets of a key it does
// not hold yet and refuse the second), and none that can no longer be
// served. Inserts made meanwhile wait for the next flush.
func (t *Tier[V]) flush() { t.flushAfter(t.flushes.Load()) }

// flushAfter is flush for a caller that saw begun hand-overs counted in
// flushes: a hand-over counted since then began after every insert the
// caller made before its look, so covered them, and has ended once
// flushMu is free; the caller then makes none of its own.
func (t *Tier[V]) flushAfter(begun uint64) {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	if t.closed.Load() || t.flushes.Load() != begun {
		return
	}
	t.flushes.Add(1)
	// The marks are taken after the count: an insert made before a
	// caller's look at flushes is marked by then.
	taken := t.marks.take()
	now := t.now()
	var seen seenKeys
	looked, handedOver := false, false
	forEach(&taken, func(i uint64) {
		l, h := t.handOverList(&t.pending[i], &seen, now)
		looked, handedOver = looked || l, handedOver || h
	})
	if handedOver {
		t.cache.Wait()
		t.applied.Add(1) // before the cut: see GetDespiteHold
	}
	if looked && testHooks.beforeCut != nil {
		testHooks.beforeCut()
	}
	forEach(&taken, func(i uint64) {
		t.cutApplied(&t.pending[i])
		if t.pending[i].Load() != nil {
			// Inserts left to look at (one whose fill is under way, or one
			// pushed meanwhile, which marked the list itself).
			t.marks.mark(i)
		}
	})
}

// handOverList hands the waiting inserts of one list to ristretto (a
// key's newest only, none that can no longer be served). looked: the list
// had inserts waiting; handedSome: it handed some over.
func (t *Tier[V]) handOverList(slot *atomic.Pointer[pendingInsert[V]], seen *seenKeys, now int64) (looked, handedSome bool) {
	seen.reset()
	for p := slot.Load(); p != nil; p = p.next.Load() {
		newest := seen.add(p.hash, p.key)
		if p.state.Load() != waiting {
			continue
		}
		looked = true
		if newest && p.st.expires.Load() == unborn {
			// Its fill is under way: handed over now, it could replace
			// a live copy in ristretto with one that dies at birth.
			// The fill kicks the drainer once it is born.
			continue
		}
		if !newest || t.deadInsert(p.st, now) {
			p.state.Store(applied)
			continue
		}
		if testHooks.beforeHandOver != nil {
			testHooks.beforeHandOver(p.key)
		}
		if !t.handOver(p) {
			t.dropped.Add(1)
		} else if p.st.expires.Load() == killed {
			// Removed while being handed over: its Del may have come
			// first, and a dead copy would hold cost until evicted.
			t.cache.Del(p.key)
		}
		p.state.Store(handed)
		handedSome = true
	}
	return looked, handedSome
}

// handOver gives p to ristretto. A Set refused because ristretto's buffer
// is full (a hand-over of more inserts than it holds, 32K) is tried again
// once ristretto has applied what it holds.
func (t *Tier[V]) handOver(p *pendingInsert[V]) bool {
	if t.cache.Set(p.key, p.st, p.cost) {
		return true
	}
	t.cache.Wait()
	return t.cache.Set(p.key, p.st, p.cost)
}

// deadInsert reports whether st can never be served: killed, expired, of
// an earlier epoch, or of an invalidated tag. (An unborn insert may yet be
// given its deadline.)
func (t *Tier[V]) deadInsert(st *stored[V], now int64) bool {
	e := st.expires.Load()
	return e == killed || e != unborn && now >= e || st.epoch != t.epoch.Load() || st.tags != nil && t.tagged(st.tags)
}

// seenKeys are the keys a walk of one list has met, newest first: a few
// compared in place, more in a map, so that a long list (a drainer that
// fell behind) costs a walk, not a walk per insert.
type seenKeys struct {
	n   int
	few [8]struct {
		hash uint64
		key  string
	}
	more map[string]struct{}
}

func (s *seenKeys) reset() {
	s.n = 0
	s.more = nil
}

// add records key and reports whether it was not met before.
func (s *seenKeys) add(hash uint64, key string) bool {
	for i := range s.n {
		if s.few[i].hash == hash && s.few[i].key == key {
			return false
		}
	}
	if s.n < len(s.few) {
		s.few[s.n].hash, s.few[s.n].key = hash, key
		s.n++
		return true
	}
	if _, ok := s.more[key]; ok {
		return false
	}
	if s.more == nil {
		s.more = make(map[string]struct{})
	}
	s.more[key] = struct{}{}
	return true
}

// cutApplied marks the handed-over inserts of a list applied (ristretto
// has applied them: flush waited) and cuts the list after its last insert
// still waiting, so that the lists keep nothing alive past ristretto's
// own. A new insert may be pushed meanwhile: it keeps the list.
func (t *Tier[V]) cutApplied(slot *atomic.Pointer[pendingInsert[V]]) {
	head := slot.Load()
	if head == nil {
		return
	}
	var last *pendingInsert[V] // the last insert still waiting
	for p := head; p != nil; p = p.next.Load() {
		if p.state.CompareAndSwap(handed, applied) || p.state.Load() == applied {
			continue
		}
		last = p
	}
	if last == nil {
		slot.CompareAndSwap(head, nil)
	} else {
		last.next.Store(nil)
	}
}
