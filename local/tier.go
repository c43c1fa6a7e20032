package local

import (
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Entry is what the tier holds for a key. The tier itself only reads
// Value; the freshness fields are kept for the caller. (What a hit reads
// comes first.)
type Entry[V any] struct {
	// RefreshFrom is the earliest time (unix nanoseconds) a hit should
	// consider refreshing the value; zero means never.
	RefreshFrom int64
	// Negative marks a tombstone: the key is known to be absent.
	Negative bool
	// LoadMicros is how long the value took to load.
	LoadMicros uint32
	// Value is the decoded value.
	Value V
	// FreshUntil is when the value stops being fresh (unix nanoseconds);
	// zero means it stays fresh until it expires.
	FreshUntil int64
	// ExpiresAt is when the value's Redis copy expires (unix nanoseconds);
	// zero means unknown.
	ExpiresAt int64
	// Tags are the tags the value was written with: InvalidateTags of any
	// of them makes the entry a miss.
	Tags []string
}

// stored is Entry plus the epoch it was filled in, when it expires and,
// for a tagged entry, its tags' fence. What a hit reads comes first: for a
// small value it spans one or two cache lines.
type stored[V any] struct {
	epoch uint64
	// expires is on the tier's clock (Tier.now). Kill moves it back to
	// killed; an insert starts unborn and set gives it its deadline.
	expires atomic.Int64
	tags    *tagFence // nil for an untagged entry
	Entry[V]
}

// tagFence is a tagged entry's tag stripes and the tag clock when its
// fence was taken.
type tagFence struct {
	at  uint64
	idx []uint32
}

// stripe is padded to a cache line so neighbouring stripes do not share one.
type stripe struct {
	mu  sync.Mutex
	gen atomic.Uint64
	_   [64 - 16]byte
}

// Fence is what a fill captured before reading the value it will store.
// The zero Fence never matches (epochs start at 1).
type Fence struct {
	gen   uint64
	epoch uint64
	tagAt uint64 // the tag clock
}

// Stats counts what the tier did since New.
type Stats struct {
	Evictions   uint64 // entries pushed out by the cost bound
	Rejections  uint64 // inserts the admission policy refused
	DroppedSets uint64 // inserts ristretto dropped, its buffer full even after a wait
	Fenced      uint64 // fills refused by their fence
	Resets      uint64 // epoch bumps (Reset)
}

// Tier is the local tier. Its methods are safe for concurrent use.
type Tier[V any] struct {
	// Entries carry no ristretto TTL: ristretto would read the wall and
	// the monotonic clocks on every hit of an entry that has one. The tier
	// checks expiry itself against one monotonic reading (now).
	cache   *ristretto.Cache[string, *stored[V]]
	base    time.Time // the origin of now
	stripes []stripe
	mask    uint64
	seed    maphash.Seed
	// minCharge is what an entry costs at least: MaxCost/MaxEntries.
	minCharge int64
	epoch     atomic.Uint64
	held      atomic.Int32 // Holds not yet released: Get misses
	closed    atomic.Bool  // set with every stripe lock held
	// applied counts the hand-overs whose inserts ristretto has applied,
	// before they are cut off the lists (GetDespiteHold reads it with
	// epoch and held; the drainer writes it at most once a round).
	applied atomic.Uint64

	// Tag invalidations: tagClock counts them, and each tag stripe holds
	// the clock of the last invalidation of a tag hashed to it. A tagged
	// entry is valid while none of its tags' stripes moved past the clock
	// its fence saw. Two tags sharing a stripe can only cost a miss.
	tagClock   atomic.Uint64
	tagStripes []atomic.Uint64

	evictions, rejections, dropped, fenced, resets atomic.Uint64

	// Fills do not call ristretto: they go into the pending lists, where
	// Get finds them at once, and the drainer hands them to ristretto, at
	// most once per drainDelay while fills come, and cuts them off the
	// lists once ristretto has applied them (pending.go). flushMu
	// serialises the hand-overs (the drainer's, Wait's) and Close.
	pending []atomic.Pointer[pendingInsert[V]]
	// marks are the lists a hand-over looks at: an allocation of their
	// own, so that fills' writes to them share no line with these fields.
	marks     *pendingMarks
	flushMu   sync.Mutex
	flushes   atomic.Uint64 // hand-overs begun, counted under flushMu
	drainKick chan struct{}
	drainStop chan struct{}
	drainDone chan struct{}
	stopDrain sync.Once
}

// drainDelay is how long the drainer lets fills gather before it hands
// them over.
var drainDelay = time.Millisecond

// New builds a Tier. Close it to stop ristretto's goroutines.
func New[V any](opts Options) (*Tier[V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	t := &Tier[V]{
		stripes:    make([]stripe, opts.Stripes),
		pending:    make([]atomic.Pointer[pendingInsert[V]], pendingSlots),
		marks:      new(pendingMarks),
		tagStripes: make([]atomic.Uint64, opts.Stripes),
		mask:       uint64(opts.Stripes - 1),
		seed:       maphash.MakeSeed(),
		base:       time.Now(),
	}
	t.epoch.Store(1)
	// The counters are part of the bound: entries get what they leave.
	entries := max(opts.MaxCost-counterBytes(opts.NumCounters), opts.MaxCost/2)
	t.minCharge = opts.MaxCost / opts.MaxEntries
	c, err := ristretto.NewCache(&ristretto.Config[string, *stored[V]]{
		NumCounters:        opts.NumCounters,
		MaxCost:            entries,
		BufferItems:        64,
		IgnoreInternalCost: true,
		OnEvict:            func(*ristretto.Item[*stored[V]]) { t.evictions.Add(1) },
		OnReject:           func(*ristretto.Item[*stored[V]]) { t.rejections.Add(1) },
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	t.cache = c
	t.drainKick, t.drainStop, t.drainDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go t.drain(drainDelay)
	return t, nil
}

// drain hands the pending inserts to ristretto, drainDelay after a fill,
// until Close. One timer serves every round.
func (t *Tier[V]) drain(delay time.Duration) {
	defer close(t.drainDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-t.drainStop:
			return
		case <-t.drainKick:
		}
		timer.Reset(delay)
		select {
		case <-t.drainStop:
			return
		case <-timer.C:
		}
		t.flush()
	}
}

// charge is what an entry whose value takes size bytes costs.
func (t *Tier[V]) charge(size int64) int64 {
	return max(EntryOverhead+max(size, 0), t.minCharge)
}

func (t *Tier[V]) stripeOf(key string) *stripe {
	return &t.stripes[maphash.String(t.seed, key)&t.mask]
}

// now is the tier's clock: nanoseconds since New, from the monotonic
// clock alone (time.Since reads only it; time.Now reads the wall clock too).
func (t *Tier[V]) now() int64 { return int64(time.Since(t.base)) }

// Get returns the entry for key if it is present, unexpired and filled in
// the current epoch, and no Hold is on. It allocates and copies nothing:
// the entry is shared, and never changed once stored; do not change it.
func (t *Tier[V]) Get(key string) (*Entry[V], bool) {
	if t.held.Load() != 0 {
		return nil, false
	}
	return t.GetDespiteHold(key)
}

// GetDespiteHold is Get as if no Hold were on: for failing open when Redis
// cannot be reached while a Hold is on, where the held copy is the only
// one there is.
func (t *Tier[V]) GetDespiteHold(key string) (*Entry[V], bool) {
	defer t.surviveClose()
	applied := t.applied.Load()
	// live, written out: the hit path's checks, inline.
	if s, ok := t.cache.Get(key); ok && s.epoch == t.epoch.Load() && t.now() < s.expires.Load() && (s.tags == nil || !t.tagged(s.tags)) {
		return &s.Entry, true
	}
	if testHooks.betweenGetLooks != nil {
		testHooks.betweenGetLooks()
	}
	if e, ok := t.getPending(key); ok {
		return e, true
	}
	if t.applied.Load() != applied {
		// A hand-over applied its inserts, and cut them off the lists,
		// between the two looks: the key's may be among them, in
		// ristretto now. (Without this look the read missed, although
		// the value had just been filled.)
		if s, ok := t.cache.Get(key); ok && t.live(s) {
			return &s.Entry, true
		}
	}
	return nil, false
}

// surviveClose, deferred by the calls into ristretto that take no lock
// (Get, Kill), turns a panic ristretto raises when one races Close into a
// miss. ristretto's Get, past its closed check, may still hand its read
// buffer to a policy channel Close has closed ("send on closed channel");
// checking closed first cannot help (the race is after the check), and
// counting readers in flight would cost every hit. Any other panic, or
// one before Close, goes on.
func (t *Tier[V]) surviveClose() {
	if t.closed.Load() {
		recover()
	}
}

// getPending is GetDespiteHold's look in the pending list: the key is not
// in ristretto yet, or ristretto's copy is one a newer fill stands for
// (Refill kills the copy it replaces).
func (t *Tier[V]) getPending(key string) (*Entry[V], bool) {
	s, ok := t.pendingGet(key)
	if !ok || !t.live(s) {
		return nil, false
	}
	// A look in ristretto again: an older insert of the key applied there
	// since the first look (and cut off the list) would be served by the
	// next Get, after this newer one. Serve it now, so that no reader goes
	// back from the newer to the older; the newer's hand-over replaces it.
	if r, ok := t.cache.Get(key); ok && r != s && t.live(r) {
		return &r.Entry, true
	}
	return &s.Entry, true
}

// live reports whether s may be served: filled in the current epoch,
// unexpired and unkilled, none of its tags invalidated since.
func (t *Tier[V]) live(s *stored[V]) bool {
	return s.epoch == t.epoch.Load() && t.now() < s.expires.Load() && (s.tags == nil || !t.tagged(s.tags))
}

// tagged reports whether a tag of an entry was invalidated after its fence.
func (t *Tier[V]) tagged(f *tagFence) bool {
	for _, i := range f.idx {
		if t.tagStripes[i].Load() > f.at {
			return true
		}
	}
	return false
}

func (t *Tier[V]) tagStripe(tag string) uint32 {
	return uint32(maphash.String(t.seed, tag) & t.mask)
}

// InvalidateTags makes every entry carrying one of tags a miss, and every
// fill of one whose fence was taken before.
func (t *Tier[V]) InvalidateTags(tags ...string) {
	for _, tag := range tags {
		// Raised, never lowered: a concurrent call that took an older
		// clock value and stores it later must not undo this one.
		at, s := t.tagClock.Add(1), &t.tagStripes[t.tagStripe(tag)]
		for {
			old := s.Load()
			if old >= at || s.CompareAndSwap(old, at) {
				break
			}
		}
	}
}

// killed and unborn are deadlines every reading of the clock has passed:
// a killed copy's, and an insert's until set gives it its own.
const (
	killed = math.MinInt64
	unborn = math.MinInt64 + 1
)

// newStored is what a fill under f stores for ttl, unborn, and the
// deadline set gives it.
func (t *Tier[V]) newStored(f Fence, e Entry[V], ttl time.Duration) (*stored[V], int64) {
	now := t.now()
	s := &stored[V]{epoch: f.epoch, Entry: e}
	s.expires.Store(unborn)
	if len(e.Tags) > 0 {
		s.tags = &tagFence{at: f.tagAt, idx: make([]uint32, len(e.Tags))}
		for i, tag := range e.Tags {
			s.tags.idx[i] = t.tagStripe(tag)
		}
	}
	return s, now + min(int64(ttl), math.MaxInt64-now)
}

// Hold makes every Get miss until the matching Release, without dropping
// anything: for while the caller repairs invalidations it may have missed.
// Fills and invalidations go on. Holds nest.
func (t *Tier[V]) Hold() { t.held.Add(1) }

// Release ends one Hold.
func (t *Tier[V]) Release() { t.held.Add(-1) }

// Held reports whether a Hold is on, for tests and diagnostics.
func (t *Tier[V]) Held() bool { return t.held.Load() != 0 }

// Fence captures the state a later Fill or Replace of key checks. Take it
// before reading (or writing) the value that will be stored.
func (t *Tier[V]) Fence(key string) Fence {
	// Epoch first: a Flush between the two loads then fails the fence
	// rather than slipping past it.
	e := t.epoch.Load()
	return Fence{gen: t.stripeOf(key).gen.Load(), epoch: e, tagAt: t.tagClock.Load()}
}

// Holds reports whether nothing has invalidated key's stripe, no tag has
// been invalidated and no Reset has happened since f was taken: whether a
// value read after f was taken is still as fresh as a read now would be,
// short of invalidations not yet applied. Any tag counts: a value read
// from Redis carries its writer's tags, which the reader does not know
// before it has it.
func (t *Tier[V]) Holds(key string, f Fence) bool {
	return t.stripeOf(key).gen.Load() == f.gen && t.epoch.Load() == f.epoch && t.tagClock.Load() == f.tagAt
}

// Fill stores e under key, for TTL, if nothing invalidated
// the key's stripe and no Flush happened since f was taken. size is the
// heap e.Value takes beyond the entry itself (for a string or a slice, its
// bytes); the tier charges it plus EntryOverhead, and at least
// MaxCost/MaxEntries. It reports whether the insert was made (ristretto
// may still drop or refuse it when it is handed over).
//
// Fill is for a key Get missed: ristretto's copy, if it holds one that
// came in since, is served until the insert is handed over, about
// drainDelay later or at the next Wait. For a key whose copy is served (a
// refresh), Refill serves the new value at once.
func (t *Tier[V]) Fill(f Fence, key string, e Entry[V], size int64, ttl time.Duration) bool {
	return t.fill(f, key, e, size, ttl, false)
}

// Refill is Fill for a key whose copy ristretto may hold and serve (a
// refresh ahead of expiry): it also kills that copy, which is older, so
// that Get serves the new value from its pending list at once. (Fill
// spares the look-up, a cache miss or two in ristretto's map on a large
// tier.)
func (t *Tier[V]) Refill(f Fence, key string, e Entry[V], size int64, ttl time.Duration) bool {
	return t.fill(f, key, e, size, ttl, true)
}

func (t *Tier[V]) fill(f Fence, key string, e Entry[V], size int64, ttl time.Duration, overHeld bool) bool {
	s := t.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.closed.Load() {
		return false
	}
	if s.gen.Load() != f.gen || t.epoch.Load() != f.epoch {
		t.fenced.Add(1)
		return false
	}
	return t.set(s, key, f, f.gen, e, size, ttl, overHeld)
}

// Replace is Fill for the replica's own write: it invalidates the key (so
// fills that read the old value are refused) and stores e if the fence
// holds. If the fence does not hold, a newer write may have been applied
// meanwhile, so the key is only invalidated.
func (t *Tier[V]) Replace(f Fence, key string, e Entry[V], size int64, ttl time.Duration) bool {
	s := t.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.closed.Load() {
		return false
	}
	// One step from the fence's generation to the next, so that a Kill
	// between the check and the step refuses the write's copy here.
	bumped := s.gen.CompareAndSwap(f.gen, f.gen+1)
	if !bumped {
		s.gen.Add(1)
	}
	ok := bumped && t.epoch.Load() == f.epoch
	t.remove(key)
	if !ok {
		t.fenced.Add(1)
		return false
	}
	return t.set(s, key, f, f.gen+1, e, size, ttl, false) // removed: nothing held
}

// set inserts under s.mu. gen is the stripe generation the copy is valid
// under: Fill's fence's, or the one Replace stepped to. overHeld kills
// the copy ristretto holds (Refill).
func (t *Tier[V]) set(s *stripe, key string, f Fence, gen uint64, e Entry[V], size int64, ttl time.Duration, overHeld bool) bool {
	if ttl <= 0 {
		return false
	}
	st, deadline := t.newStored(f, e, ttl)
	if testHooks.beforeSlot != nil {
		testHooks.beforeSlot()
	}
	node := t.setPending(key, st, t.charge(size))
	// The key's older inserts (a key's inserts are made in order, under
	// s.mu) that a hand-over may still bring into ristretto would be
	// served there after this one: killed, before this one can be served.
	t.killOlder(node)
	if testHooks.beforeBirth != nil {
		testHooks.beforeBirth()
	}
	// Kill takes no lock: one that moved the stripe on after the fence
	// check may have looked for the key before this copy was to be found
	// (in its pending list, or in ristretto's map). So the copy is
	// inserted unborn, and given its deadline only if the stripe has not
	// moved: if it has, it is killed instead (and not handed over); if
	// not, Kill, which moves the stripe on before it looks, finds it in
	// its list or, handed over by then, in ristretto's map, and kills it,
	// before or after this.
	if s.gen.Load() == gen {
		st.expires.CompareAndSwap(unborn, deadline)
	} else {
		st.expires.CompareAndSwap(unborn, killed)
	}
	if testHooks.afterBirth != nil {
		testHooks.afterBirth()
	}
	// For Refill, the copy ristretto holds is killed too (older: the
	// older inserts are dead or were applied before this one was made),
	// unless a hand-over has made it this insert already, so that Get
	// serves this one from its list until its hand-over.
	if overHeld {
		if old, ok := t.cache.Get(key); ok && old != st {
			old.expires.Store(killed)
		}
	}
	select {
	case t.drainKick <- struct{}{}:
	default: // the drainer is already due
	}
	return true
}

// remove deletes key under s.mu so that no older insert can show it
// again: the inserts in its pending list are killed first (one the
// drainer hands over later is dead in ristretto too), then ristretto's
// copy is deleted. ristretto's Del empties its store at once and queues
// the delete behind any insert in its buffer, which is then applied for a
// moment before the delete: that insert was handed over from the list,
// killed there, so it is never served. Nothing waits for ristretto.
func (t *Tier[V]) remove(key string) {
	t.killPending(key)
	t.cache.Del(key)
}

// Kill makes the copies of keys held now miss at once, without taking a
// stripe lock or waiting for ristretto's buffers, so that a goroutine that
// must not block (one reading invalidations off a connection) can stop
// them being served ahead of Invalidate. It also moves the keys' stripes
// on, so fences taken before fail Holds (and fills) from now. It frees
// nothing: Invalidate must follow. Inserts not yet applied by ristretto
// are killed in the pending lists (pending.go), and a copy a fill makes
// meanwhile (one that checked its fence first) is never given its
// deadline (set).
func (t *Tier[V]) Kill(keys ...string) {
	defer t.surviveClose()
	for _, k := range keys {
		t.stripeOf(k).gen.Add(1)
		// The pending list first: an insert cut off it (once applied)
		// before this walk reached it is in ristretto's map by the next
		// look, or was refused or dropped.
		t.killPending(k)
		if testHooks.betweenKillLooks != nil {
			testHooks.betweenKillLooks()
		}
		if s, ok := t.cache.Get(k); ok {
			s.expires.Store(killed)
		}
	}
}

// testHooks run, when set by a test, at points where another goroutine's
// step changes the outcome: they make those interleavings happen. They
// are shared by every Tier: a test that sets one must not run in
// parallel with another that fills or kills.
var testHooks struct {
	betweenKillLooks, betweenGetLooks, beforeSlot, beforeBirth, afterBirth, beforeCut func()
	beforeHandOver                                                                    func(key string)
}

// Invalidate removes keys and fails every fill of their stripes whose fence
// was taken before.
func (t *Tier[V]) Invalidate(keys ...string) {
	for _, k := range keys {
		s := t.stripeOf(k)
		s.mu.Lock()
		s.gen.Add(1)
		if !t.closed.Load() {
			t.remove(k)
		}
		s.mu.Unlock()
	}
}

// Reset bumps the epoch: every entry filled before becomes a miss at once and
// every fill fenced before is refused. Memory is reclaimed as entries are
// overwritten, evicted or expire.
func (t *Tier[V]) Reset() {
	t.epoch.Add(1)
	t.resets.Add(1)
}

// Cost is the sum of the costs of the entries held now (the counters are
// not included).
func (t *Tier[V]) Cost() int64 { return t.cache.MaxCost() - t.cache.RemainingCost() }

// currentEpoch is the current epoch, for tests and diagnostics.
func (t *Tier[V]) currentEpoch() uint64 { return t.epoch.Load() }

// Wait hands every insert made so far to ristretto and blocks until
// ristretto has applied them: a batch fill (a warm-up) calls it so that
// what it filled is counted in ristretto's cost when it returns. Waits
// that queue behind one hand-over share the next.
func (t *Tier[V]) Wait() { t.flush() }

// Stats returns the counters.
func (t *Tier[V]) Stats() Stats {
	return Stats{
		Evictions:   t.evictions.Load(),
		Rejections:  t.rejections.Load(),
		DroppedSets: t.dropped.Load(),
		Fenced:      t.fenced.Load(),
		Resets:      t.resets.Load(),
	}
}

// Close stops ristretto's goroutines. Afterwards Get misses and fills are
// refused. Close is idempotent and safe with concurrent calls: ristretto's
// own Close is not safe with concurrent calls, so it runs with every
// stripe lock held (every delete happens under one) and no hand-over
// running (every insert is one); a Get or Kill that races it may panic
// inside ristretto, which they recover from (surviveClose).
func (t *Tier[V]) Close() {
	// Hand-overs call ristretto without a stripe lock: the drainer ends
	// first, and a Wait's hand-over before ristretto closes.
	t.stopDrain.Do(func() {
		close(t.drainStop)
		<-t.drainDone
	})
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	for i := range t.stripes {
		t.stripes[i].mu.Lock()
	}
	if !t.closed.Swap(true) {
		t.cache.Close()
		t.clearPending()
	}
	for i := range t.stripes {
		t.stripes[i].mu.Unlock()
	}
}
