package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/ledger"
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
			opts := testOptions("conv-" + string(tr))
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
	for _, r := range rs[1:] {
		assert.GreaterOrEqual(t, r.Stats().InvalidationsReceived, uint64(rounds), "convergence came from invalidations")
	}
}

type ledgerRun struct {
	replicas, keys int
	minReads       int64
	minDuration    time.Duration
	maxDuration    time.Duration
	chaos          func(stop <-chan struct{}) // runs alongside the workload
	freshFor       time.Duration              // stale-while-revalidate, when set
	batchEvery     int                        // every n-th read is a GetOrLoadMany of 3 keys, when set
	transport      Transport
	waitReplicas   int
	// grace overrides the default grace (100 ms): on a Cluster an
	// invalidation crosses the cluster bus, one more hop on a loaded box.
	grace time.Duration
	// observe, when set, runs alongside the workload with the replicas.
	observe func(rs []*Cache[int64], stop <-chan struct{})
	// client, when set, opens each replica's client (a Sentinel client,
	// say) instead of a direct one to the server.
	client func(testing.TB) rueidis.Client
	// windowEnd, when set, is asked at the end of the run when the chaos's
	// window closed: stale reads that began before it are counted apart
	// (staleInWindow) rather than failing the run.
	windowEnd func() time.Time
}

type staleRead struct {
	start      time.Time
	key        string
	got, floor int64
	replica    int
}

type ledgerResult struct {
	reads, stale, localHits, writes, loads   int64
	resubscribeFlushes, staleHits, refreshes uint64
	repairs, replayed                        uint64
	staleInWindow                            int64
	lastWrite                                int64 // unix ns of the last completed write (atomic)
	worstLag                                 time.Duration
}

// grace is how old a completed write may be before a read that returns an
// older version counts as stale.
const grace = 100 * time.Millisecond

func runLedger(t *testing.T, srv *redisserver.Server, run ledgerRun) ledgerResult {
	grace := grace
	if run.grace > 0 {
		grace = run.grace
	}
	opts := testOptions(fmt.Sprintf("ledger%d", rand.IntN(1e6)))
	opts.FreshFor = run.freshFor
	opts.Transport = run.transport
	opts.WaitReplicas = run.waitReplicas
	var rs []*Cache[int64]
	if run.client == nil {
		rs = replicas[int64](t, srv, run.replicas, opts)
	} else {
		for range run.replicas {
			o := opts
			o.Client = run.client(t)
			c, err := New[int64](context.Background(), o)
			require.NoError(t, err)
			t.Cleanup(c.Close)
			rs = append(rs, c)
		}
	}
	src := ledger.New()
	var staleMu sync.Mutex
	var staleReads []staleRead // with windowEnd: judged at the end
	keyName := func(i int) string { return fmt.Sprint("item:", i) }
	var writeLocks = make([]sync.Mutex, run.keys)
	var res ledgerResult
	var staleSeen sync.Once

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Writers: half write-through (update the source, then Set), half
	// write-around (update the source, then Delete). A write is retried
	// until it succeeds, and completes only then.
	for w := range 2 {
		wg.Go(func() {
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(rand.IntN(1000)) * time.Microsecond):
				}
				ki := rand.IntN(run.keys)
				k := keyName(ki)
				r := rs[(w+i)%len(rs)]
				writeLocks[ki].Lock()
				v := src.Bump(k)
				// Once the source has moved, the write is retried until
				// it succeeds, stop or not: a write left half done is not
				// what the ledger measures.
				for done := false; !done; {
					var err error
					if i%2 == 0 {
						err = r.Set(ctx, k, v)
					} else {
						err = r.Delete(ctx, k)
					}
					if done = err == nil; !done {
						time.Sleep(time.Millisecond) // Redis is failing: retry, without spinning
					}
				}
				src.Completed(k, v)
				atomic.StoreInt64(&res.lastWrite, time.Now().UnixNano())
				writeLocks[ki].Unlock()
				atomic.AddInt64(&res.writes, 1)
			}
		})
	}
	// Readers: GetOrLoad with a loader that reads the source and then
	// takes 0–2 ms, on skewed keys.
	for ri, r := range rs {
		for g := range 2 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(ri), uint64(g)))
				zipf := rand.NewZipf(rng, 1.1, 1, uint64(run.keys-1))
				ctx := context.Background()
				for n := 1; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					if run.batchEvery > 0 && n%run.batchEvery == 0 {
						batchRead(t, r, src, &res, grace, []string{keyName(int(zipf.Uint64())), keyName(int(zipf.Uint64())), keyName(int(zipf.Uint64()))})
						continue
					}
					k := keyName(int(zipf.Uint64()))
					start := time.Now()
					floor := src.Floor(k, start.Add(-grace))
					v, err := r.GetOrLoad(ctx, k, func(context.Context) (int64, error) {
						atomic.AddInt64(&res.loads, 1)
						v := src.Read(k)
						time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
						return v, nil
					})
					atomic.AddInt64(&res.reads, 1)
					if err != nil {
						t.Errorf("GetOrLoad(%s): %v", k, err)
						return
					}
					if v < floor && run.windowEnd != nil {
						staleMu.Lock()
						staleReads = append(staleReads, staleRead{start: start, key: k, got: v, floor: floor, replica: ri})
						staleMu.Unlock()
					} else if v < floor {
						atomic.AddInt64(&res.stale, 1)
						staleSeen.Do(func() {
							t.Errorf("stale read of %s: got version %d, but version %d completed more than %v before the read began", k, v, floor, grace)
						})
					}
				}
			})
		}
	}
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		if run.chaos != nil {
			run.chaos(stop)
		}
	}()
	if run.observe != nil {
		wg.Go(func() { run.observe(rs, stop) })
	}
	begin := time.Now()
	for {
		el := time.Since(begin)
		if (el >= run.minDuration && atomic.LoadInt64(&res.reads) >= run.minReads) || el >= run.maxDuration {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the run's progress, not waiting for a result
	}
	close(stop)
	wg.Wait()
	<-chaosDone
	if run.windowEnd != nil {
		end := run.windowEnd()
		for _, s := range staleReads {
			if s.start.Before(end) {
				res.staleInWindow++
				continue
			}
			res.stale++
			staleSeen.Do(func() {
				t.Errorf("stale read of %s on replica %d, %v after the window: got version %d, but version %d completed more than %v before the read began",
					s.key, s.replica, s.start.Sub(end), s.got, s.floor, grace)
			})
		}
	}

	// Quiescence: every replica agrees with the source once the last
	// invalidations are delivered.
	ctx := context.Background()
	for i, r := range rs {
		for ki := range run.keys {
			k := keyName(ki)
			want := src.Read(k)
			if !assert.Eventually(t, func() bool {
				v, err := r.GetOrLoad(ctx, k, func(context.Context) (int64, error) { return src.Read(k), nil })
				return err == nil && v == want
			}, 5*time.Second, time.Millisecond, "replica %d key %s never agreed with the source (%d)", i, k, want) {
				v, err := r.GetOrLoad(ctx, k, func(context.Context) (int64, error) { return src.Read(k), nil })
				e, rerr := r.remote.Get(ctx, k)
				loc, inLocal := r.local.Get(k)
				t.Logf("%s: replica has %v (%v); redis %s (%v), written %v; local copy %v", k, v, err, e.Payload, rerr, time.Unix(0, e.WrittenAt), inLocal && loc.Value == v)
			}
		}
		st := r.Stats()
		res.localHits += int64(st.LocalHits)
		res.resubscribeFlushes += st.Flushes["resubscribe"]
		res.repairs += st.Bus.Repairs
		res.replayed += st.Bus.Replayed
		res.staleHits += st.StaleHits
		res.refreshes += st.Refreshes
		if q := st.Lag.Quantile(1); q > res.worstLag {
			res.worstLag = q
		}
	}
	return res
}

// batchRead is one GetOrLoadMany of the ledger, judged key by key.
func batchRead(t *testing.T, r *Cache[int64], src *ledger.Ledger, res *ledgerResult, grace time.Duration, keys []string) {
	start := time.Now()
	floors := make(map[string]int64, len(keys))
	for _, k := range keys {
		floors[k] = src.Floor(k, start.Add(-grace))
	}
	got, err := r.GetOrLoadMany(context.Background(), keys, func(ctx context.Context, ks []string) (map[string]int64, error) {
		atomic.AddInt64(&res.loads, 1)
		out := make(map[string]int64, len(ks))
		for _, k := range ks {
			out[k] = src.Read(k)
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		return out, nil
	})
	if err != nil {
		t.Errorf("GetOrLoadMany: %v", err)
		return
	}
	for k, floor := range floors {
		atomic.AddInt64(&res.reads, 1)
		if v, ok := got[k]; !ok || v < floor {
			atomic.AddInt64(&res.stale, 1)
			t.Errorf("batch read of %s: got %d (present %v), but version %d completed more than %v before", k, v, ok, floor, grace)
		}
	}
}

// TestStalenessLedger: 4 replicas, write-through and write-around writers,
// readers with a slow loader. Zero reads may return a version older than a
// write completed more than 100 ms before the read began.
func TestStalenessLedger(t *testing.T) {
	srv := redistest.Start(t)
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 2 * time.Second, maxDuration: 60 * time.Second})
	t.Logf("ledger: reads=%d stale=%d local-hits=%d writes=%d loads=%d lag-max≤%v", res.reads, res.stale, res.localHits, res.writes, res.loads, res.worstLag)
	assert.GreaterOrEqual(t, res.reads, int64(100_000))
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
	assert.GreaterOrEqual(t, res.reads, int64(100_000))
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
	assert.GreaterOrEqual(t, res.reads, int64(100_000))
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
	assert.GreaterOrEqual(t, res.reads, int64(100_000))
	assert.Zero(t, res.stale)
	assert.Positive(t, res.staleHits, "values must actually have been served stale")
	assert.Positive(t, res.refreshes, "background refreshes must actually have landed")
}
