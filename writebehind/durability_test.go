package writebehind

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// TestWriteBehindRefusesAnEvictingRedis: on allkeys-lru the queue could be
// evicted with acknowledged writes in it, so write-behind refuses, clearly
// and changing nothing, unless the user opts in; volatile-lru (the queue
// has no TTL, cache keys all do) and noeviction are fine.
func TestWriteBehindRefusesAnEvictingRedis(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	c := newCache[int](t, srv, cachetest.Options[int]("unsafe"))
	err := c.SetBehind(ctx, "k", 1)
	require.ErrorIs(t, err, tiered.ErrQueueUnsafe)
	assert.ErrorContains(t, err, "allkeys-lru")
	q, _, err := queueDepth(c, ctx)
	require.NoError(t, err)
	assert.Zero(t, q, "nothing was queued")
	_, err = c.Get(ctx, "k")
	assert.ErrorIs(t, err, tiered.ErrNotFound, "nothing was cached")
	f, err := newFlusher(c, fastFlusher(newFakeSource()))
	require.NoError(t, err)
	assert.ErrorIs(t, f.Run(ctx), ErrQueueUnsafe, "the flusher refuses at once")

	opts := cachetest.Options[int]("unsafe")
	opts.AllowQueueEviction = true
	allowed := newCache[int](t, srv, opts)
	require.NoError(t, allowed.SetBehind(ctx, "k", 1), "the user opted in")

	for _, policy := range []string{"volatile-lru", "noeviction"} {
		safe := redistest.Start(t, "--maxmemory", "64mb", "--maxmemory-policy", policy)
		require.NoError(t, newCache[int](t, safe, cachetest.Options[int]("safe")).SetBehind(ctx, "k", 1), policy)
	}
}

// TestSetBehindCallersDoNotQueueOnADurabilityCheck: the first SetBehind
// reads Redis's eviction policy; on a Redis that does not answer, that
// read lasts RemoteTimeout. The other callers wait for it only as long as
// their own ctx, not, one after another, for every check before theirs.
func TestSetBehindCallersDoNotQueueOnADurabilityCheck(t *testing.T) {
	srv := redistest.Start(t)
	opts := cachetest.Options[int]("checkwait")
	opts.RemoteTimeout = 20 * time.Second // the first check lasts until Resume
	c := newCache[int](t, srv, opts)
	require.NoError(t, srv.Pause())
	t.Cleanup(func() { srv.Resume() })
	first := make(chan error, 1)
	go func() { first <- c.SetBehind(context.Background(), "a", 1) }()
	queueCalls := func() remote.OpStats { return c.Stats().Remote.Ops[remote.OpQueue] }
	require.Eventually(t, func() bool { return queueCalls().Calls > 0 }, 5*time.Second, time.Millisecond, "the first check is under way")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.SetBehind(ctx, "b", 2)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, queueCalls().Timeouts, "the second caller left at its ctx's end, before the first check ended")
	require.NoError(t, srv.Resume())
	select {
	case err := <-first:
		assert.NoError(t, err, "the first caller's check and write, once Redis answers")
	case <-time.After(10 * time.Second):
		t.Fatal("the first SetBehind never returned")
	}
}

// TestWriteBehindUnderMemoryPressureLosesNothing: a full Redis
// (noeviction, 8 MB, filled by ballast) with the source of truth down for
// seconds while three replicas write behind. A write Redis cannot take is
// refused (not acknowledged); every acknowledged write reaches the source.
func TestWriteBehindUnderMemoryPressureLosesNothing(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
	admin := redistest.Client(t, srv)
	ballast := strings.Repeat("b", 64<<10)
	for i := 0; ; i++ { // fill Redis to its limit
		if admin.Do(ctx, admin.B().Set().Key(fmt.Sprint("ballast:", i)).Value(ballast).Build()).Error() != nil {
			break
		}
	}
	for i := range 12 { // and leave room for part of the storm only
		require.NoError(t, admin.Do(ctx, admin.B().Del().Key(fmt.Sprint("ballast:", i)).Build()).Error())
	}
	rs := replicas[int](t, srv, 3, cachetest.Options[int]("pressure"))
	src := newFakeSource()
	var sourceUp atomic.Bool
	src.setRefuse(func([]Write[int]) error {
		if !sourceUp.Load() {
			return errors.New("database unavailable")
		}
		return nil
	})
	f, err := newFlusher(rs[0], fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)

	var acked, refused atomic.Int64
	var mu sync.Mutex
	ackedKeys := map[string]int{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second) // the source stays down all along
	for w, r := range rs {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("w%d:%d", w, i)
				if err := r.SetBehind(ctx, key, i); err != nil {
					refused.Add(1)
					continue
				}
				acked.Add(1)
				mu.Lock()
				ackedKeys[key] = i
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sourceUp.Store(true)
	waitDrained(t, rs[0])
	lost := 0
	for k, v := range ackedKeys {
		if got, ok := src.get(k); !ok || got != v {
			lost++
		}
	}
	used := redistest.InfoField(t, admin, "memory", "used_memory")
	t.Logf("write-behind under memory pressure, source down 3 s: acknowledged=%d refused=%d lost=%d used_memory=%d", acked.Load(), refused.Load(), lost, used)
	assert.Positive(t, acked.Load())
	assert.Positive(t, refused.Load(), "Redis must really have been full")
	assert.Zero(t, lost, "every acknowledged write reached the source")
}

// TestLostQueueIsReported: with AllowQueueEviction, a queue Redis loses is
// detected by the flusher and counted, never reported as drained, and
// writes queued after the loss are still delivered.
func TestLostQueueIsReported(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	opts := cachetest.Options[int]("lostq")
	opts.AllowQueueEviction = true
	c := newCache[int](t, srv, opts)
	src := newFakeSource()
	var sourceUp atomic.Bool
	src.setRefuse(func([]Write[int]) error {
		if !sourceUp.Load() {
			return errors.New("database unavailable")
		}
		return nil
	})
	fo := fastFlusher(src)
	fo.AllowQueueEviction = true
	f, err := newFlusher(c, fo)
	require.NoError(t, err)
	runFlusher(t, f)
	for i := range 20 {
		require.NoError(t, c.SetBehind(ctx, fmt.Sprint("before", i), i))
	}
	require.Eventually(t, func() bool { return f.Stats().Retries > 0 }, 10*time.Second, time.Millisecond)
	admin := redistest.Client(t, srv)
	require.NoError(t, admin.Do(ctx, admin.B().Del().Key(remote.QueueKey(c.ns)).Build()).Error()) // as an eviction would
	require.Eventually(t, func() bool { return f.Stats().QueueLost == 1 }, 10*time.Second, time.Millisecond)
	require.NoError(t, c.SetBehind(ctx, "after", 1))
	sourceUp.Store(true)
	require.Eventually(t, func() bool { _, ok := src.get("after"); return ok }, 10*time.Second, time.Millisecond)
	_, ok := src.get("before0")
	assert.False(t, ok, "the lost writes are gone, and were said to be")
}

// TestLostQueueIsReportedByTheStandbyThatTakesOver: the flusher that read
// the queue is gone when Redis loses it (restarted empty), and a standby
// takes the lease: the standby, which had seen the queue's group while it
// stood by, reports the loss. (Only a flusher that had read the group
// itself did, so a takeover passed the loss off as a first start.)
func TestLostQueueIsReportedByTheStandbyThatTakesOver(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rs := replicas[int](t, srv, 2, cachetest.Options[int]("lostq2"))
	src := newFakeSource()
	src.setRefuse(func([]Write[int]) error { return errors.New("database unavailable") })
	a, err := newFlusher(rs[0], fastFlusher(src))
	require.NoError(t, err)
	stopA := runFlusher(t, a)
	require.Eventually(t, func() bool { return a.Stats().Leader }, 5*time.Second, time.Millisecond)
	b, err := newFlusher(rs[1], fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, b)
	for i := range 20 {
		require.NoError(t, rs[0].SetBehind(ctx, fmt.Sprint("before", i), i))
	}
	require.Eventually(t, func() bool { return a.Stats().Retries > 0 && b.queue.seen.Load() }, 10*time.Second, time.Millisecond,
		"A holds the writes; B, standing by, has seen the queue's group")
	stopA()
	require.NoError(t, srv.Restart(ctx)) // empty: the queue, its group and the lease are gone
	require.Eventually(t, func() bool { return b.Stats().QueueLost == 1 }, 10*time.Second, time.Millisecond)
	assert.True(t, b.Stats().Leader)
	src.setRefuse(nil)
	// The restart cut every connection: a first call on one may fail (EOF).
	require.Eventually(t, func() bool { return rs[0].SetBehind(ctx, "after", 1) == nil }, 10*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { _, ok := src.get("after"); return ok }, 10*time.Second, time.Millisecond, "writes queued after the loss are delivered")
}
