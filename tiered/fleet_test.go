package tiered

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// stampede runs replicas × callers concurrent GetOrLoads of one missing key
// and returns each caller's latency.
func stampede(t testing.TB, rs []*Cache[string], callers int, key string, load func(context.Context) (string, error)) []time.Duration {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, r := range rs {
		for range callers {
			wg.Go(func() {
				<-start
				t0 := time.Now()
				v, err := r.GetOrLoad(context.Background(), key, load)
				d := time.Since(t0)
				assert.NoError(t, err)
				assert.Equal(t, "value", v)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			})
		}
	}
	close(start)
	wg.Wait()
	slices.Sort(lat)
	return lat
}

func TestStampedeOneLoadPerFleet(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 4, testOptions[string]("stampede"))
	reads := make([]uint64, len(rs))
	for round := range 5 {
		var calls atomic.Int32
		load := func(context.Context) (string, error) {
			calls.Add(1)
			time.Sleep(50 * time.Millisecond) // the origin
			return "value", nil
		}
		lat := stampede(t, rs, 100, fmt.Sprint("missing-", round), load)
		require.Len(t, lat, 400)
		assert.Equal(t, int32(1), calls.Load(), "round %d: one origin call for 4 replicas × 100 callers", round)
		for i, r := range rs {
			// The first caller's read answers the others of its replica:
			// a replica that waits makes one more read, registered for
			// the wake-up, not one per caller.
			n := r.Stats().Remote.Ops[remote.OpGetOrLease].Calls
			assert.LessOrEqual(t, n-reads[i], uint64(2), "round %d, replica %d: lease reads", round, i)
			reads[i] = n
		}
		t.Logf("round %d: loader calls %d, caller p50=%v p99=%v max=%v", round, calls.Load(), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	}
	var waits uint64
	for _, r := range rs {
		waits += r.Stats().LeaseWaits
	}
	assert.Positive(t, waits, "other replicas waited on the lease")
}

func TestHolderCtxCancelledAnotherReplicaCompletes(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, testOptions[string]("handover"))
	started := make(chan struct{})
	var calls atomic.Int32
	load := func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-ctx.Done() // the holder's load honours its ctx
			return "", ctx.Err()
		}
		return "value", nil
	}
	holderCtx, cancel := context.WithCancel(context.Background())
	holderDone := make(chan error)
	go func() {
		_, err := rs[0].GetOrLoad(holderCtx, "k", load)
		holderDone <- err
	}()
	<-started
	waiterDone := make(chan string)
	go func() {
		v, err := rs[1].GetOrLoad(context.Background(), "k", load)
		assert.NoError(t, err)
		waiterDone <- v
	}()
	require.Eventually(t, func() bool { return rs[1].Stats().LeaseWaits > 0 }, 5*time.Second, time.Millisecond)
	cancel()
	assert.ErrorIs(t, <-holderDone, context.Canceled)
	select {
	case v := <-waiterDone:
		assert.Equal(t, "value", v)
	case <-time.After(3 * time.Second): // well under the 5 s lease: the hand-over is immediate
		t.Fatal("the waiting replica did not take over when the holder gave up")
	}
	assert.Equal(t, int32(2), calls.Load())
}

func TestDeadHolderIsCoveredByLeaseExpiry(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("dead")
	opts.LeaseTTL = 300 * time.Millisecond
	rs := replicas[string](t, srv, 3, opts)
	// A holder that took the lease and died: nobody will fill or release.
	r, err := rs[0].remote.GetOrLease(context.Background(), "k", "dead-holder")
	require.NoError(t, err)
	require.True(t, r.Leased)
	var calls atomic.Int32
	load := func(context.Context) (string, error) { calls.Add(1); return "value", nil }
	t0 := time.Now()
	lat := stampede(t, rs[1:], 10, "k", load)
	assert.Equal(t, int32(1), calls.Load(), "one waiter takes over")
	assert.GreaterOrEqual(t, time.Since(t0), 250*time.Millisecond, "nobody loads before the dead holder's lease ends")
	t.Logf("takeover after a dead holder: caller p50=%v max=%v", lat[len(lat)/2], lat[len(lat)-1])
}

func TestLoaderErrorDoesNotPoisonWaiters(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("poison")
	opts.LoadBackoff = 50 * time.Millisecond
	rs := replicas[string](t, srv, 2, opts)
	var calls atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	load := func(context.Context) (string, error) {
		if calls.Add(1) == 1 {
			close(started)
			<-release
			return "", errors.New("origin hiccup")
		}
		return "value", nil
	}
	holder := make(chan error)
	go func() {
		_, err := rs[0].GetOrLoad(context.Background(), "k", load)
		holder <- err
	}()
	<-started
	waiter := make(chan string)
	go func() {
		v, err := rs[1].GetOrLoad(context.Background(), "k", load)
		assert.NoError(t, err, "the waiter does not inherit the holder's error")
		waiter <- v
	}()
	require.Eventually(t, func() bool { return rs[1].Stats().LeaseWaits > 0 }, 5*time.Second, time.Millisecond)
	failedAt := time.Now()
	close(release)
	assert.ErrorContains(t, <-holder, "origin hiccup")
	assert.Equal(t, "value", <-waiter)
	assert.GreaterOrEqual(t, time.Since(failedAt), 40*time.Millisecond, "the origin is left alone for the back-off")
	assert.Equal(t, int32(2), calls.Load())
}

func TestReadThroughAndWriteThroughHooks(t *testing.T) {
	srv := redistest.Start(t)
	source := map[string]string{"a": "A"}
	var mu sync.Mutex
	opts := testOptions[string]("hooks")
	opts.Loader = func(ctx context.Context, key string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := source[key]
		if !ok {
			return "", ErrNotFound
		}
		return v, nil
	}
	sourceDown := false
	opts.Writer = func(ctx context.Context, key, v string) error {
		mu.Lock()
		defer mu.Unlock()
		if sourceDown {
			return errors.New("db unavailable")
		}
		source[key] = v
		return nil
	}
	c := newCache[string](t, srv, opts)
	ctx := context.Background()
	v, err := c.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, "A", v, "Get reads through the loader")
	_, err = c.Get(ctx, "nope")
	assert.ErrorIs(t, err, ErrNotFound)

	require.NoError(t, c.Set(ctx, "b", "B"))
	assert.Equal(t, "B", source["b"], "Set writes the source first")
	mu.Lock()
	sourceDown = true
	mu.Unlock()
	err = c.Set(ctx, "b", "B2")
	assert.ErrorIs(t, err, ErrWriter)
	v, err = c.Get(ctx, "b")
	require.NoError(t, err)
	assert.Equal(t, "B", v, "a failed source write leaves the cache alone")
}

func TestTagsReachEveryReplica(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 3, testOptions[string]("tags"))
	ctx := context.Background()
	require.NoError(t, rs[0].Set(ctx, "u1", "x", WithTags("team:7", "all")))
	require.NoError(t, rs[0].Set(ctx, "u2", "y", WithTags("team:7")))
	require.NoError(t, rs[0].Set(ctx, "u3", "z", WithTags("team:8")))
	for _, r := range rs {
		for _, k := range []string{"u1", "u2", "u3"} {
			_, err := r.Get(ctx, k)
			require.NoError(t, err)
		}
		r.local.Wait()
	}
	require.NoError(t, rs[1].InvalidateTags(ctx, "team:7"))
	for i, r := range rs {
		for _, k := range []string{"u1", "u2"} {
			require.Eventually(t, func() bool {
				_, err := r.Get(ctx, k)
				return errors.Is(err, ErrNotFound)
			}, 5*time.Second, time.Millisecond, "replica %d key %s", i, k)
		}
		v, err := r.Get(ctx, "u3")
		require.NoError(t, err)
		assert.Equal(t, "z", v, "other tags are untouched")
	}
	assert.ErrorIs(t, rs[0].Set(ctx, "k", "v", WithTags("")), ErrInvalidTag)
	many := make([]string, 33)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	assert.ErrorIs(t, rs[0].Set(ctx, "k", "v", WithTags(many...)), ErrInvalidTag)
}

// A value Redis still holds under an invalidated tag is a miss that loads
// at once, on a replica that never saw it, and on one that did; and the
// fill replaces it in Redis.
func TestInvalidatedTagValueIsReloaded(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, testOptions[string]("tagreload"))
	ctx := context.Background()
	require.NoError(t, rs[0].Set(ctx, "k", "old", WithTags("t")))
	require.NoError(t, rs[0].InvalidateTags(ctx, "t"))
	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "new", nil }
	for i, r := range rs {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := r.GetOrLoad(cctx, "k", load)
		cancel()
		require.NoError(t, err, "replica %d", i)
		assert.Equal(t, "new", v, "replica %d", i)
	}
	assert.Equal(t, int32(1), loads.Load(), "the first load filled Redis; the second replica read it")
}

func TestInvalidateAllReachesEveryReplica(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 3, testOptions[string]("all"))
	ctx := context.Background()
	for i := range 50 {
		require.NoError(t, rs[i%3].Set(ctx, fmt.Sprint("k", i), "old"))
	}
	for _, r := range rs {
		for i := range 50 {
			_, err := r.Get(ctx, fmt.Sprint("k", i))
			require.NoError(t, err)
		}
	}
	require.NoError(t, rs[2].InvalidateAll(ctx))
	for i, r := range rs {
		require.Eventually(t, func() bool {
			for k := range 50 {
				if _, err := r.Get(ctx, fmt.Sprint("k", k)); !errors.Is(err, ErrNotFound) {
					return false
				}
			}
			return true
		}, 5*time.Second, time.Millisecond, "replica %d", i)
	}
	// The namespace works as before, at the new generation, everywhere.
	require.NoError(t, rs[0].Set(ctx, "k1", "new"))
	require.Eventually(t, func() bool {
		v, err := rs[1].Get(ctx, "k1")
		return err == nil && v == "new"
	}, 5*time.Second, time.Millisecond)
	// A replica started afterwards picks the generation up.
	late := newCache[string](t, srv, testOptions[string]("all"))
	v, err := late.Get(ctx, "k1")
	require.NoError(t, err)
	assert.Equal(t, "new", v)
	_, err = late.Get(ctx, "k2")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestDoubleDelete(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("dd")
	opts.DoubleDeleteDelay = 100 * time.Millisecond
	rs := replicas[string](t, srv, 2, opts)
	ctx := context.Background()
	require.NoError(t, rs[0].Set(ctx, "k", "old"))
	require.NoError(t, rs[0].Delete(ctx, "k"))
	// A reader on a lagging database replica reloads the old value right
	// after the first delete.
	v, err := rs[1].GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "old (lagging replica)", nil })
	require.NoError(t, err)
	require.Equal(t, "old (lagging replica)", v)
	require.Eventually(t, func() bool { return rs[0].Stats().SecondDeletes == 1 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := rs[1].Get(ctx, "k")
		return errors.Is(err, ErrNotFound)
	}, 5*time.Second, time.Millisecond, "the second delete removed the lagging value everywhere")
}

// TestDoubleDeletesShareRounds: a burst of Deletes costs no goroutine
// each while their second deletes wait, shares a few second rounds, and
// every key is deleted again no sooner than the delay after its Delete.
func TestDoubleDeletesShareRounds(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("ddburst")
	const delay = 500 * time.Millisecond
	opts.DoubleDeleteDelay = delay
	c := newCache[string](t, srv, opts)
	ctx := context.Background()
	raw := redistest.Client(t, srv)
	before := runtime.NumGoroutine()
	const n = 1000
	for i := range n {
		k := fmt.Sprint("k", i)
		require.NoError(t, c.Delete(ctx, k))
		// A lagging reader's copy lands right after the Delete: one round
		// trip, well within the delay.
		require.NoError(t, raw.Do(ctx, raw.B().Set().Key(c.remote.ValueKey(k)).Value("lagging").Build()).Error())
	}
	grew := runtime.NumGoroutine() - before
	assert.Less(t, grew, 20, "%d Deletes waiting for their second delete hold %d more goroutines", n, grew)
	gone := func(i int) bool {
		n, err := raw.Do(ctx, raw.B().Exists().Key(c.remote.ValueKey(fmt.Sprint("k", i))).Build()).AsInt64()
		require.NoError(t, err)
		return n == 0
	}
	require.Eventually(t, func() bool { return gone(n - 1) }, 10*time.Second, time.Millisecond)
	for i := range n {
		assert.True(t, gone(i), "key %d deleted again", i)
	}
	// Every copy, planted after its Delete, is gone: no round came before
	// its keys' copies were planted.
	require.Eventually(t, func() bool { return c.Stats().SecondDeletes >= 2 }, 10*time.Second, time.Millisecond,
		"%d keys, 512 at most per round", n)
	assert.Less(t, c.Stats().SecondDeletes, uint64(n/10), "Deletes close in time share rounds")
}

func TestBatchesLoadEachKeyOncePerFleet(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 3, testOptions[string]("batch"))
	ctx := context.Background()
	var mu sync.Mutex
	loadedTimes := map[string]int{}
	var batchCalls atomic.Int32
	loadMany := func(ctx context.Context, keys []string) (map[string]string, error) {
		batchCalls.Add(1)
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		out := map[string]string{}
		for _, k := range keys {
			loadedTimes[k]++
			if k != "k-missing" {
				out[k] = "v:" + k
			}
		}
		return out, nil
	}
	require.NoError(t, rs[0].Set(ctx, "k0", "v:k0"))
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k-missing", "k1"}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() {
			got, err := r.GetOrLoadMany(ctx, keys, loadMany)
			assert.NoError(t, err)
			for _, k := range keys {
				if k == "k-missing" {
					assert.NotContains(t, got, k)
					continue
				}
				assert.Equal(t, "v:"+k, got[k], k)
			}
		})
	}
	wg.Wait()
	for k, n := range loadedTimes {
		assert.Equal(t, 1, n, "key %s loaded %d times across the fleet", k, n)
	}
	assert.NotContains(t, loadedTimes, "k0", "a key in Redis is not loaded")
	t.Logf("batch loader calls across 3 replicas: %d", batchCalls.Load())

	// GetMany: local first, then one MGET.
	got, err := rs[2].GetMany(ctx, []string{"k1", "k5", "k-missing", "nope"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "v:k1", "k5": "v:k5"}, got)
}
