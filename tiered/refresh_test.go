package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

func TestStaleWhileRevalidateRefreshesOncePerFleet(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("swr")
	opts.FreshFor = 100 * time.Millisecond
	opts.EarlyRefreshBeta = -1 // isolate SWR from XFetch
	rs := replicas[string](t, srv, 4, opts)
	ctx := context.Background()
	var version, calls atomic.Int32
	slow := func(context.Context) (string, error) {
		calls.Add(1)
		time.Sleep(200 * time.Millisecond)
		return fmt.Sprint("v", version.Load()), nil
	}
	v, err := rs[0].GetOrLoad(ctx, "k", slow)
	require.NoError(t, err)
	require.Equal(t, "v0", v)
	for _, r := range rs[1:] {
		v, err := r.GetOrLoad(ctx, "k", slow)
		require.NoError(t, err)
		require.Equal(t, "v0", v)
	}
	require.Equal(t, int32(1), calls.Load())
	for _, r := range rs {
		r.local.Wait()
	}

	version.Store(1)
	require.Eventually(t, func() bool {
		_, ok := rs[0].local.Get("k")
		e, _ := rs[0].local.Get("k")
		return ok && time.Now().UnixNano() >= e.FreshUntil
	}, 5*time.Second, 5*time.Millisecond)
	// Stale now: every replica serves v0 at once, many times, while one
	// refresh runs for the whole fleet.
	for range 20 {
		for i, r := range rs {
			t0 := time.Now()
			v, err := r.GetOrLoad(ctx, "k", slow)
			require.NoError(t, err)
			assert.Equal(t, "v0", v, "replica %d", i)
			assert.Less(t, time.Since(t0), 100*time.Millisecond, "a stale value is served without waiting for the refresh")
		}
	}
	require.Eventually(t, func() bool {
		for _, r := range rs {
			if v, err := r.GetOrLoad(ctx, "k", slow); err != nil || v != "v1" {
				return false
			}
		}
		return true
	}, 5*time.Second, 5*time.Millisecond, "the refreshed value reaches every replica")
	assert.Equal(t, int32(2), calls.Load(), "one refresh for the whole fleet")
	var stale uint64
	for _, r := range rs {
		stale += r.Stats().StaleHits
	}
	assert.Positive(t, stale)
}

func TestEarlyRefreshHappensBeforeExpiry(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("early")
	opts.FreshFor = 300 * time.Millisecond
	opts.EarlyRefreshBeta = 5
	c := newCache[string](t, srv, opts)
	ctx := context.Background()
	var calls atomic.Int32
	load := func(context.Context) (string, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond) // δ = 20 ms, β·δ = 100 ms
		return "v", nil
	}
	_, err := c.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	c.local.Wait()
	e, _ := c.local.Get("k")
	for time.Now().UnixNano() < e.FreshUntil-int64(5*time.Millisecond) && calls.Load() == 1 {
		_, err := c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	assert.Equal(t, int32(2), calls.Load(), "a hit refreshed the value before it went stale")
	assert.Equal(t, uint64(1), c.Stats().EarlyRefresh)
	assert.Zero(t, c.Stats().StaleHits)
}

func TestNegativeCaching(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("neg")
	opts.NegativeTTL = 300 * time.Millisecond
	rs := replicas[string](t, srv, 2, opts)
	ctx := context.Background()
	var calls atomic.Int32
	missing := func(context.Context) (string, error) { calls.Add(1); return "", ErrNotFound }
	for range 5 {
		for _, r := range rs {
			_, err := r.GetOrLoad(ctx, "ghost", missing)
			assert.ErrorIs(t, err, ErrNotFound)
			_, err = r.Get(ctx, "ghost")
			assert.ErrorIs(t, err, ErrNotFound)
		}
	}
	assert.Equal(t, int32(1), calls.Load(), "the tombstone spares the origin, on every replica")

	// Writing the key ends the tombstone everywhere.
	require.NoError(t, rs[0].Set(ctx, "ghost", "alive"))
	require.Eventually(t, func() bool {
		v, err := rs[1].Get(ctx, "ghost")
		return err == nil && v == "alive"
	}, 5*time.Second, time.Millisecond)

	// A tombstone expires by itself.
	_, err := rs[0].GetOrLoad(ctx, "ghost2", missing)
	require.ErrorIs(t, err, ErrNotFound)
	require.Eventually(t, func() bool {
		_, err := rs[0].GetOrLoad(ctx, "ghost2", missing)
		return errors.Is(err, ErrNotFound) && calls.Load() == 3
	}, 5*time.Second, 10*time.Millisecond)
}

// TestARefreshedValueIsServedAtOnce: once a refresh has filled the local
// tier, the next read serves the new value, not the copy it replaced
// (which ristretto still held until the new insert's hand-over, about a
// millisecond later, before refreshes killed it: local.Tier.Refill).
func TestARefreshedValueIsServedAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[int]("refreshed")
	opts.FreshFor = 100 * time.Millisecond
	opts.EarlyRefreshBeta = 5
	c := newCache[int](t, srv, opts)
	ctx := context.Background()
	var calls atomic.Int32
	load := func(context.Context) (int, error) {
		time.Sleep(10 * time.Millisecond)
		return int(calls.Add(1)), nil
	}
	v, err := c.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	require.Equal(t, 1, v)
	c.local.Wait() // in ristretto: the refresh fills over a copy it holds
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 {
		require.True(t, time.Now().Before(deadline), "no refresh came")
		_, err := c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		time.Sleep(time.Millisecond)
	}
	// The refresh ends (refreshing is cleared) once it has filled the local
	// tier: look at once, well before the new insert's hand-over.
	for {
		if _, running := c.refreshing.Load("k"); !running {
			break
		}
		require.True(t, time.Now().Before(deadline), "the refresh did not end")
		runtime.Gosched()
	}
	e, ok := c.local.Get("k")
	require.True(t, ok, "the refreshed value is served")
	assert.Equal(t, 2, e.Value)
}

// A refresh keeps the TTL and freshness of the copy it refreshes, read
// back from Redis. A copy whose stamps no call could have written (here:
// written at 1 ns past the epoch, expiring in an hour, so a TTL of about
// 57 years, and fresh for 1 ns) carries neither over: the refreshed value
// gets RemoteTTL and the cache's own freshness, so it neither outlives
// RemoteTTL nor goes stale at once (and reloads on every read).
func TestARefreshKeepsNoForeignStamps(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("foreignstamps")
	opts.EarlyRefreshBeta = -1
	c := newCache[string](t, srv, opts)
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	payload, err := c.opts.Codec.Marshal("old")
	require.NoError(t, err)
	b, err := c.remote.Encode(&remote.Envelope{WrittenAt: 1, FreshUntil: 2, ExpiresAt: time.Now().Add(time.Hour).UnixNano(), Type: c.typeID, Payload: payload})
	require.NoError(t, err)
	require.NoError(t, rc.Do(ctx, rc.B().Set().Key(c.remote.ValueKey("k")).Value(string(b)).Px(time.Hour).Build()).Error())

	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "new", nil }
	v, err := c.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	assert.Equal(t, "old", v, "stale: served while it is refreshed")
	require.Eventually(t, func() bool { return c.Stats().Refreshes == 1 }, 5*time.Second, time.Millisecond)
	left, err := rc.Do(ctx, rc.B().Pttl().Key(c.remote.ValueKey("k")).Build()).AsInt64()
	require.NoError(t, err)
	assert.LessOrEqual(t, time.Duration(left)*time.Millisecond, opts.RemoteTTL, "the refreshed value's TTL is RemoteTTL's at most")
	env, err := c.remote.Get(ctx, "k")
	require.NoError(t, err)
	assert.Zero(t, env.FreshUntil, "the cache's own freshness (none: FreshFor 0), not 1 ns")
	assert.Equal(t, int32(1), loads.Load())
}

// TestRefreshesAreBoundedPerReplica: keys loaded together go stale
// together; a replica runs at most MaxRefreshes of their refreshes at a
// time, defers the others (served stale meanwhile), and starts them on
// later hits once room is made.
func TestRefreshesAreBoundedPerReplica(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("refreshbound")
	opts.FreshFor = 50 * time.Millisecond
	opts.EarlyRefreshBeta = -1
	opts.MaxRefreshes = 4
	c := newCache[string](t, srv, opts)
	ctx := context.Background()
	const keys = 20
	for i := range keys {
		v, err := c.GetOrLoad(ctx, fmt.Sprint("k", i), func(context.Context) (string, error) { return "old", nil })
		require.NoError(t, err)
		require.Equal(t, "old", v)
	}
	c.local.Wait()
	require.Eventually(t, func() bool {
		e, ok := c.local.Get(fmt.Sprint("k", keys-1))
		return ok && time.Now().UnixNano() >= e.FreshUntil
	}, 5*time.Second, 5*time.Millisecond)

	var running, most atomic.Int32
	release := make(chan struct{})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	t.Cleanup(let) // before Close, which waits for the refreshes, even on failure
	refresh := func(context.Context) (string, error) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		running.Add(-1)
		return "new", nil
	}
	for i := range keys {
		v, err := c.GetOrLoad(ctx, fmt.Sprint("k", i), refresh)
		require.NoError(t, err)
		require.Equal(t, "old", v, "a stale value is served at once")
	}
	require.Eventually(t, func() bool { return running.Load() == 4 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, keys-4, c.Stats().RefreshesDeferred, "the refreshes over the bound wait for later hits")
	let()
	require.Eventually(t, func() bool {
		for i := range keys {
			if v, err := c.GetOrLoad(ctx, fmt.Sprint("k", i), refresh); err != nil || v != "new" {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "later hits refresh every key")
	assert.EqualValues(t, 4, most.Load(), "never more than MaxRefreshes loads at a time")
}
