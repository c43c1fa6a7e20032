package tiered

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/ledger"
	"github.com/tiercache/tiercache/internal/redisserver"
)

// The staleness ledger: replicas read skewed keys through GetOrLoad with a
// loader that reads the source of truth (a ledger.Ledger), while writers
// change the source and then Set or Delete; a read is stale when it returns
// a version older than one whose write completed more than the grace before
// the read began.

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
	// tagGroups, when set, tags key i with "group:<i mod tagGroups>" (on
	// Set and on loads) and adds a writer that changes a whole group in the
	// source, then InvalidateTags it.
	tagGroups int
	// invalidateAllEvery, when set, calls InvalidateAll on a random
	// replica that often.
	invalidateAllEvery time.Duration
	// fleet, when set, runs alongside the workload with the replicas and
	// may start more (join), which read like the others until the end.
	fleet func(stop <-chan struct{}, f *ledgerFleet, join func())
}

type staleRead struct {
	start      time.Time
	key, tag   string
	got, floor int64
	replica    int
}

type ledgerResult struct {
	reads, stale, localHits, writes, loads   int64
	resubscribeFlushes, staleHits, refreshes uint64
	repairs, replayed                        uint64
	tagInvalidations, invalidateAlls         int64
	generationFlushes                        uint64
	lost                                     uint64 // generation losses the replicas detected
	staleInWindow                            int64
	inFlight                                 int64 // old values read while their invalidation was on its way
	lastWrite                                int64 // unix ns of the last completed write (atomic)
	worstLag                                 time.Duration
	fleet                                    []*Cache[int64] // every replica, joiners included
}

// grace is how old a completed write may be before a read that returns an
// older version counts as stale.
const grace = 100 * time.Millisecond

// ledgerFleet is the replicas of a run; joiners are added while it runs.
type ledgerFleet struct {
	mu   sync.Mutex
	rs   []*Cache[int64]
	logs []*deliveries // what each replica applied of its peers' invalidations
}

func (f *ledgerFleet) add(r *Cache[int64], d *deliveries) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rs = append(f.rs, r)
	f.logs = append(f.logs, d)
	return len(f.rs) - 1
}

func (f *ledgerFleet) deliveries(i int) *deliveries {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logs[i]
}

func (f *ledgerFleet) pick(i int) *Cache[int64] {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rs[i%len(f.rs)]
}

func (f *ledgerFleet) all() []*Cache[int64] {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Cache[int64](nil), f.rs...)
}

func runLedger(t *testing.T, srv *redisserver.Server, run ledgerRun) ledgerResult {
	grace := grace
	if run.grace > 0 {
		grace = run.grace
	}
	opts := testOptions[int64](fmt.Sprintf("ledger%d", rand.IntN(1e6)))
	opts.FreshFor = run.freshFor
	opts.Transport = run.transport
	opts.WaitReplicas = run.waitReplicas
	newReplica := func() (*Cache[int64], *deliveries) {
		d := &deliveries{}
		o := opts
		o.applied = d.record
		if run.client == nil {
			return newCache[int64](t, srv, o), d
		}
		o.Client = run.client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := New[int64](ctx, o)
		require.NoError(t, err)
		t.Cleanup(c.Close)
		return c, d
	}
	var fleet ledgerFleet
	for range run.replicas {
		fleet.add(newReplica())
	}
	src := ledger.New()
	var staleMu sync.Mutex
	var staleReads []staleRead // judged at the end
	suspect := func(s staleRead) {
		staleMu.Lock()
		staleReads = append(staleReads, s)
		staleMu.Unlock()
	}
	keyName := func(i int) string { return fmt.Sprint("item:", i) }
	tagOf := func(ki int) string {
		if run.tagGroups == 0 {
			return ""
		}
		return fmt.Sprint("group:", ki%run.tagGroups)
	}
	tagsOf := func(ki int) []CallOption {
		if run.tagGroups == 0 {
			return nil
		}
		return []CallOption{WithTags(tagOf(ki))}
	}
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
				r := fleet.pick(w + i)
				writeLocks[ki].Lock()
				v := src.Bump(k)
				// Once the source has moved, the write is retried until
				// it succeeds, stop or not: a write left half done is not
				// what the ledger measures.
				retryUntilDone(func() error {
					if i%2 == 0 {
						return r.Set(ctx, k, v, tagsOf(ki)...)
					}
					return r.Delete(ctx, k)
				})
				src.Completed(k, v)
				atomic.StoreInt64(&res.lastWrite, time.Now().UnixNano())
				writeLocks[ki].Unlock()
				atomic.AddInt64(&res.writes, 1)
			}
		})
	}
	if run.tagGroups > 0 {
		// A bulk change: every key of a group changes in the source, then
		// one InvalidateTags; it completes for every key at once.
		wg.Go(func() {
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
				}
				g := rand.IntN(run.tagGroups)
				var members []int
				for ki := g; ki < run.keys; ki += run.tagGroups {
					members = append(members, ki)
					writeLocks[ki].Lock() // ascending: no deadlock with single-key writers
				}
				versions := make([]int64, len(members))
				for j, ki := range members {
					versions[j] = src.Bump(keyName(ki))
				}
				retryUntilDone(func() error { return fleet.pick(i).InvalidateTags(ctx, fmt.Sprint("group:", g)) })
				for j, ki := range members {
					src.Completed(keyName(ki), versions[j])
					writeLocks[ki].Unlock()
				}
				atomic.AddInt64(&res.tagInvalidations, 1)
			}
		})
	}
	if run.invalidateAllEvery > 0 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(run.invalidateAllEvery):
				}
				retryUntilDone(func() error { return fleet.pick(i).InvalidateAll(context.Background()) })
				atomic.AddInt64(&res.invalidateAlls, 1)
			}
		})
	}
	// Readers: GetOrLoad with a loader that reads the source and then
	// takes 0–2 ms, on skewed keys.
	startReaders := func(ri int, r *Cache[int64]) {
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
						kis := []int{int(zipf.Uint64()), int(zipf.Uint64()), int(zipf.Uint64())}
						keys, tags := make([]string, len(kis)), map[string]string{}
						for i, ki := range kis {
							keys[i], tags[keyName(ki)] = keyName(ki), tagOf(ki)
						}
						for _, s := range batchRead(t, r, src, &res, grace, keys) {
							s.replica, s.tag = ri, tags[s.key]
							suspect(s)
						}
						continue
					}
					ki := int(zipf.Uint64())
					k := keyName(ki)
					start := time.Now()
					floor := src.Floor(k, start.Add(-grace))
					v, err := r.GetOrLoad(ctx, k, func(context.Context) (int64, error) {
						atomic.AddInt64(&res.loads, 1)
						v := src.Read(k)
						time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
						return v, nil
					}, tagsOf(ki)...)
					atomic.AddInt64(&res.reads, 1)
					if err != nil {
						t.Errorf("GetOrLoad(%s): %v", k, err)
						return
					}
					if v < floor {
						suspect(staleRead{start: start, key: k, tag: tagOf(ki), got: v, floor: floor, replica: ri})
					}
				}
			})
		}
	}
	for ri, r := range fleet.all() {
		startReaders(ri, r)
	}
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		if run.chaos != nil {
			run.chaos(stop)
		}
	}()
	if run.observe != nil {
		wg.Go(func() { run.observe(fleet.all(), stop) })
	}
	if run.fleet != nil {
		wg.Go(func() {
			run.fleet(stop, &fleet, func() {
				r, d := newReplica()
				startReaders(fleet.add(r, d), r)
			})
		})
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
	var windowEnd time.Time
	if run.windowEnd != nil {
		windowEnd = run.windowEnd()
	}
	for _, s := range staleReads {
		switch {
		case s.start.Before(windowEnd):
			res.staleInWindow++
		case fleet.deliveries(s.replica).inFlight(src, s.key, s.tag, s.got, s.floor, s.start, grace):
			res.inFlight++
		default:
			res.stale++
			staleSeen.Do(func() {
				t.Errorf("stale read of %s on replica %d: got version %d, but version %d completed more than %v before the read began, and its invalidation had reached the replica before that or never did",
					s.key, s.replica, s.got, s.floor, grace)
			})
		}
	}
	if res.inFlight > 0 {
		t.Logf("%d reads returned an older version while its invalidation, slower than the %v grace, was still on its way to the replica", res.inFlight, grace)
	}

	// Quiescence: every replica agrees with the source once the last
	// invalidations are delivered.
	ctx := context.Background()
	for i, r := range fleet.all() {
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
		res.resubscribeFlushes += st.LocalResets["resubscribe"]
		res.generationFlushes += st.LocalResets["generation"]
		res.lost += st.Remote.Lost.GenerationMissing + st.Remote.Lost.GenerationBehind + st.Remote.Lost.Restarts
		res.repairs += st.Bus.Repairs
		res.replayed += st.Bus.Replayed
		res.staleHits += st.StaleHits
		res.refreshes += st.Refreshes
		if q := st.Lag.Quantile(1); q > res.worstLag {
			res.worstLag = q
		}
	}
	res.fleet = fleet.all()
	return res
}
