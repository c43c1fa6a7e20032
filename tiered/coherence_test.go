package tiered

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestConvergence: 4 replicas hold a key; after a Set or Delete on one,
// every other replica returns the new state. The delay from the write's
// return to each replica's first read of the new state is reported.
func TestConvergence(t *testing.T) {
	srv := redistest.Start(t)
	for _, tr := range []Transport{TransportPubSub, TransportResumable, TransportTracking} {
		t.Run(string(tr), func(t *testing.T) {
			opts := testOptions[int]("conv-" + string(tr))
			opts.Transport = tr
			testConvergence(t, replicas[int](t, srv, 4, opts), tr)
		})
	}
}

func testConvergence(t *testing.T, rs []*Cache[int], tr Transport) {
	ctx := context.Background()
	const rounds = 200
	var delays []time.Duration
	for round := 1; round <= rounds; round++ {
		// Every replica holds the current state locally.
		want := round - 1
		for _, r := range rs {
			r.Get(ctx, "k")
			r.local.Wait()
		}
		del := round%4 == 0
		if del {
			require.NoError(t, rs[0].Delete(ctx, "k"))
			want = -1
		} else {
			require.NoError(t, rs[0].Set(ctx, "k", round))
			want = round
		}
		written := time.Now()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, r := range rs[1:] {
			wg.Go(func() {
				deadline := written.Add(5 * time.Second)
				for time.Now().Before(deadline) {
					v, err := r.Get(ctx, "k")
					if (del && errors.Is(err, ErrNotFound)) || (!del && err == nil && v == want) {
						mu.Lock()
						delays = append(delays, time.Since(written))
						mu.Unlock()
						return
					}
					// Poll at 20 µs, don't spin: with every P busy, Go checks
					// the network only from sysmon (every 10–20 ms), so
					// spinning pollers would measure the scheduler instead
					// of the invalidation.
					time.Sleep(20 * time.Microsecond)
				}
				t.Errorf("round %d: a replica did not converge within 5s", round)
			})
		}
		wg.Wait()
	}
	slices.Sort(delays)
	q := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))] }
	t.Logf("%s convergence over %d reads: p50=%v p99=%v max=%v", tr, len(delays), q(0.5), q(0.99), delays[len(delays)-1])
	for i, r := range rs[1:] {
		lag := r.Stats().Lag
		t.Logf("replica %d invalidation lag (publish → applied): p50≤%v p99≤%v", i+1, lag.Quantile(0.5), lag.Quantile(0.99))
	}
	require.Len(t, delays, 3*rounds)
	// A replica that held no local copy when a round began (its fill fenced
	// by the previous round's invalidation still in flight) converges by
	// reading Redis, before that round's invalidation arrives: on a cluster
	// it crosses the cluster bus. So the last round's may still be on its
	// way here; every one must arrive.
	for i, r := range rs[1:] {
		require.Eventually(t, func() bool { return r.Stats().InvalidationsReceived >= uint64(rounds) }, 5*time.Second, time.Millisecond,
			"replica %d: convergence came from invalidations, one per round", i+1)
	}
}

// TestStalenessLedger: 4 replicas, write-through and write-around writers,
// readers with a slow loader. Zero reads may return a version older than a
// write completed more than 100 ms before the read began.
func TestStalenessLedger(t *testing.T) {
	srv := redistest.Start(t)
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 2 * time.Second, maxDuration: 60 * time.Second})
	t.Logf("ledger: reads=%d stale=%d local-hits=%d writes=%d loads=%d lag-max≤%v", res.reads, res.stale, res.localHits, res.writes, res.loads, res.worstLag)
	assertLedgerRan(t, res)
	assert.Zero(t, res.stale)
	assert.Positive(t, res.writes)
	assert.Positive(t, res.localHits)
}

// TestStalenessLedgerWithSubscriberKills is the ledger while every
// subscriber connection is killed every 200–400 ms (CLIENT KILL TYPE
// pubsub): each resubscribe bumps the epoch, so no replica keeps serving
// what it missed.
func TestStalenessLedgerWithSubscriberKills(t *testing.T) {
	srv := redistest.Start(t)
	kills, chaos := subscriberKills(200*time.Millisecond, srv)
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 3 * time.Second, maxDuration: 60 * time.Second, chaos: chaos})
	t.Logf("ledger with kills: reads=%d stale=%d local-hits=%d writes=%d loads=%d connections-killed=%d resubscribe-flushes=%d", res.reads, res.stale, res.localHits, res.writes, res.loads, kills.Load(), res.resubscribeFlushes)
	assertLedgerRan(t, res)
	assert.Zero(t, res.stale)
	assert.Positive(t, kills.Load(), "the chaos must actually cut subscriptions")
	assert.Positive(t, res.resubscribeFlushes, "every resubscribe flushes the local tier")
}

// TestStalenessLedgerResumableWithSubscriberKills is the same chaos with
// TransportResumable: resubscribes are repaired from the invalidation log,
// not flushed, and still no read is stale.
func TestStalenessLedgerResumableWithSubscriberKills(t *testing.T) {
	srv := redistest.Start(t)
	kills, chaos := subscriberKills(200*time.Millisecond, srv)
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 3 * time.Second, maxDuration: 60 * time.Second,
		chaos: chaos, transport: TransportResumable})
	t.Logf("resumable ledger with kills: reads=%d stale=%d local-hits=%d writes=%d connections-killed=%d repairs=%d replayed=%d resubscribe-flushes=%d",
		res.reads, res.stale, res.localHits, res.writes, kills.Load(), res.repairs, res.replayed, res.resubscribeFlushes)
	assertLedgerRan(t, res)
	assert.Zero(t, res.stale)
	assert.Positive(t, kills.Load(), "the chaos must actually cut subscriptions")
	assert.Positive(t, res.repairs, "resubscribes are repaired from the log")
	assert.Zero(t, res.resubscribeFlushes, "the log reaches back: no flush")
}

// subscriberKills is chaos that kills every subscriber connection of the
// servers every `every` to twice that (CLIENT KILL TYPE pubsub), counting
// the kills.
func subscriberKills(every time.Duration, srvs ...*redisserver.Server) (*atomic.Int64, func(stop <-chan struct{})) {
	var kills atomic.Int64
	return &kills, func(stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(every + rand.N(every)):
			}
			for _, srv := range srvs {
				if n, err := srv.KillClients("pubsub"); err == nil {
					kills.Add(int64(n))
				}
			}
		}
	}
}

// TestStalenessLedgerWithSWRAndBatches is the ledger with
// stale-while-revalidate on (values go stale after 20 ms and refresh in the
// background) and every tenth read a GetOrLoadMany: serving stale values by
// design must never mean serving one older than a completed write.
func TestStalenessLedgerWithSWRAndBatches(t *testing.T) {
	srv := redistest.Start(t)
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 3 * time.Second, maxDuration: 60 * time.Second,
		freshFor: 20 * time.Millisecond, batchEvery: 10})
	t.Logf("ledger with SWR and batches: reads=%d stale=%d local-hits=%d writes=%d loads=%d stale-served=%d refreshes=%d",
		res.reads, res.stale, res.localHits, res.writes, res.loads, res.staleHits, res.refreshes)
	assertLedgerRan(t, res)
	assert.Zero(t, res.stale)
	assert.Positive(t, res.staleHits, "values must actually have been served stale")
	assert.Positive(t, res.refreshes, "background refreshes must actually have landed")
}

// A peer's write stops this replica serving its copy as soon as the
// message is read, even while the invalidations before it are still being
// applied: the copy is killed on arrival (Tier.Kill), not behind the queue.
func TestCopyStopsBeingServedOnArrival(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	opts := Options[string]{Namespace: "arrival", LocalTTL: time.Hour, RemoteTTL: time.Hour, PingInterval: -1}
	writer := newCache(t, srv, opts)
	stuck, release := make(chan struct{}), make(chan struct{})
	opts.applied = func(m coherence.Message) {
		if slices.Contains(m.Keys, "other") {
			close(stuck)
			<-release // holds the bus's goroutine
		}
	}
	reader := newCache(t, srv, opts)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	require.NoError(t, writer.Set(ctx, "k", "v1"))
	require.Eventually(t, func() bool { return reader.Stats().InvalidationsReceived == 1 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		if v, err := reader.Get(ctx, "k"); err != nil || v != "v1" {
			return false
		}
		reader.local.Wait() // ristretto applies inserts through a buffer
		_, hit := reader.local.Get("k")
		return hit
	}, 5*time.Second, time.Millisecond, "the reader holds a copy")

	require.NoError(t, writer.Set(ctx, "other", "x"))
	<-stuck
	require.NoError(t, writer.Set(ctx, "k", "v2"))
	require.Eventually(t, func() bool { _, hit := reader.local.Get("k"); return !hit }, 5*time.Second, time.Millisecond, "killed on arrival")
	v, err := reader.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v2", v, "read from Redis")
	assert.EqualValues(t, 2, reader.Stats().InvalidationsReceived, "k's message still waits its turn")
	close(release)
	require.Eventually(t, func() bool { return reader.Stats().InvalidationsReceived == 3 }, 5*time.Second, time.Millisecond)
}
