package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

func clusterReplicas[V any](t *testing.T, cl *redistest.Cluster, n int, opts Options[V]) []*Cache[V] {
	t.Helper()
	var rs []*Cache[V]
	for range n {
		o := opts
		o.Client = cl.Client(t)
		c, err := New[V](context.Background(), o)
		require.NoError(t, err)
		t.Cleanup(c.Close)
		rs = append(rs, c)
	}
	return rs
}

// TestCluster runs the foundation's convergence and staleness tests, and
// every feature, against a real three-master Redis Cluster.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	client := func(tb testing.TB) rueidis.Client { return cl.Client(tb) }
	// An invalidation crosses the cluster bus to reach subscribers of other
	// nodes. With three Redis nodes, four caches and other test packages
	// sharing two cores under -race, delivery was measured up to ~131 ms,
	// over the single-server grace of 100 ms.
	const clusterGrace = 300 * time.Millisecond

	t.Run("convergence", func(t *testing.T) {
		testConvergence(t, clusterReplicas[int](t, cl, 4, testOptions[int]("cconv")), TransportPubSub)
	})
	t.Run("staleness-ledger", func(t *testing.T) {
		res := runLedger(t, nil, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 2 * time.Second,
			maxDuration: 60 * time.Second, client: client, grace: clusterGrace})
		t.Logf("cluster ledger: reads=%d stale=%d local-hits=%d writes=%d loads=%d lag-max≤%v", res.reads, res.stale, res.localHits, res.writes, res.loads, res.worstLag)
		assert.Zero(t, res.stale)
		assertLedgerRan(t, res)
	})
	for _, tr := range []Transport{TransportPubSub, TransportResumable, TransportTracking} {
		t.Run("slot-migration-during-a-write-storm/"+string(tr), func(t *testing.T) {
			var moves atomic.Int64
			var reshardErr atomic.Pointer[error]
			chaos := func(stop <-chan struct{}) {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					// Move 300 slots around the ring, keys and all.
					if err := cl.Reshard(i%3, (i+1)%3, 300); err != nil {
						reshardErr.Store(&err)
						return
					}
					moves.Add(1)
				}
			}
			res := runLedger(t, nil, ledgerRun{replicas: 4, keys: 256, minReads: 100_000, minDuration: 5 * time.Second,
				maxDuration: 90 * time.Second, client: client, chaos: chaos, transport: tr, grace: clusterGrace})
			t.Logf("cluster %s ledger under slot migration: reads=%d stale=%d writes=%d reshards=%d (300 slots each) split slots healed=%d open slots fixed=%d lag-max≤%v",
				tr, res.reads, res.stale, res.writes, moves.Load(), cl.Heals.Load(), cl.Fixes.Load(), res.worstLag)
			if e := reshardErr.Load(); e != nil {
				t.Errorf("reshard: %v", *e)
			}
			assert.Zero(t, res.stale)
			assert.Positive(t, moves.Load())
		})
	}
	t.Run("tracking", func(t *testing.T) {
		// One tracking connection per node: every key's change is seen,
		// whichever node holds it.
		o := testOptions[int]("ctrack")
		o.Transport = TransportTracking
		rs := clusterReplicas[int](t, cl, 4, o)
		testConvergence(t, rs, TransportTracking)
		// A write by another program, on whichever node owns the key.
		other := cl.Client(t)
		ctx := context.Background()
		for i := range 20 {
			k := fmt.Sprint("foreign-", i)
			require.NoError(t, rs[0].Set(ctx, k, i))
			require.Eventually(t, func() bool { v, err := rs[1].Get(ctx, k); return err == nil && v == i }, 5*time.Second, time.Millisecond)
			require.NoError(t, other.Do(ctx, other.B().Del().Key(rs[1].remote.ValueKey(k)).Build()).Error())
			require.Eventually(t, func() bool { _, err := rs[1].Get(ctx, k); return errors.Is(err, ErrNotFound) }, 5*time.Second, time.Millisecond,
				"a DEL by another program reached replica 1's local tier")
		}
	})
	t.Run("features", func(t *testing.T) {
		testClusterFeatures(t, clusterReplicas[string](t, cl, 3, testOptions[string]("cfeat")))
	})
	t.Run("resumable", func(t *testing.T) {
		testClusterResumable(t, cl, clusterGrace)
	})
	t.Run("write-behind-queued-but-not-cached", func(t *testing.T) {
		// The key's node is paused, the queue's is not: the write is
		// queued, the cache step fails, and SetBehind says so.
		o := testOptions[int]("cwbq")
		o.RemoteTimeout = 200 * time.Millisecond
		c := clusterReplicas[int](t, cl, 1, o)[0]
		ctx := context.Background()
		queueNode := ownerOf(t, cl, c.remote.QueueKey())
		key := ""
		for i := 0; key == ""; i++ {
			if k := fmt.Sprint("k", i); ownerOf(t, cl, c.remote.ValueKey(k)) != queueNode {
				key = k
			}
		}
		keyNode := cl.Nodes[ownerOf(t, cl, c.remote.ValueKey(key))]
		require.NoError(t, keyNode.Pause())
		err := c.SetBehind(ctx, key, 1)
		require.NoError(t, keyNode.Resume())
		require.ErrorIs(t, err, ErrRemote)
		require.ErrorIs(t, err, remote.ErrQueuedOnly)
		q, err := c.opts.Client.Do(ctx, c.opts.Client.B().Xlen().Key(c.remote.QueueKey()).Build()).AsInt64()
		require.NoError(t, err)
		assert.EqualValues(t, 1, q, "the write is queued: the source will get it")
		// Writing again repairs the cache.
		require.Eventually(t, func() bool { return c.SetBehind(ctx, key, 1) == nil }, 10*time.Second, 10*time.Millisecond)
		v, err := c.Get(ctx, key)
		require.NoError(t, err)
		assert.Equal(t, 1, v)
	})
}

// testClusterFeatures: keys spread over every slot owner are deleted in
// one call, tags and InvalidateAll reach every replica, batches load each
// key once, and a stampede loads once.
func testClusterFeatures(t *testing.T, rs []*Cache[string]) {
	ctx := context.Background()
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprint("key-", i)
		require.NoError(t, rs[0].Set(ctx, keys[i], "v", WithTags("all")))
	}
	for _, k := range keys {
		v, err := rs[1].Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, "v", v)
	}
	require.NoError(t, rs[0].Delete(ctx, keys[:50]...), "a delete spanning many slots")
	for _, k := range keys[:50] {
		require.Eventually(t, func() bool { _, err := rs[1].Get(ctx, k); return err != nil }, 5*time.Second, time.Millisecond)
	}
	require.NoError(t, rs[0].InvalidateTags(ctx, "all"))
	for _, k := range keys[50:] {
		require.Eventually(t, func() bool { _, err := rs[1].Get(ctx, k); return err != nil }, 5*time.Second, time.Millisecond)
	}
	require.NoError(t, rs[0].Set(ctx, "x", "1"))
	_, err := rs[2].Get(ctx, "x")
	require.NoError(t, err)
	require.NoError(t, rs[0].InvalidateAll(ctx))
	// Every replica has moved to the new generation before the batch: a
	// fill by a replica that learns of the move halfway through its batch
	// is refused (its leases are in the generation it left).
	for _, r := range rs {
		require.Eventually(t, func() bool { _, err := r.Get(ctx, "x"); return err != nil }, 5*time.Second, time.Millisecond)
	}

	var loads atomic.Int64
	got, err := rs[1].GetOrLoadMany(ctx, keys, func(_ context.Context, ks []string) (map[string]string, error) {
		loads.Add(int64(len(ks)))
		out := map[string]string{}
		for _, k := range ks {
			out[k] = "loaded-" + k
		}
		return out, nil
	})
	require.NoError(t, err)
	assert.Len(t, got, len(keys))
	assert.EqualValues(t, len(keys), loads.Load(), "each key loaded once")
	many, err := rs[2].GetMany(ctx, keys)
	require.NoError(t, err)
	assert.Len(t, many, len(keys), "the batch fill reached Redis on every node")

	loads.Store(0)
	delays := stampede(t, rs, 50, fmt.Sprint("hot-", rand.IntN(1e6)), func(context.Context) (string, error) {
		loads.Add(1)
		time.Sleep(20 * time.Millisecond)
		return "value", nil
	})
	assert.Len(t, delays, 150)
	assert.EqualValues(t, 1, loads.Load(), "one load for the fleet")
}

// ownerOf is the index of the cluster node that serves redisKey: the others
// answer a direct GET with a MOVED redirect.
func ownerOf(t *testing.T, cl *redistest.Cluster, redisKey string) int {
	t.Helper()
	for i, n := range cl.Nodes {
		out, err := n.Command("GET", redisKey)
		if err == nil || !strings.Contains(out+err.Error(), "MOVED") {
			return i
		}
	}
	t.Fatalf("no node serves %s", redisKey)
	return -1
}

// testClusterResumable runs the resumable transport's tests on a Cluster,
// where the invalidation log is one stream per hash slot.
func testClusterResumable(t *testing.T, cl *redistest.Cluster, grace time.Duration) {
	client := func(tb testing.TB, dial dialFunc) rueidis.Client {
		return redistest.ClientWith(tb, rueidis.ClientOption{InitAddress: cl.Addrs(), DialCtxFn: dial, DisableCache: true})
	}
	t.Run("convergence", func(t *testing.T) {
		o := testOptions[int]("cres")
		o.Transport = TransportResumable
		testConvergence(t, clusterReplicas[int](t, cl, 4, o), TransportResumable)
	})
	t.Run("survives-a-disconnect", func(t *testing.T) {
		testSurvivesADisconnect(t, "Redis Cluster", client)
	})
	t.Run("flushes-when-a-slot-log-was-trimmed", func(t *testing.T) {
		// The keys share a hash slot ("{same" is their tag), so 500
		// rewrites go to one slot's log, well past its cap of 10.
		res := runDisconnect(t, disconnectRun{client: client, transport: TransportResumable, logSize: 10, keys: 600, rewrites: 500,
			key: func(i int) string { return fmt.Sprint("{same}k", i) }})
		assert.Zero(t, res.stale)
		assert.Positive(t, res.unrepaired)
		assert.Positive(t, res.flushes)
	})
	t.Run("ledger-with-subscriber-kills", func(t *testing.T) {
		// Every second or so: each gap costs a replay of all 16,384 slot
		// logs, during which the replica reads Redis instead of its local
		// tier.
		kills, chaos := subscriberKills(time.Second, cl.Nodes...)
		res := runLedger(t, nil, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 5 * time.Second, maxDuration: 60 * time.Second,
			client: func(tb testing.TB) rueidis.Client { return cl.Client(tb) }, chaos: chaos, transport: TransportResumable, grace: grace})
		t.Logf("cluster resumable ledger with kills: reads=%d stale=%d local-hits=%d writes=%d connections-killed=%d repairs=%d replayed=%d resubscribe-flushes=%d lag-max≤%v",
			res.reads, res.stale, res.localHits, res.writes, kills.Load(), res.repairs, res.replayed, res.resubscribeFlushes, res.worstLag)
		assert.Zero(t, res.stale)
		assertLedgerRan(t, res)
		assert.Positive(t, kills.Load(), "the chaos must actually cut subscriptions")
		assert.Positive(t, res.repairs, "resubscribes are repaired from the logs")
		assert.Zero(t, res.resubscribeFlushes, "the logs reach back: no flush")
	})
	t.Run("options", func(t *testing.T) {
		for name, set := range map[string]func(*Options[int]){
			"no pings":              func(o *Options[int]) { o.PingInterval = -1 },
			"age under 2s + ping":   func(o *Options[int]) { o.InvalidationLogAge, o.PingInterval = 5*time.Second, 3*time.Second },
			"age under the minimum": func(o *Options[int]) { o.InvalidationLogAge = time.Second },
		} {
			o := testOptions[int]("cresopt")
			o.Transport, o.Client = TransportResumable, cl.Client(t)
			set(&o)
			_, err := New[int](context.Background(), o)
			assert.ErrorIs(t, err, ErrInvalidOptions, name)
		}
	})
}
