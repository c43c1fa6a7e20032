package tiered

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// disconnectRun cuts replica B off Redis for a second while replica A
// rewrites some of the keys B holds, then measures what B serves from its
// local tier on the first read of every key after B is back.
type disconnectRun struct {
	transport Transport
	logSize   int
	keys      int
	rewrites  int // keys A rewrites during the cut
}

type disconnectResult struct {
	localHitRatio float64
	stale         int
	flushes       uint64
	repairs       uint64
	unrepaired    uint64
}

func runDisconnect(t *testing.T, srv *redisserver.Server, run disconnectRun) disconnectResult {
	t.Helper()
	ctx := context.Background()
	opts := testOptions(fmt.Sprintf("cut-%s-%d", run.transport, run.logSize))
	opts.Transport, opts.InvalidationLogSize = run.transport, run.logSize
	opts.PingInterval = 100 * time.Millisecond
	a := newCache[int](t, srv, opts)

	proxy := redistest.StartProxy(t, srv.Addr())
	opts.Client = redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{proxy.Addr()}, DisableCache: true})
	b, err := New[int](ctx, opts)
	require.NoError(t, err)
	t.Cleanup(b.Close)

	key := func(i int) string { return fmt.Sprint("k", i) }
	for i := range run.keys {
		require.NoError(t, a.Set(ctx, key(i), i))
	}
	for i := range run.keys {
		v, err := b.Get(ctx, key(i))
		require.NoError(t, err)
		require.Equal(t, i, v)
	}
	b.WaitLocal()

	before := b.Stats()
	proxy.Cut(time.Second)
	for i := range run.rewrites {
		require.NoError(t, a.Set(ctx, key(i), -i-1))
	}
	// B is back once it has resubscribed and dealt with the gap.
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Bus.Subscriptions > before.Bus.Subscriptions &&
			s.Bus.Repairs+s.Flushes["resubscribe"] > before.Bus.Repairs+before.Flushes["resubscribe"]
	}, 20*time.Second, time.Millisecond)

	after := b.Stats()
	var res disconnectResult
	for i := range run.keys {
		v, err := b.Get(ctx, key(i))
		require.NoError(t, err)
		want := i
		if i < run.rewrites {
			want = -i - 1
		}
		if v != want {
			res.stale++
		}
	}
	end := b.Stats()
	res.localHitRatio = 1 - float64(end.LocalMisses-after.LocalMisses)/float64(run.keys)
	res.flushes = end.Flushes["resubscribe"] - before.Flushes["resubscribe"]
	res.repairs = end.Bus.Repairs - before.Bus.Repairs
	res.unrepaired = end.Bus.Unrepaired - before.Bus.Unrepaired
	return res
}

// TestResumableSurvivesADisconnect compares the local tier right after a
// one-second disconnect: pub/sub flushes everything, resumable replays the
// writes it missed and keeps the rest.
func TestResumableSurvivesADisconnect(t *testing.T) {
	srv := redistest.Start(t)
	const keys, rewrites = 1000, 50
	pubsub := runDisconnect(t, srv, disconnectRun{transport: TransportPubSub, keys: keys, rewrites: rewrites})
	resumable := runDisconnect(t, srv, disconnectRun{transport: TransportResumable, keys: keys, rewrites: rewrites})
	t.Logf("first reads after a 1 s disconnect (%d keys, %d rewritten meanwhile): local-hit ratio pubsub %.3f, resumable %.3f",
		keys, rewrites, pubsub.localHitRatio, resumable.localHitRatio)

	assert.Zero(t, pubsub.stale)
	assert.Zero(t, resumable.stale, "the replay invalidated every rewritten key")
	assert.Positive(t, pubsub.flushes)
	assert.Zero(t, resumable.flushes, "the gap was repaired, not flushed")
	assert.Positive(t, resumable.repairs)
	assert.Equal(t, 0.0, pubsub.localHitRatio, "a flush empties the local tier")
	assert.InDelta(t, float64(keys-rewrites)/keys, resumable.localHitRatio, 0.001,
		"only the rewritten keys were dropped")
}

// TestResumableFlushesWhenTheLogWasTrimmed: a gap longer than the log
// cannot be repaired, and the replica flushes instead of serving stale.
func TestResumableFlushesWhenTheLogWasTrimmed(t *testing.T) {
	srv := redistest.Start(t)
	// Redis trims a capped stream by whole nodes of 100 entries: 500
	// writes during the cut go well past a cap of 10.
	res := runDisconnect(t, srv, disconnectRun{transport: TransportResumable, logSize: 10, keys: 600, rewrites: 500})
	assert.Zero(t, res.stale)
	assert.Positive(t, res.unrepaired)
	assert.Positive(t, res.flushes)
}
