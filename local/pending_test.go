package local

import (
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noDrainer keeps the drainer from handing inserts to ristretto for the
// test's length: only the test's Waits do.
func noDrainer(t testing.TB) {
	d := drainDelay
	t.Cleanup(func() { drainDelay = d })
	drainDelay = time.Hour
}

// listOf is key's pending list.
func listOf(tier *Tier[int64], key string) *atomic.Pointer[pendingInsert[int64]] {
	slot, _ := tier.pendingSlot(key)
	return slot
}

// TestAFillIsReadableAtOnce: a Get right after a Fill of a key ristretto
// did not hold hits, although the insert reaches ristretto later. (Without
// the pending lists, every one of these Gets misses.)
func TestAFillIsReadableAtOnce(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	for i := range 2000 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, int64(i)))
		e, ok := tier.Get(k)
		require.True(t, ok, "key %s missed right after its fill", k)
		require.Equal(t, int64(i), e.Value)
	}
	tier.Wait()
	for i := range 2000 {
		e, ok := tier.Get(fmt.Sprint("k", i))
		require.True(t, ok, "applied by ristretto")
		require.Equal(t, int64(i), e.Value)
	}
}

// TestAPendingFillStopsBeingServedAsAnyEntryDoes: whatever makes an entry
// a miss makes a pending one a miss too, before ristretto applies it.
func TestAPendingFillStopsBeingServedAsAnyEntryDoes(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	pending := func(k string) {
		t.Helper()
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		_, ok := tier.Get(k)
		require.True(t, ok, "%s pending and served", k)
	}
	miss := func(k, why string) {
		t.Helper()
		_, ok := tier.Get(k)
		assert.False(t, ok, "%s: %s", k, why)
	}

	for i := range 200 {
		k := fmt.Sprint("killed-", i)
		pending(k)
		tier.Kill(k)
		miss(k, "Kill")
	}
	pending("invalidated")
	tier.Invalidate("invalidated")
	miss("invalidated", "Invalidate")

	require.True(t, tier.Fill(tier.Fence("expires"), "expires", Entry[int64]{Value: 1}, 1, time.Second))
	_, ok := tier.Get("expires")
	require.True(t, ok, "served before its TTL")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := tier.Get("expires"); !ok {
			break
		}
		require.True(t, time.Now().Before(deadline), "a pending entry outlived its TTL")
		time.Sleep(time.Millisecond)
	}

	require.True(t, tier.Fill(tier.Fence("tagged"), "tagged", Entry[int64]{Value: 1, Tags: []string{"t"}}, 1, time.Minute))
	_, ok = tier.Get("tagged")
	require.True(t, ok)
	tier.InvalidateTags("t")
	miss("tagged", "InvalidateTags")

	pending("held")
	tier.Hold()
	miss("held", "Hold")
	tier.Release()

	pending("reset")
	tier.Reset()
	miss("reset", "Reset")

	pending("closed")
	tier.Close()
	miss("closed", "Close")
}

// TestKillCatchesAnInsertLeavingItsSlot: Kill makes a copy served from
// its pending list miss even when ristretto applies it, and the drainer
// cuts it off the list, in the middle of the Kill. (Looking in ristretto's
// map first and in the list second missed it: 200 of 200 keys were still
// served.)
func TestKillCatchesAnInsertLeavingItsSlot(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	testHooks.betweenKillLooks = func() { tier.Wait() } // applies every insert, empties the lists
	t.Cleanup(func() { testHooks.betweenKillLooks = nil })
	for i := range 200 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		_, ok := tier.Get(k)
		require.True(t, ok)
		tier.Kill(k)
		_, ok = tier.Get(k)
		require.False(t, ok, "key %s served after Kill returned", k)
	}
}

func heldSlots(tier *Tier[int64]) int {
	n := 0
	for i := range tier.pending {
		if tier.pending[i].Load() != nil {
			n++
		}
	}
	return n
}

// TestAppliedSlotsAreEmptied: once ristretto has applied an insert, it is
// cut off its list (the drainer's work, which Wait does too), so the lists
// keep nothing alive that ristretto has dropped; Close empties them all.
func TestAppliedSlotsAreEmptied(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{Stripes: 64})
	for i := range 500 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, 1))
	}
	require.Positive(t, heldSlots(tier))
	tier.Wait()
	assert.Zero(t, heldSlots(tier))
	for i := range 500 {
		_, ok := tier.Get(fmt.Sprint("k", i))
		require.True(t, ok, "served by ristretto once the list is empty")
	}
	require.True(t, fill(tier, tier.Fence("last"), "last", 1))
	require.Positive(t, heldSlots(tier))
	tier.Close()
	assert.Zero(t, heldSlots(tier), "Close lets go of every list")
}

// TestAGetSpanningAHandOverFindsTheInsert: a Get whose look in ristretto
// comes before a hand-over applies the key's insert, and whose look in the
// lists comes after the hand-over has cut it off, finds it in ristretto: a
// value just filled is a hit, whenever the drainer's round runs.
func TestAGetSpanningAHandOverFindsTheInsert(t *testing.T) {
	noDrainer(t)
	t.Cleanup(func() { testHooks.betweenGetLooks = nil })
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("k"), "k", 7))
	testHooks.betweenGetLooks = func() {
		testHooks.betweenGetLooks = nil
		tier.Wait() // the drainer's round, between the two looks
	}
	e, ok := tier.Get("k")
	require.True(t, ok, "the value just filled missed")
	assert.Equal(t, int64(7), e.Value)
	assert.Nil(t, listOf(tier, "k").Load(), "the round cut the insert off its list")
	_, ok = tier.Get("absent")
	assert.False(t, ok)
}

// TestAHandOverLooksAtTheListsMarked: a hand-over looks only at the lists
// an insert was pushed to since the last one, and takes their marks; a
// list it leaves an insert in (one whose fill is under way) stays marked,
// so that the next hand-over, after the fill, finds the insert and
// empties the list.
func TestAHandOverLooksAtTheListsMarked(t *testing.T) {
	noDrainer(t)
	t.Cleanup(func() { testHooks.beforeBirth = nil })
	tier := newTier(t, Options{Stripes: 64})
	marked := func() int {
		n := 0
		for w := range tier.marks {
			n += bits.OnesCount64(tier.marks[w].bits.Load())
		}
		return n
	}
	require.Zero(t, marked())
	require.True(t, fill(tier, tier.Fence("k"), "k", 1))
	require.Equal(t, 1, marked())
	tier.Wait()
	assert.Zero(t, marked(), "the marks of the lists emptied are taken")
	assert.Zero(t, heldSlots(tier))

	var markedDuringFill int
	testHooks.beforeBirth = func() {
		testHooks.beforeBirth = nil
		tier.Wait() // a round while the insert is unborn: it stays
		markedDuringFill = marked()
	}
	require.True(t, fill(tier, tier.Fence("k"), "k", 2))
	assert.Equal(t, 1, markedDuringFill, "the list left with an insert stays marked")
	assert.NotNil(t, listOf(tier, "k").Load())
	tier.Wait()
	assert.Nil(t, listOf(tier, "k").Load(), "the next round found the insert")
	assert.Zero(t, marked())
	e, ok := tier.Get("k")
	require.True(t, ok)
	assert.Equal(t, int64(2), e.Value)
}

// TestEveryInsertIsHandedOverUnderConcurrentFills: fills from several
// goroutines, with the drainer at work, leave no insert behind: after a
// Wait every list is empty and every key is served.
func TestEveryInsertIsHandedOverUnderConcurrentFills(t *testing.T) {
	tier := newTier(t, Options{Stripes: 64})
	const keys = 500
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				k := fmt.Sprint("k", (i*7+g)%keys)
				fill(tier, tier.Fence(k), k, int64(i))
			}
		})
	}
	wg.Wait()
	tier.Wait()
	assert.Zero(t, heldSlots(tier), "inserts left in the lists")
	for i := range keys {
		_, ok := tier.Get(fmt.Sprint("k", i))
		require.True(t, ok, "k%d not served", i)
	}
}

// TestTheDrainerEmptiesAppliedSlots: the drainer empties the lists by
// itself, a moment after the fills.
func TestTheDrainerEmptiesAppliedSlots(t *testing.T) {
	tier := newTier(t, Options{Stripes: 64})
	for i := range 500 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, 1))
	}
	require.Eventually(t, func() bool { return heldSlots(tier) == 0 }, 5*time.Second, time.Millisecond)
}

// TestAFillRacingAKillKillsItself: a Kill that comes after a fill's fence
// check (it takes no lock) and looks before the fill's copy is in its list
// does not find it; the fill, seeing the stripe moved on, kills the copy
// instead of giving it its deadline, so it is served at no time after the
// Kill: not from the list, not from ristretto's map (it is not handed
// over; for a key ristretto held, the Kill killed the old copy there).
func TestAFillRacingAKillKillsItself(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	t.Cleanup(func() { testHooks.beforeSlot, testHooks.beforeBirth = nil, nil })
	for _, c := range []struct {
		name          string
		held, replace bool
	}{{"fill", false, false}, {"fill-of-a-held-key", true, false}, {"replace", false, true}} {
		k := c.name
		if c.held {
			require.True(t, fill(tier, tier.Fence(k), k, 0))
			tier.Wait()
		}
		var servedBeforeBirth bool
		testHooks.beforeSlot = func() {
			testHooks.beforeSlot = nil
			tier.Kill(k) // a peer's message, read meanwhile
		}
		testHooks.beforeBirth = func() {
			testHooks.beforeBirth = nil
			_, servedBeforeBirth = tier.Get(k) // a read begun after the Kill returned
		}
		f := tier.Fence(k)
		e := Entry[int64]{Value: 1}
		var handed bool
		if c.replace {
			handed = tier.Replace(f, k, e, 1, time.Minute)
		} else {
			handed = tier.Fill(f, k, e, 1, time.Minute)
		}
		require.True(t, handed, "the fence held when checked")
		assert.False(t, servedBeforeBirth, "%s: served after the Kill that raced it, before the fill looked again", k)
		_, ok := tier.Get(k)
		assert.False(t, ok, "%s: served after the Kill that raced it", k)
		tier.Wait()
		_, ok = tier.Get(k)
		assert.False(t, ok, "%s: served once ristretto applied it", k)
	}
}

// TestKillReachesEveryBufferedInsert: Kill kills every insert of the key
// ristretto has not applied, not only the newest in its list: here an
// insert came after it from another key sharing the list (of another
// stripe, or of the same one) or the key's own second insert, which
// ristretto refuses while keeping the first. (With one insert per slot,
// 199 of 200 such keys were served again once ristretto applied them.)
func TestKillReachesEveryBufferedInsert(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{Stripes: 4096}) // more stripes than lists
	sharing := func(k string, sameStripe bool) string {
		for j := 0; ; j++ {
			c := fmt.Sprint(k, "-other-", j)
			if listOf(tier, c) == listOf(tier, k) && (tier.stripeOf(c) == tier.stripeOf(k)) == sameStripe {
				return c
			}
		}
	}
	for i := range 300 {
		k := fmt.Sprint("k", i)
		var other string
		switch i % 3 {
		case 0:
			other = sharing(k, false)
		case 1:
			other = sharing(k, true)
		default:
			other = k // the key's own second fill
		}
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		require.True(t, fill(tier, tier.Fence(other), other, 2))
		tier.Kill(k)
		_, ok := tier.Get(k)
		require.False(t, ok, "%s served after Kill", k)
		tier.Wait()
		_, ok = tier.Get(k)
		require.False(t, ok, "%s served once ristretto applied it", k)
		tier.Invalidate(k, other)
	}
}

// TestAnInsertMadeDuringAHandOverWaitsForTheNext: an insert pushed while
// the drainer hands its list over, or after ristretto applied the rest
// and before the cut, is neither handed over unseen nor cut: it stays
// readable from its list, and the next hand-over gives it to ristretto.
func TestAnInsertMadeDuringAHandOverWaitsForTheNext(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{Stripes: 4096})
	t.Cleanup(func() { testHooks.beforeHandOver, testHooks.beforeCut = nil, nil })
	sameSlot := func(k, prefix string) string {
		for j := 0; ; j++ {
			if c := fmt.Sprint(prefix, j); listOf(tier, c) == listOf(tier, k) {
				return c
			}
		}
	}
	for _, when := range []string{"during the hand-over", "before the cut"} {
		k := "k-" + when
		late := sameSlot(k, "late-"+when+"-")
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		hook := func() { require.True(t, fill(tier, tier.Fence(late), late, 2)) }
		if when == "before the cut" {
			testHooks.beforeCut = func() { testHooks.beforeCut = nil; hook() }
		} else {
			testHooks.beforeHandOver = func(string) { testHooks.beforeHandOver = nil; hook() }
		}
		tier.Wait()
		_, inRistretto := tier.cache.Get(k)
		assert.True(t, inRistretto, "%s: handed over", k)
		_, inRistretto = tier.cache.Get(late)
		assert.False(t, inRistretto, "%s: not handed over by the flush it came in", late)
		e, ok := tier.Get(late)
		require.True(t, ok, "%s: still served from its list", late)
		assert.Equal(t, int64(2), e.Value)
		tier.Wait()
		_, inRistretto = tier.cache.Get(late)
		assert.True(t, inRistretto, "%s: handed over by the next flush", late)
		assert.Nil(t, listOf(tier, late).Load(), "every insert applied: the list is empty")
	}
}

// TestOnlyTheNewestInsertOfAKeyIsHandedOver: of two fills of a key
// ristretto does not hold, made between two hand-overs, only the second
// is handed over. (Of two Sets of a key it does not hold yet, ristretto
// keeps the first and refuses the second, unless it applied the first
// before the second came, which the second then overwrites: with both
// handed over, oldest first, readers saw the second value, then the
// first; newest first, the second value, or a refusal.)
func TestOnlyTheNewestInsertOfAKeyIsHandedOver(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	for i := range 200 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		require.True(t, fill(tier, tier.Fence(k), k, 2))
		e, ok := tier.Get(k)
		require.True(t, ok)
		require.Equal(t, int64(2), e.Value, "the newest fill is served")
	}
	tier.Wait()
	for i := range 200 {
		e, ok := tier.Get(fmt.Sprint("k", i))
		require.True(t, ok)
		require.Equal(t, int64(2), e.Value, "ristretto holds the newest fill")
	}
	assert.Zero(t, tier.Stats().Rejections, "no Set of an older fill reached ristretto")
}

// TestADeadInsertIsNotHandedOver: an insert that can no longer be served
// (killed, removed, killed at birth by a Kill that raced its fill, of an
// earlier epoch, of an invalidated tag, expired) is not handed to
// ristretto, where it would take memory until evicted.
func TestADeadInsertIsNotHandedOver(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	handed := map[string]int{}
	testHooks.beforeHandOver = func(k string) { handed[k]++ }
	t.Cleanup(func() { testHooks.beforeSlot, testHooks.beforeHandOver = nil, nil })
	require.True(t, fill(tier, tier.Fence("killed"), "killed", 1))
	tier.Kill("killed")
	require.True(t, fill(tier, tier.Fence("invalidated"), "invalidated", 1))
	tier.Invalidate("invalidated")
	testHooks.beforeSlot = func() { testHooks.beforeSlot = nil; tier.Kill("unborn") }
	require.True(t, fill(tier, tier.Fence("unborn"), "unborn", 1))
	require.True(t, tier.Fill(tier.Fence("tagged"), "tagged", Entry[int64]{Value: 1, Tags: []string{"t"}}, 1, time.Minute))
	tier.InvalidateTags("t")
	require.True(t, tier.Fill(tier.Fence("expired"), "expired", Entry[int64]{Value: 1}, 1, time.Nanosecond))
	require.True(t, fill(tier, tier.Fence("alive"), "alive", 1))
	tier.Wait()
	notHanded := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			assert.Zero(t, handed[k], "%s handed over", k)
			_, inRistretto := tier.cache.Get(k)
			assert.False(t, inRistretto, k)
			_, ok := tier.Get(k)
			assert.False(t, ok, k)
		}
	}
	notHanded("killed", "invalidated", "unborn", "tagged", "expired")
	_, inRistretto := tier.cache.Get("alive")
	assert.True(t, inRistretto, "alive: handed over in the same flush")
	assert.Equal(t, 1, handed["alive"])
	// Last: a Reset makes every insert before it dead.
	require.True(t, fill(tier, tier.Fence("reset"), "reset", 1))
	tier.Reset()
	tier.Wait()
	notHanded("reset")
}

// TestARemoveRacingItsHandOverIsNotUndone: an Invalidate (or a write's
// Replace) that comes after the drainer found the insert alive, and
// before it handed it to ristretto, is not undone by the hand-over: the
// insert reaches ristretto dead. (Deleting ristretto's copy alone let the
// insert arrive after the delete: every one of these keys was served.)
func TestARemoveRacingItsHandOverIsNotUndone(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	t.Cleanup(func() { testHooks.beforeHandOver = nil })
	for i := range 100 {
		k := fmt.Sprint("k", i)
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		testHooks.beforeHandOver = func(string) {
			testHooks.beforeHandOver = nil
			if i%2 == 0 {
				tier.Invalidate(k)
			} else {
				// A write's copy refused by its fence: only the removal.
				require.False(t, tier.Replace(Fence{}, k, Entry[int64]{Value: 2}, 1, time.Minute))
			}
		}
		tier.Wait()
		_, ok := tier.Get(k)
		require.False(t, ok, "%s served after the remove its hand-over raced", k)
		_, inRistretto := tier.cache.Get(k)
		require.False(t, inRistretto, "%s: a dead copy left in ristretto, holding cost", k)
	}
}

// TestARefillIsServedAtOnceOverACopyRistrettoHolds: a fill of a key
// ristretto holds is served from its list at once, not after its
// hand-over: a Refill over a live copy (a refresh), a Fill over a copy of
// an earlier epoch or of an invalidated tag. A Fill over a live copy (one
// that came in since the miss) leaves it served until the hand-over.
func TestARefillIsServedAtOnceOverACopyRistrettoHolds(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	entry := func(v int64, tags ...string) Entry[int64] { return Entry[int64]{Value: v, Tags: tags} }
	require.True(t, tier.Fill(tier.Fence("reset"), "reset", entry(1), 1, time.Minute))
	require.True(t, tier.Fill(tier.Fence("tagged"), "tagged", entry(1, "t"), 1, time.Minute))
	tier.Wait()
	tier.Reset()
	tier.InvalidateTags("t")
	for _, k := range []string{"refreshed", "raced"} {
		require.True(t, tier.Fill(tier.Fence(k), k, entry(1), 1, time.Minute))
	}
	tier.Wait()
	served := func(k string, want int64) {
		t.Helper()
		e, ok := tier.Get(k)
		require.True(t, ok, k)
		assert.Equal(t, want, e.Value, k)
	}
	for _, k := range []string{"reset", "tagged", "raced"} {
		require.True(t, tier.Fill(tier.Fence(k), k, entry(2, "t"), 1, time.Minute))
	}
	require.True(t, tier.Refill(tier.Fence("refreshed"), "refreshed", entry(2), 1, time.Minute))
	served("reset", 2)
	served("tagged", 2)
	served("refreshed", 2)
	served("raced", 1)
	tier.Wait()
	for _, k := range []string{"reset", "tagged", "refreshed", "raced"} {
		served(k, 2)
	}
}

// TestANewerFillIsNotUndoneByAnOlderOneBeingHandedOver: a fill (or a
// Refill) of a key made while the drainer hands over the key's older
// insert is served from then on, also once ristretto has applied the
// older one. (The older one arrived in ristretto live after the newer was
// served: readers saw 2, then 1, until the next hand-over.)
func TestANewerFillIsNotUndoneByAnOlderOneBeingHandedOver(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	t.Cleanup(func() { testHooks.beforeHandOver = nil })
	for i, held := range []bool{false, true, false, true} {
		k := fmt.Sprint("k", i)
		refill := i >= 2
		if held {
			require.True(t, fill(tier, tier.Fence(k), k, 0))
			tier.Wait()
		}
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		testHooks.beforeHandOver = func(string) {
			testHooks.beforeHandOver = nil
			e := Entry[int64]{Value: 2}
			if refill {
				require.True(t, tier.Refill(tier.Fence(k), k, e, 1, time.Minute))
			} else {
				require.True(t, tier.Fill(tier.Fence(k), k, e, 1, time.Minute))
			}
		}
		tier.Wait() // hands the first over, not the second
		e, ok := tier.Get(k)
		require.True(t, ok, k)
		require.Equal(t, int64(2), e.Value, "%s (held %v, refill %v): the older fill came back", k, held, refill)
		tier.Wait()
		e, ok = tier.Get(k)
		require.True(t, ok, k)
		require.Equal(t, int64(2), e.Value, k)
	}
}

// TestARefillHandedOverBeforeItsBirthIsServed: a Refill whose insert the
// drainer hands over before the Refill looks in ristretto does not kill
// it there. (It did: the refreshed key missed until reloaded.)
func TestARefillHandedOverBeforeItsBirthIsServed(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	t.Cleanup(func() { testHooks.beforeBirth = nil })
	require.True(t, fill(tier, tier.Fence("k"), "k", 1))
	tier.Wait()
	testHooks.beforeBirth = func() { testHooks.beforeBirth = nil; tier.Wait() }
	require.True(t, tier.Refill(tier.Fence("k"), "k", Entry[int64]{Value: 2}, 1, time.Minute))
	e, ok := tier.Get("k")
	require.True(t, ok, "the refreshed key is served")
	assert.Equal(t, int64(2), e.Value)
}

// TestANewerFillIsNotUndoneAcrossACut: a fill made while the drainer hands
// over the key's older insert, served from its list at once, is served
// from then on, also once ristretto has applied the older one and it was
// cut off the list before the fill could kill it. (The fill killed the
// older only after its birth: value 2 was served, then 1, until the next
// hand-over.) With ristretto holding nothing, and holding a dead copy
// (after a Reset).
func TestANewerFillIsNotUndoneAcrossACut(t *testing.T) {
	noDrainer(t)
	t.Cleanup(func() { testHooks.beforeHandOver, testHooks.afterBirth = nil, nil })
	for _, reset := range []bool{false, true} {
		tier := newTier(t, Options{})
		k := "k"
		if reset {
			require.True(t, fill(tier, tier.Fence(k), k, 0))
			tier.Wait()
			tier.Reset()
		}
		require.True(t, fill(tier, tier.Fence(k), k, 1))
		born, release, done := make(chan int64), make(chan struct{}), make(chan struct{})
		testHooks.beforeHandOver = func(string) {
			testHooks.beforeHandOver = nil
			go func() { // the newer fill, on its own goroutine
				defer close(done)
				testHooks.afterBirth = func() {
					testHooks.afterBirth = nil
					v := int64(-1)
					if e, ok := tier.Get(k); ok {
						v = e.Value
					}
					born <- v
					<-release
				}
				tier.Fill(tier.Fence(k), k, Entry[int64]{Value: 2}, 1, time.Minute)
			}()
			require.Equal(t, int64(2), <-born, "the newer fill is served")
		}
		tier.Wait() // hands the older over, applies it, cuts it
		close(release)
		<-done
		e, ok := tier.Get(k)
		require.True(t, ok)
		require.Equal(t, int64(2), e.Value, "reset %v: 2 was served, then the older 1", reset)
	}
}

// TestAGetNeverGoesBackToAnOlderFill: a Get that looks in ristretto before
// the key's older insert is applied there, and in the list after it was
// applied and cut and a newer fill was made, serves what the next Get
// will (the older, until the newer's hand-over), not the newer then the
// older.
func TestAGetNeverGoesBackToAnOlderFill(t *testing.T) {
	noDrainer(t)
	t.Cleanup(func() { testHooks.betweenGetLooks = nil })
	tier := newTier(t, Options{})
	k := "k"
	require.True(t, fill(tier, tier.Fence(k), k, 1))
	looked, resume := make(chan struct{}), make(chan struct{})
	testHooks.betweenGetLooks = func() {
		testHooks.betweenGetLooks = nil
		close(looked)
		<-resume
	}
	first := make(chan int64)
	go func() {
		v := int64(-1)
		if e, ok := tier.Get(k); ok {
			v = e.Value
		}
		first <- v
	}()
	<-looked    // ristretto missed: the older insert is only in its list
	tier.Wait() // applied, cut
	require.True(t, fill(tier, tier.Fence(k), k, 2))
	close(resume)
	v1 := <-first
	e, ok := tier.Get(k)
	require.True(t, ok)
	require.False(t, v1 == 2 && e.Value == 1, "2 was served, then the older 1")
	tier.Wait()
	e, ok = tier.Get(k)
	require.True(t, ok)
	assert.Equal(t, int64(2), e.Value, "the newer, once handed over")
}

// TestAnInsertIsNotHandedOverBeforeItsBirth: a fill of a key ristretto
// holds live, handed over before its birth, would replace the live copy
// at once with one that misses until born, and that is lost with it if a
// Kill on its stripe kills it at birth. The hand-over waits for the birth.
func TestAnInsertIsNotHandedOverBeforeItsBirth(t *testing.T) {
	noDrainer(t)
	t.Cleanup(func() { testHooks.beforeBirth = nil })
	tier := newTier(t, Options{Stripes: 16})
	k := "k"
	var j string
	for i := 0; ; i++ {
		if j = fmt.Sprint("j", i); tier.stripeOf(j) == tier.stripeOf(k) {
			break
		}
	}
	require.True(t, fill(tier, tier.Fence(k), k, 1))
	tier.Wait()
	var missedBeforeBirth bool
	testHooks.beforeBirth = func() {
		testHooks.beforeBirth = nil
		tier.Wait() // the drainer's round, now
		_, ok := tier.Get(k)
		missedBeforeBirth = !ok
		tier.Kill(j) // another key of the stripe: the fill dies at birth
	}
	require.True(t, tier.Fill(tier.Fence(k), k, Entry[int64]{Value: 2}, 1, time.Minute))
	assert.False(t, missedBeforeBirth, "the live copy missed while the fill was unborn")
	e, ok := tier.Get(k)
	require.True(t, ok, "the live copy, valid, lost")
	assert.Equal(t, int64(1), e.Value)
}

// TestAWaitQueuedBehindAHandOverSharesTheNext: a Wait that saw n
// hand-overs begun and finds one more begun (and ended) once it holds the
// lock makes none of its own: that one covered everything before it.
func TestAWaitQueuedBehindAHandOverSharesTheNext(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{})
	begun := tier.flushes.Load()
	tier.Wait() // another caller's, begun after this one's look
	require.True(t, fill(tier, tier.Fence("late"), "late", 1))
	tier.flushAfter(begun)
	_, inRistretto := tier.cache.Get("late")
	assert.False(t, inRistretto, "a second hand-over was made")
	tier.Wait()
	_, inRistretto = tier.cache.Get("late")
	assert.True(t, inRistretto, "a Wait after the fill hands it over")
}

// BenchmarkHandOverFew is the drainer's usual round under a steady miss
// rate: a few inserts (8) since the last hand-over, into a tier that holds
// their keys already, then Wait. It is what each round costs beyond its
// inserts: looking for them among the lists, and ristretto's Wait.
func BenchmarkHandOverFew(b *testing.B) {
	noDrainer(b)
	tier, err := New[int64](Options{MaxCost: 1 << 30})
	require.NoError(b, err)
	defer tier.Close()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("key-", i)
		fill(tier, tier.Fence(keys[i]), keys[i], 1)
	}
	tier.Wait()
	i := 0
	for b.Loop() {
		for range 8 {
			k := keys[i%len(keys)]
			fill(tier, tier.Fence(k), k, int64(i))
			i++
		}
		tier.Wait()
	}
	if d := tier.Stats().DroppedSets; d != 0 {
		b.Fatalf("%d inserts dropped", d)
	}
}

// BenchmarkHandOver is a hand-over's cost per insert, of a few inserts and
// of many (a drainer that fell behind, a warm-up's batch), with a second
// fill of every tenth key: the cost per insert should not grow with the
// number pending.
func BenchmarkHandOver(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			noDrainer(b)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprint("key-", i)
			}
			for b.Loop() {
				b.StopTimer()
				tier, err := New[int64](Options{MaxCost: 1 << 30}) // every insert a new key
				require.NoError(b, err)
				for i, k := range keys {
					fill(tier, tier.Fence(k), k, 1)
					if i%10 == 0 {
						fill(tier, tier.Fence(k), k, 2)
					}
				}
				b.StartTimer()
				tier.Wait()
				b.StopTimer()
				if d := tier.Stats().DroppedSets; d != 0 {
					b.Fatalf("%d inserts dropped", d)
				}
				tier.Close()
				b.StartTimer()
			}
			inserts := n + (n+9)/10
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*inserts), "ns/insert")
		})
	}
}
