package local

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTier(t testing.TB, opts Options) *Tier[int64] {
	t.Helper()
	tier, err := New[int64](opts)
	require.NoError(t, err)
	t.Cleanup(tier.Close)
	return tier
}

func fill(t *Tier[int64], f Fence, key string, v int64) bool {
	return t.Fill(f, key, Entry[int64]{Value: v}, 1, time.Minute)
}

func TestFillAndGet(t *testing.T) {
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("k"), "k", 7))
	tier.Wait()
	e, ok := tier.Get("k")
	require.True(t, ok)
	assert.Equal(t, int64(7), e.Value)
	_, ok = tier.Get("other")
	assert.False(t, ok)
}

// Kill makes a held copy miss at once, and fences fills taken before it;
// Invalidate, which follows it, frees the entry.
func TestKillMissesAtOnceAndInvalidateFollows(t *testing.T) {
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("k"), "k", 1))
	require.True(t, fill(tier, tier.Fence("other"), "other", 2))
	tier.Wait()
	before := tier.Fence("k")
	tier.Kill("k", "absent")
	_, ok := tier.Get("k")
	assert.False(t, ok, "killed")
	_, ok = tier.Get("other")
	assert.True(t, ok, "only the keys named")
	assert.False(t, fill(tier, before, "k", 3), "a fill fenced before the kill")
	assert.True(t, fill(tier, tier.Fence("k"), "k", 3), "one fenced after it")
	tier.Wait()
	e, ok := tier.Get("k")
	require.True(t, ok, "a new copy is not killed")
	assert.Equal(t, int64(3), e.Value)
	tier.Invalidate("k")
	_, ok = tier.Get("k")
	assert.False(t, ok)
	assert.False(t, fill(tier, before, "k", 4), "Invalidate fences")
}

// TestKillBreaksFences: a fence taken before a Kill no longer holds, so a
// read begun after a message was read, before it was applied, does not
// join a load begun before it.
func TestKillBreaksFences(t *testing.T) {
	tier := newTier(t, Options{})
	f := tier.Fence("k")
	require.True(t, tier.Holds("k", f))
	tier.Kill("k")
	assert.False(t, tier.Holds("k", f))
	assert.True(t, tier.Holds("k", tier.Fence("k")))
}

func TestHoldMissesWithoutDropping(t *testing.T) {
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("a"), "a", 1))
	tier.Wait()
	tier.Hold()
	tier.Hold()
	_, ok := tier.Get("a")
	assert.False(t, ok, "held")
	e, ok := tier.GetDespiteHold("a")
	require.True(t, ok, "GetDespiteHold sees what a hold hides")
	assert.Equal(t, int64(1), e.Value)
	// Fills and invalidations go on while held.
	require.True(t, fill(tier, tier.Fence("b"), "b", 2))
	tier.Invalidate("a")
	tier.Wait()
	_, ok = tier.GetDespiteHold("a")
	assert.False(t, ok, "but not what was invalidated")
	tier.Release()
	_, ok = tier.Get("b")
	assert.False(t, ok, "holds nest: one is still on")
	tier.Release()
	e, ok = tier.Get("b")
	require.True(t, ok, "released: what was held, and filled meanwhile, is served")
	assert.Equal(t, int64(2), e.Value)
	_, ok = tier.Get("a")
	assert.False(t, ok, "invalidated while held")
}

func TestFillCapturedBeforeInvalidateIsRefused(t *testing.T) {
	tier := newTier(t, Options{})
	f := tier.Fence("k")
	tier.Invalidate("k")
	assert.False(t, fill(tier, f, "k", 1))
	tier.Wait()
	_, ok := tier.Get("k")
	assert.False(t, ok)
	assert.Equal(t, uint64(1), tier.Stats().Fenced)
}

func TestInvalidateRemovesBufferedFill(t *testing.T) {
	// The fill is handed to ristretto's buffer and the invalidation follows
	// at once, before any Wait: the old value must never become readable.
	tier := newTier(t, Options{})
	for i := range 2000 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		tier.Invalidate(k)
		_, ok := tier.Get(k)
		require.False(t, ok, "key %s readable after its invalidation returned", k)
	}
	tier.Wait()
	for i := range 2000 {
		_, ok := tier.Get(fmt.Sprint("k", i))
		require.False(t, ok)
	}
}

func TestFlushTurnsEveryOlderEntryIntoAMissAtOnce(t *testing.T) {
	tier := newTier(t, Options{})
	const n = 1000
	for i := range n {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, int64(i)))
	}
	tier.Wait()
	for i := range n {
		_, ok := tier.Get(fmt.Sprint("k", i))
		require.True(t, ok)
	}
	staleFence := tier.Fence("late")
	before := tier.currentEpoch()
	tier.Reset()
	assert.Equal(t, before+1, tier.currentEpoch())
	for i := range n {
		_, ok := tier.Get(fmt.Sprint("k", i))
		require.False(t, ok, "entry %d survived the flush", i)
	}
	// A fill fenced before the flush is refused; one fenced after works.
	assert.False(t, fill(tier, staleFence, "late", 1))
	require.True(t, fill(tier, tier.Fence("k0"), "k0", 99))
	tier.Wait()
	e, ok := tier.Get("k0")
	require.True(t, ok)
	assert.Equal(t, int64(99), e.Value)
}

func TestReplace(t *testing.T) {
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("k"), "k", 1))

	// A fill that read before our write is refused after Replace.
	readerFence := tier.Fence("k")
	writerFence := tier.Fence("k")
	require.True(t, tier.Replace(writerFence, "k", Entry[int64]{Value: 2}, 1, time.Minute))
	assert.False(t, fill(tier, readerFence, "k", 1))
	tier.Wait()
	e, ok := tier.Get("k")
	require.True(t, ok)
	assert.Equal(t, int64(2), e.Value)

	// A Replace whose fence an invalidation broke only removes the key: the
	// invalidating write may be newer than ours.
	f := tier.Fence("k")
	tier.Invalidate("k")
	assert.False(t, tier.Replace(f, "k", Entry[int64]{Value: 3}, 1, time.Minute))
	tier.Wait()
	_, ok = tier.Get("k")
	assert.False(t, ok)
}

// An entry is a miss from the moment its TTL has passed: the tier checks
// expiry itself on every hit, so nothing (a sweep, a coarse clock) can
// extend it.
func TestTTLExpires(t *testing.T) {
	tier := newTier(t, Options{})
	const ttl = 40 * time.Millisecond
	before := time.Now()
	require.True(t, tier.Fill(tier.Fence("k"), "k", Entry[int64]{Value: 1}, 1, ttl))
	filled := time.Now()
	tier.Wait()
	if _, ok := tier.Get("k"); !ok {
		assert.GreaterOrEqual(t, time.Since(before), ttl, "a miss before the TTL passed")
	}
	for time.Since(filled) < ttl {
		runtime.Gosched()
	}
	_, ok := tier.Get("k")
	assert.False(t, ok, "a hit after the TTL passed")
	assert.False(t, tier.Fill(tier.Fence("k"), "k", Entry[int64]{Value: 1}, 1, 0), "a zero TTL stores nothing")
	// The longest TTL does not overflow into the past.
	require.True(t, tier.Fill(tier.Fence("forever"), "forever", Entry[int64]{Value: 1}, 1, math.MaxInt64))
	tier.Wait()
	_, ok = tier.Get("forever")
	assert.True(t, ok)
}

func TestCostBound(t *testing.T) {
	tier := newTier(t, Options{MaxCost: 1 << 20})
	for i := range 10_000 {
		k := fmt.Sprint("k", i)
		tier.Fill(tier.Fence(k), k, Entry[int64]{Value: 1}, 100, time.Minute)
		if i%64 == 0 {
			tier.Wait()
		}
	}
	tier.Wait()
	held := countHeld(tier, 10_000)
	perEntry := int64(EntryOverhead + 100)
	assert.LessOrEqual(t, int64(held), (1<<20-counterBytes(10*(1<<20/EntryOverhead)))/perEntry,
		"a 1 MiB tier holds what is left after its counters, at EntryOverhead + size each")
	assert.Greater(t, held, 1000)
	st := tier.Stats()
	assert.Positive(t, st.Evictions+st.Rejections+st.DroppedSets)
}

func TestMaxEntriesBoundsEntries(t *testing.T) {
	tier := newTier(t, Options{MaxCost: 64 << 20, MaxEntries: 1000})
	for i := range 5000 {
		k := fmt.Sprint("k", i)
		tier.Fill(tier.Fence(k), k, Entry[int64]{Value: 1}, 8, time.Minute)
		if i%64 == 0 {
			tier.Wait()
		}
	}
	tier.Wait()
	assert.LessOrEqual(t, countHeld(tier, 5000), 1000)
}

func countHeld(tier *Tier[int64], n int) int {
	held := 0
	for i := range n {
		if _, ok := tier.Get(fmt.Sprint("k", i)); ok {
			held++
		}
	}
	return held
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{MaxCost: -1}, {NumCounters: -1}, {Stripes: -1}} {
		_, err := New[int](o)
		assert.ErrorIs(t, err, ErrInvalidOptions, "%+v", o)
	}
}

func TestCloseIsIdempotentAndSafeWithConcurrentUse(t *testing.T) {
	tier, err := New[int64](Options{Stripes: 8})
	require.NoError(t, err)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprint(g, i%50)
				fill(tier, tier.Fence(k), k, 1)
				tier.Get(k)
				tier.Invalidate(k)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // let the workers get going; not a correctness wait
	tier.Close()
	tier.Close()
	close(stop)
	wg.Wait()
	_, ok := tier.Get("00")
	assert.False(t, ok)
	assert.False(t, fill(tier, tier.Fence("x"), "x", 1))
}

// TestRaceFillsAndInvalidations interleaves fills and invalidations of the
// same keys from many goroutines. Writers bump a key's source version and
// then invalidate it; fillers fence, read the source, and fill. The
// invariant, checked on every read during the run: once the invalidation of
// the write that made version v has returned, no read returns a version
// older than v. At quiescence every present entry holds the source version.
func TestRaceFillsAndInvalidations(t *testing.T) {
	raceFillsAndInvalidations(t, newTier(t, Options{Stripes: 16})) // few stripes: more collisions
}

// The same with the drainer handing inserts over as soon as it can, so
// that hand-overs race the fills and the invalidations.
func TestRaceFillsAndInvalidationsWhileTheDrainerRuns(t *testing.T) {
	defer func(d time.Duration) { drainDelay = d }(drainDelay)
	drainDelay = 0
	raceFillsAndInvalidations(t, newTier(t, Options{Stripes: 16}))
}

func raceFillsAndInvalidations(t *testing.T, tier *Tier[int64]) {
	const keys = 32
	var source, invalidated [keys]atomic.Int64
	var violations, reads, hits atomic.Int64
	name := func(i int) string { return fmt.Sprint("key-", i) }

	deadline := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	var writeMu [keys]sync.Mutex
	for w := range 3 {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i++ {
				k := i % keys
				writeMu[k].Lock()
				v := source[k].Add(1)
				if w == 0 {
					tier.Kill(name(k)) // as the invalidation stream's reader does first
				}
				tier.Invalidate(name(k))
				invalidated[k].Store(v)
				writeMu[k].Unlock()
			}
		})
	}
	for f := range 4 {
		wg.Go(func() {
			for i := f; time.Now().Before(deadline); i++ {
				k := (i * 7) % keys
				fence := tier.Fence(name(k))
				v := source[k].Load()
				fill(tier, fence, name(k), v)
			}
		})
	}
	for r := range 3 {
		wg.Go(func() {
			for i := r; time.Now().Before(deadline); i++ {
				k := (i * 13) % keys
				floor := invalidated[k].Load()
				e, ok := tier.Get(name(k))
				reads.Add(1)
				if ok {
					hits.Add(1)
					if e.Value < floor {
						violations.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	tier.Wait()
	t.Logf("reads %d, hits %d, fenced fills %d", reads.Load(), hits.Load(), tier.Stats().Fenced)
	assert.Zero(t, violations.Load(), "reads returned a version older than a completed invalidation")
	assert.Positive(t, hits.Load(), "the test must exercise hits")
	assert.Positive(t, tier.Stats().Fenced, "the test must exercise refused fills")
	for k := range keys {
		if e, ok := tier.Get(name(k)); ok {
			assert.Equal(t, source[k].Load(), e.Value, "key %d", k)
		}
	}
}

func BenchmarkGetHit(b *testing.B) {
	const n = 1024
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("key-", i)
	}
	b.Run("tier", func(b *testing.B) {
		tier := newTier(b, Options{})
		for _, k := range keys {
			tier.Fill(tier.Fence(k), k, Entry[int64]{Value: 1}, 1, time.Hour)
		}
		tier.Wait()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				tier.Get(keys[i&(n-1)])
				i++
			}
		})
	})
	b.Run("raw-ristretto", func(b *testing.B) {
		c, err := ristretto.NewCache(&ristretto.Config[string, int64]{NumCounters: 1e5, MaxCost: 1 << 20, BufferItems: 64, IgnoreInternalCost: true})
		require.NoError(b, err)
		defer c.Close()
		for _, k := range keys {
			c.SetWithTTL(k, 1, 1, time.Hour)
		}
		c.Wait()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c.Get(keys[i&(n-1)])
				i++
			}
		})
	})
}

func TestInvalidateTags(t *testing.T) {
	tier := newTier(t, Options{})
	put := func(key string, tags ...string) Fence {
		f := tier.Fence(key)
		require.True(t, tier.Fill(f, key, Entry[int64]{Value: 1, Tags: tags}, 1, time.Minute))
		return f
	}
	put("red1", "red")
	put("both", "red", "blue")
	put("blue1", "blue")
	put("plain")
	early := tier.Fence("late") // taken before the invalidation
	tier.Wait()

	tier.InvalidateTags("red")
	for key, want := range map[string]bool{"red1": false, "both": false, "blue1": true, "plain": true} {
		_, ok := tier.Get(key)
		assert.Equal(t, want, ok, key)
	}
	// A fill whose fence predates the invalidation lands, but is a miss:
	// what it read may be older than the invalidation.
	require.True(t, tier.Fill(early, "late", Entry[int64]{Value: 2, Tags: []string{"red"}}, 1, time.Minute))
	tier.Wait()
	_, ok := tier.Get("late")
	assert.False(t, ok)
	// A fill fenced after it is valid again.
	put("red1", "red")
	tier.Wait()
	_, ok = tier.Get("red1")
	assert.True(t, ok)
}

// The drainer hands inserts to ristretto by itself, a moment after fills,
// and empties their lists once ristretto has applied them.
func TestTheDrainerHandsInsertsOver(t *testing.T) {
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("k"), "k", 1))
	require.Eventually(t, func() bool {
		_, inRistretto := tier.cache.Get("k")
		return inRistretto && listOf(tier, "k").Load() == nil
	}, 5*time.Second, time.Millisecond)
	tier.Invalidate("k")
	_, ok := tier.Get("k")
	assert.False(t, ok)
}

// TestTagStripeNeverMovesBack: an InvalidateTags begun after a fence was
// taken leaves an entry filled under that fence a miss, whatever other
// InvalidateTags of the tag run at the same time. (The stripe was set with
// a plain store of a clock value taken earlier, so a concurrent, older
// call could move it back past the newer one.)
func TestTagStripeNeverMovesBack(t *testing.T) {
	tier := newTier(t, Options{})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range max(runtime.GOMAXPROCS(0)-1, 1) {
		wg.Go(func() {
			for !stop.Load() {
				tier.InvalidateTags("x")
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	idx := tier.tagStripe("x")
	// The race shows within milliseconds; two seconds bound the test.
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		f := tier.Fence("k")
		tier.InvalidateTags("x")
		if !tier.tagged(&tagFence{at: f.tagAt, idx: []uint32{idx}}) {
			t.Fatalf("iteration %d: an entry fenced at %d is still valid after a later InvalidateTags (stripe %d)", n, f.tagAt, tier.tagStripes[idx].Load())
		}
	}
}
