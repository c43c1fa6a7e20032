package writebehind

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// Write-behind needs a Redis that does not evict (noeviction), so the
// Redis it runs on refuses writes when it is full (-OOM): draining the
// queue is then what frees memory, and must go on.

// full makes srv refuse writes for want of memory (on), or not. It may be
// called off the test's goroutine (from a writer): it only reports.
func full(t *testing.T, srv *redisserver.Server, on bool) {
	t.Helper()
	limit := map[bool]string{true: "1", false: "0"}[on]
	_, err := srv.Command("CONFIG", "SET", "maxmemory", limit)
	assert.NoError(t, err)
}

// startFlusher runs a flusher of c's queue with o until the test ends.
func startFlusher(t *testing.T, c *replica[int], o Options[int]) *Flusher[int] {
	t.Helper()
	f, err := newFlusher(c, o)
	require.NoError(t, err)
	runFlusher(t, f)
	return f
}

// waitDepth waits until c's queue holds queued entries and its dead
// letters dead (any number when dead < 0).
func waitDepth(t *testing.T, c *replica[int], queued, dead int64, why string) {
	t.Helper()
	require.Eventually(t, func() bool {
		n, d, err := queueDepth(c, context.Background())
		return err == nil && n == queued && (dead < 0 || d == dead)
	}, 10*time.Second, 5*time.Millisecond, why)
}

// TestAFlusherTakesOverOnAFullRedis: a flusher that starts while Redis is
// full (after a crash or a deploy of the one that led) could not take the
// lease, whose SET Redis refused, and the queue was never drained.
func TestAFlusherTakesOverOnAFullRedis(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	rs := replicas[int](t, srv, 1, cachetest.Options[int]("oomlead"))
	ctx := context.Background()
	for i, k := range []string{"a", "b", "c"} {
		require.NoError(t, rs[0].SetBehind(ctx, k, i+1))
	}
	full(t, srv, true)
	t.Cleanup(func() { full(t, srv, false) })
	src := newFakeSource()
	startFlusher(t, rs[0], fastFlusher(src))
	waitDepth(t, rs[0], 0, -1, "the queue drains on a full Redis")
	for i, k := range []string{"a", "b", "c"} {
		v, _ := src.get(k)
		assert.Equal(t, i+1, v, k)
	}
}

// TestDeadLetteringOnAFullRedis: a write its writer refuses for good is
// moved to the dead letters on a full Redis too. Refused for memory, it
// stayed pending; the queue is read pending entries first, so with a
// batch of one nothing behind it was ever read again: the queue stopped
// for good. The writes behind it are delivered once each.
func TestDeadLetteringOnAFullRedis(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	rs := replicas[int](t, srv, 1, cachetest.Options[int]("oomdead"))
	ctx := context.Background()
	for i, k := range []string{"bad", "good1", "good2"} {
		require.NoError(t, rs[0].SetBehind(ctx, k, i+1))
	}
	t.Cleanup(func() { full(t, srv, false) })
	src := newFakeSource()
	var once sync.Once
	refuse := refuseKey("bad", errors.New("row rejected"))
	src.setRefuse(func(ws []Write[int]) error {
		once.Do(func() { full(t, srv, true) }) // full from the first delivery on
		return refuse(ws)
	})
	o := fastFlusher(src)
	o.MaxAttempts = 1
	o.BatchSize = 1
	f := startFlusher(t, rs[0], o)
	waitDepth(t, rs[0], 0, 1, "on a full Redis, the refused write is dead-lettered and the others flushed")
	src.mu.Lock()
	defer src.mu.Unlock()
	for _, k := range []string{"good1", "good2"} {
		assert.Len(t, src.delivered[k], 1, "%s delivered", k)
		for _, n := range src.delivered[k] {
			assert.Equal(t, 1, n, "%s delivered once", k)
		}
	}
	assert.EqualValues(t, 2, f.Stats().Written)
}

// TestWritesTakenAreAcknowledgedBeforeDeadLettering: when the move of a
// refused write to the dead letters fails (here the dead-letter key holds
// a value of another type), the writes the writer took in the same batch
// were not acknowledged, and every round delivered them again.
func TestWritesTakenAreAcknowledgedBeforeDeadLettering(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[int](t, srv, 1, cachetest.Options[int]("ackfirst"))
	admin := redistest.Client(t, srv)
	ctx := context.Background()
	require.NoError(t, admin.Do(ctx, admin.B().Set().Key("ackfirst:v1:wb:{ackfirst}:dead").Value("not a stream").Build()).Error())
	for i, k := range []string{"bad", "good1", "good2"} {
		require.NoError(t, rs[0].SetBehind(ctx, k, i+1))
	}
	src := newFakeSource()
	src.setRefuse(refuseKey("bad", errors.New("row rejected")))
	o := fastFlusher(src)
	o.MaxAttempts = 1
	startFlusher(t, rs[0], o)
	require.Eventually(t, func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return src.calls >= 4
	}, 10*time.Second, time.Millisecond, "rounds go on, the refused write with them")
	src.mu.Lock()
	defer src.mu.Unlock()
	for _, k := range []string{"good1", "good2"} {
		for v, n := range src.delivered[k] {
			assert.Equal(t, 1, n, "%s=%d delivered once", k, v)
		}
	}
}

// TestAFlusherStartedOnABusyRedisChecksItLater: a flusher started while
// Redis could not answer its check of the eviction policy (busy with a
// long script; loading, after a restart) was never judged, and flushed on
// an evicting Redis. It asks again, and refuses when Redis answers.
func TestAFlusherStartedOnABusyRedisChecksItLater(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "allkeys-lru")
	rs := replicas[int](t, srv, 1, cachetest.Options[int]("busycheck"))
	ctx := context.Background()
	release := redistest.HoldBusy(t, srv)
	f, err := newFlusher(rs[0], fastFlusher(newFakeSource()))
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- f.Run(rctx) }()
	require.Eventually(t, func() bool { return f.Stats().RedisErrors > 0 }, 10*time.Second, time.Millisecond, "its rounds meet the busy Redis")
	release()
	select {
	case err := <-ran:
		assert.ErrorIs(t, err, ErrQueueUnsafe)
	case <-time.After(10 * time.Second):
		t.Fatal("the flusher runs on, unchecked, on an evicting Redis")
	}
}

// TestAnUnreadableEntryOnAFullRedisHoldsNothingBack: an entry that cannot
// be read goes to the dead letters, on a full Redis too; the writes queued
// beside it are delivered and acknowledged.
func TestAnUnreadableEntryOnAFullRedisHoldsNothingBack(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	rs := replicas[int](t, srv, 1, cachetest.Options[int]("oomjunk"))
	admin := redistest.Client(t, srv)
	ctx := context.Background()
	require.NoError(t, admin.Do(ctx, admin.B().Xadd().Key("oomjunk:v1:wb:{oomjunk}").Id("*").FieldValue().FieldValue("k", "junk").FieldValue("e", "not an envelope").Build()).Error())
	require.NoError(t, rs[0].SetBehind(ctx, "good", 1))
	full(t, srv, true)
	t.Cleanup(func() { full(t, srv, false) })
	src := newFakeSource()
	o := fastFlusher(src)
	o.BatchSize = 1 // the unreadable entry first, alone in its batch
	startFlusher(t, rs[0], o)
	waitDepth(t, rs[0], 0, 1, "on a full Redis, the unreadable entry is dead-lettered and the good write flushed")
	v, _ := src.get("good")
	assert.Equal(t, 1, v)
}
