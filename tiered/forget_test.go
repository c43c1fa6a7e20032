package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// Redis forgets: these tests run the cache against a Redis that evicts
// (maxmemory with allkeys-lru, the usual cache set-up, kept over its limit
// by a ballast writer), restarts empty, and loses keys the guarantees rest
// on, and count stale reads and waits.

// evictingRedis starts a Redis of 8 MB that evicts with allkeys-lru, and
// keeps it evicting: a ballast writer rewrites a ring of 10 MB of 64 KiB
// keys. evicted reports INFO's evicted_keys.
func evictingRedis(t *testing.T) (srv *redisserver.Server, evicted func() int64) {
	srv = redistest.Start(t, "--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru")
	c := redistest.Client(t, srv)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ballast := strings.Repeat("b", 64<<10)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.Do(ctx, c.B().Set().Key(fmt.Sprint("ballast:", i%160)).Value(ballast).Build())
			cancel()
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return srv, func() int64 { return redistest.InfoField(t, c, "stats", "evicted_keys") }
}

// TestLedgerUnderEviction: the staleness ledger with InvalidateAll every
// 300 ms and bulk changes invalidated by tag, on a Redis that evicts all
// the while; halfway, the generation key is deleted and a replica starts
// while it is gone, and later it is deleted again under the running fleet.
// No read may be stale, and every replica ends on one generation.
func TestLedgerUnderEviction(t *testing.T) {
	srv, evicted := evictingRedis(t)
	before := evicted()
	rc := redistest.Client(t, srv)
	var joined atomic.Bool
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 5 * time.Second, maxDuration: 60 * time.Second,
		tagGroups: 8, invalidateAllEvery: 300 * time.Millisecond,
		fleet: func(stop <-chan struct{}, f *ledgerFleet, join func()) {
			genKey := f.pick(0).remote.GenerationKey()
			for i, at := range []time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond} {
				select {
				case <-stop:
					return
				case <-time.After(at):
				}
				require.NoError(t, rc.Do(context.Background(), rc.B().Del().Key(genKey).Build()).Error())
				if i == 0 {
					join() // a replica starting while the generation key is gone
					joined.Store(true)
				}
			}
		},
		observe: nil,
	})
	n := evicted() - before
	t.Logf("ledger under eviction: reads=%d stale=%d local-hits=%d writes=%d loads=%d invalidate-all=%d tag-invalidations=%d evicted-keys=%d generations-lost-detected=%d generation-flushes=%d",
		res.reads, res.stale, res.localHits, res.writes, res.loads, res.invalidateAlls, res.tagInvalidations, n, res.lost, res.generationFlushes)
	assertLedgerRan(t, res)
	assert.Zero(t, res.stale)
	assert.True(t, joined.Load(), "a replica joined while the generation key was gone")
	assert.Positive(t, n, "Redis must really have evicted")
	assert.GreaterOrEqual(t, res.invalidateAlls, int64(6))
	assert.Positive(t, res.tagInvalidations)
	assert.Positive(t, res.lost, "a running replica found the generation key gone")
}

// TestStampedeUnderEviction: 4 replicas × 50 callers on one missing key,
// on a Redis that evicts, in rounds where the fill's wait marker or lease is
// lost while the load runs. Waiters are woken by the fill, or look again by
// themselves about one load time later: no caller waits past the load plus
// a second, and no key is loaded more than once per replica.
func TestStampedeUnderEviction(t *testing.T) {
	srv, evicted := evictingRedis(t)
	before := evicted()
	rs := replicas[string](t, srv, 4, testOptions[string]("stampede-evict"))
	rc := redistest.Client(t, srv)
	const loadTime = 50 * time.Millisecond
	// What each round's loads lose mid-load: nothing, the wait marker, or
	// the lease (held in the value key until the fill).
	for round, lose := range []string{"", "", ":wait", ":wait", "the lease", "the lease"} {
		key := fmt.Sprint("missing-", round)
		lost := map[string]string{"": "", ":wait": rs[0].remote.ValueKey(key) + ":wait", "the lease": rs[0].remote.ValueKey(key)}[lose]
		var calls atomic.Int32
		load := func(context.Context) (string, error) {
			calls.Add(1)
			time.Sleep(loadTime) // the origin
			if lost != "" {
				require.NoError(t, rc.Do(context.Background(), rc.B().Del().Key(lost).Build()).Error())
			}
			return "value", nil
		}
		lat := stampede(t, rs, 50, key, load)
		t.Logf("round %d (losing %q): loads %d, caller p50=%v p99=%v max=%v", round, lose, calls.Load(), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
		assert.LessOrEqual(t, lat[len(lat)-1], loadTime+time.Second, "round %d: a caller waited too long", round)
		assert.LessOrEqual(t, calls.Load(), int32(4), "round %d: loads", round)
		assert.Positive(t, calls.Load())
	}
	t.Logf("evicted keys meanwhile: %d", evicted()-before)
	assert.Positive(t, evicted()-before)
}

// TestEmptyRestartMidStorm: the ledger while Redis, two InvalidateAlls in,
// is restarted empty, and a fifth replica joins after the restart. The old
// replicas must not stay on their generation while the new one starts
// another: the fleet ends on one generation, newer than before, with no
// stale read.
func TestEmptyRestartMidStorm(t *testing.T) {
	srv := redistest.Start(t)
	var genBefore atomic.Int64
	var restarted atomic.Bool
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 4 * time.Second, maxDuration: 60 * time.Second,
		fleet: func(stop <-chan struct{}, f *ledgerFleet, join func()) {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			ctx := context.Background()
			for range 2 {
				retryUntilDone(func() error { return f.pick(0).InvalidateAll(ctx) })
			}
			genBefore.Store(f.pick(1).remote.Generation())
			require.NoError(t, srv.Restart(ctx))
			restarted.Store(true)
			time.Sleep(200 * time.Millisecond) // the new replica comes a little after the restart
			join()
		},
	})
	gens := map[int64]int{}
	for _, r := range res.fleet {
		gens[r.remote.Generation()]++
	}
	t.Logf("restart mid-storm: reads=%d stale=%d writes=%d loads=%d resubscribe-flushes=%d generation-flushes=%d generations-lost-detected=%d generations=%v (before %d)",
		res.reads, res.stale, res.writes, res.loads, res.resubscribeFlushes, res.generationFlushes, res.lost, gens, genBefore.Load())
	require.True(t, restarted.Load())
	assert.Zero(t, res.stale)
	assert.Len(t, res.fleet, 5)
	assert.Len(t, gens, 1, "one generation for the whole fleet")
	for g := range gens {
		assert.Greater(t, g, genBefore.Load(), "a new generation, never the old one nor an older one")
	}
	assert.Positive(t, res.lost, "the lost generation was detected")
}

// A full Redis that evicts nothing (maxmemory with noeviction) refuses the
// read that would take a lease (a SET): the read falls back to a plain GET,
// so values Redis holds are still served from it, and a missing key is
// loaded and cached locally only (fail open), once per replica.
func TestFullNoEvictionRedisStillServes(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	rs := replicas[string](t, srv, 2, testOptions[string]("full"))
	require.NoError(t, rs[0].Set(ctx, "held", "in redis"))
	admin := redistest.Client(t, srv)
	// Over the limit from now on: every write is refused with OOM.
	require.NoError(t, admin.Do(ctx, admin.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "1").Build()).Error())
	require.ErrorContains(t, admin.Do(ctx, admin.B().Set().Key("probe").Value("x").Build()).Error(), "OOM")

	v, err := rs[1].GetOrLoad(ctx, "held", func(context.Context) (string, error) { return "", errors.New("not called") })
	require.NoError(t, err)
	assert.Equal(t, "in redis", v, "read with a plain GET when the lease's SET is refused")

	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "loaded", nil }
	v, err = rs[1].GetOrLoad(ctx, "absent", load)
	require.NoError(t, err)
	assert.Equal(t, "loaded", v, "fail open")
	rs[1].local.Wait()
	v, err = rs[1].GetOrLoad(ctx, "absent", load)
	require.NoError(t, err)
	assert.Equal(t, "loaded", v)
	assert.Equal(t, int32(1), loads.Load(), "cached locally")
	n, err := admin.Do(ctx, admin.B().Exists().Key(rs[1].remote.ValueKey("absent")).Build()).AsInt64()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing written to the full Redis")
}
