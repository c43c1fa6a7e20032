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

// full makes srv refuse writes for want of memory (on), or not.
func full(t *testing.T, srv *redisserver.Server, on bool) {
	t.Helper()
	limit := map[bool]string{true: "1", false: "0"}[on]
	_, err := srv.Command("CONFIG", "SET", "maxmemory", limit)
	require.NoError(t, err)
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
	f, err := newFlusher(rs[0], fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)
	require.Eventually(t, func() bool {
		n, _, err := queueDepth(rs[0], ctx)
		return err == nil && n == 0
	}, 10*time.Second, 5*time.Millisecond, "the queue drains on a full Redis")
	for i, k := range []string{"a", "b", "c"} {
		v, _ := src.get(k)
		assert.Equal(t, i+1, v, k)
	}
}

// TestDeadLetteringOnAFullRedis: a write its writer refuses for good is
// moved to the dead letters; on a full Redis that move's XADD was refused,
// the round ended before the writes the writer had taken were
// acknowledged, and every round delivered the same batch again.
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
	f, err := newFlusher(rs[0], o)
	require.NoError(t, err)
	runFlusher(t, f)
	require.Eventually(t, func() bool {
		n, dead, err := queueDepth(rs[0], ctx)
		return err == nil && n == 0 && dead == 1
	}, 10*time.Second, 5*time.Millisecond, "the refused write is dead-lettered and the queue drains")
	for _, k := range []string{"good1", "good2"} {
		src.mu.Lock()
		assert.Len(t, src.delivered[k], 1, "%s delivered", k)
		for _, n := range src.delivered[k] {
			assert.Equal(t, 1, n, "%s delivered once", k)
		}
		src.mu.Unlock()
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
	f, err := newFlusher(rs[0], o)
	require.NoError(t, err)
	runFlusher(t, f)
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
