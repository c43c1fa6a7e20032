package local

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noDrainer keeps the drainer from recording applied inserts for the
// test's length: only the test's Waits do.
func noDrainer(t *testing.T) {
	d := drainDelay
	t.Cleanup(func() { drainDelay = d })
	drainDelay = time.Hour
}

// TestAFillIsReadableAtOnce: a Get right after a Fill of a key ristretto
// did not hold hits, although ristretto applies the insert later on its
// own goroutine. (Without the pending lists, most of these Gets miss.)
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

	// Many keys: ristretto applies some inserts before Kill comes, and
	// those are killed in its map; the others only in the pending lists.
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
// does not find it; the fill, seeing the stripe moved on, never gives the
// copy its deadline, so it is served at no time after the Kill: not from
// the list, not from ristretto's map (for a key ristretto held, the copy
// replaces the old one there at once).
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
			if tier.pendingSlot(c) == tier.pendingSlot(k) && (tier.stripeOf(c) == tier.stripeOf(k)) == sameStripe {
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

// TestCuttingKeepsEveryInsertNotApplied: inserts of different stripes may
// be out of their numbers' order in a list (pushed under different
// locks); the drainer's cut keeps every one not applied, so Kill still
// reaches it.
func TestCuttingKeepsEveryInsertNotApplied(t *testing.T) {
	noDrainer(t)
	tier := newTier(t, Options{Stripes: 4096})
	k := "k"
	var other string
	for j := 0; other == ""; j++ {
		if c := fmt.Sprint("other-", j); tier.pendingSlot(c) == tier.pendingSlot(k) && tier.stripeOf(c) != tier.stripeOf(k) {
			other = c
		}
	}
	st := func() *stored[int64] { s, _ := tier.newStored(tier.Fence(k), Entry[int64]{}, time.Minute); return s }
	// Pushed in this order: 3 (k), 7 (other), 5 (k); the list reads 5, 7, 3.
	tier.setPending(k, st(), 3)
	tier.setPending(other, st(), 7)
	tier.setPending(k, st(), 5)
	tier.drained.Store(6)
	tier.clearApplied()
	var seqs []uint64
	for p := tier.pendingSlot(k).Load(); p != nil; p = p.next.Load() {
		seqs = append(seqs, p.seq)
	}
	assert.Equal(t, []uint64{5, 7}, seqs, "7 is not applied: kept, and 3 below it cut")
	tier.drained.Store(7)
	tier.clearApplied()
	assert.Nil(t, tier.pendingSlot(k).Load(), "all applied: the list is empty")
}
