package tiered

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	// client opens a client of the Redis under test, dialing through dial
	// when it is not nil.
	client    func(tb testing.TB, dial dialFunc) rueidis.Client
	transport Transport
	logSize   int
	keys      int
	rewrites  int // keys A rewrites during the cut
	// key names the i-th key; default "k<i>".
	key func(i int) string
}

type disconnectResult struct {
	localHitRatio float64
	// kept is how many keys the cut leaves alone (not rewritten) were in
	// B's local tier before it: what the first reads after it can find.
	kept       int
	stale      int
	flushes    uint64
	repairs    uint64
	unrepaired uint64
}

type dialFunc = func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error)

// singleClient opens clients of one Redis server.
func singleClient(srv *redisserver.Server) func(testing.TB, dialFunc) rueidis.Client {
	return func(tb testing.TB, dial dialFunc) rueidis.Client {
		return redistest.ClientWith(tb, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DialCtxFn: dial, DisableCache: true})
	}
}

func runDisconnect(t *testing.T, run disconnectRun) disconnectResult {
	t.Helper()
	ctx := context.Background()
	opts := testOptions[int](fmt.Sprintf("cut-%s-%d", run.transport, run.logSize))
	opts.Transport, opts.InvalidationLogSize = run.transport, run.logSize
	opts.PingInterval = 100 * time.Millisecond
	opts.Client = run.client(t, nil)
	a, err := New[int](ctx, opts)
	require.NoError(t, err)
	t.Cleanup(a.Close)

	partition := redistest.NewPartition()
	opts.Client = run.client(t, partition.Dial)
	b, err := New[int](ctx, opts)
	require.NoError(t, err)
	t.Cleanup(b.Close)

	key := run.key
	if key == nil {
		key = func(i int) string { return fmt.Sprint("k", i) }
	}
	received := b.Stats().InvalidationsReceived
	for i := range run.keys {
		require.NoError(t, a.Set(ctx, key(i), i))
	}
	// B reads once every one of these writes' invalidations has reached
	// it: one that came after B's read of its key (a Cluster's bus may
	// deliver it late) would drop the copy just read, and the local-hit
	// count after the cut would be off by that key.
	require.Eventually(t, func() bool {
		return b.Stats().InvalidationsReceived-received >= uint64(run.keys)
	}, 20*time.Second, time.Millisecond)
	for i := range run.keys {
		v, err := b.Get(ctx, key(i))
		require.NoError(t, err)
		require.Equal(t, i, v)
	}
	b.local.Wait()
	var res disconnectResult
	for i := run.rewrites; i < run.keys; i++ {
		if _, ok := b.local.Get(key(i)); ok {
			res.kept++
		}
	}

	before := b.Stats()
	partition.Cut(time.Second)
	for i := range run.rewrites {
		require.NoError(t, a.Set(ctx, key(i), -i-1))
	}
	// B is back once it has resubscribed and dealt with the gap: its local
	// tier, held meanwhile, is read again.
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Bus.Subscriptions > before.Bus.Subscriptions &&
			s.Bus.Repairs+s.LocalResets["resubscribe"] > before.Bus.Repairs+before.LocalResets["resubscribe"] &&
			!b.local.Held()
	}, 20*time.Second, time.Millisecond)

	after := b.Stats()
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
	res.flushes = end.LocalResets["resubscribe"] - before.LocalResets["resubscribe"]
	res.repairs = end.Bus.Repairs - before.Bus.Repairs
	res.unrepaired = end.Bus.Unrepaired - before.Bus.Unrepaired
	return res
}

// TestResumableSurvivesADisconnect compares the local tier right after a
// one-second disconnect: pub/sub flushes everything, resumable replays the
// writes it missed and keeps the rest.
func TestResumableSurvivesADisconnect(t *testing.T) {
	testSurvivesADisconnect(t, "single Redis", singleClient(redistest.Start(t)))
}

func testSurvivesADisconnect(t *testing.T, what string, client func(testing.TB, dialFunc) rueidis.Client) {
	const keys, rewrites = 1000, 50
	pubsub := runDisconnect(t, disconnectRun{client: client, transport: TransportPubSub, keys: keys, rewrites: rewrites})
	resumable := runDisconnect(t, disconnectRun{client: client, transport: TransportResumable, keys: keys, rewrites: rewrites})
	t.Logf("%s, first reads after a 1 s disconnect (%d keys, %d rewritten meanwhile): local-hit ratio pubsub %.3f, resumable %.3f",
		what, keys, rewrites, pubsub.localHitRatio, resumable.localHitRatio)

	assert.Zero(t, pubsub.stale)
	assert.Zero(t, resumable.stale, "the replay invalidated every rewritten key")
	assert.Positive(t, pubsub.flushes)
	assert.Zero(t, resumable.flushes, "the gap was repaired, not flushed")
	assert.Positive(t, resumable.repairs)
	assert.Equal(t, 0.0, pubsub.localHitRatio, "a flush empties the local tier")
	// Exactly the keys left alone that B held are served locally; B held
	// (nearly) all of them (a rare insert ristretto drops is not lost data).
	assert.InDelta(t, float64(resumable.kept)/keys, resumable.localHitRatio, 0.0005,
		"only the rewritten keys were dropped")
	assert.GreaterOrEqual(t, resumable.kept, (keys-rewrites)*99/100)
}

// TestResumableFlushesWhenTheLogWasTrimmed: a gap longer than the log
// cannot be repaired, and the replica flushes instead of serving stale.
func TestResumableFlushesWhenTheLogWasTrimmed(t *testing.T) {
	// Redis trims a capped stream by whole nodes of 100 entries: 500
	// writes during the cut go well past a cap of 10.
	res := runDisconnect(t, disconnectRun{client: singleClient(redistest.Start(t)), transport: TransportResumable, logSize: 10, keys: 600, rewrites: 500})
	assert.Zero(t, res.stale)
	assert.Positive(t, res.unrepaired)
	assert.Positive(t, res.flushes)
}
