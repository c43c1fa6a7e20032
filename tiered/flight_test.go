package tiered

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// A worker that ran a fetch waits for the next instead of ending, so
// fetches one after another run on one goroutine; close lets it go.
func TestWorkersAreReused(t *testing.T) {
	var w workers
	for range 20 {
		done := make(chan struct{})
		w.run(func() { close(done) })
		<-done
		require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.idle) == 1 }, 5*time.Second, time.Millisecond)
	}
	assert.Equal(t, 1, workerGoroutines(), "one goroutine ran them all")
	w.close()
	require.Eventually(t, func() bool { return workerGoroutines() == 0 }, 5*time.Second, time.Millisecond, "closed: the parked worker ended")
	done := make(chan struct{})
	w.run(func() { close(done) }) // after close: runs, then ends
	<-done
	require.Eventually(t, func() bool { return workerGoroutines() == 0 }, 5*time.Second, time.Millisecond)
}

// workerGoroutines counts the goroutines in workers.loop.
func workerGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "tiered.(*workers).loop(")
}

// Concurrent fetches each get a goroutine; when they end, at most
// maxIdleWorkers stay parked.
func TestWorkersParkAtMostTheCap(t *testing.T) {
	var w workers
	defer w.close()
	release := make(chan struct{})
	var started sync.WaitGroup
	n := maxIdleWorkers + 20
	started.Add(n)
	for range n {
		w.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.idle) == maxIdleWorkers }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return workerGoroutines() == maxIdleWorkers }, 5*time.Second, time.Millisecond, "the others ended")
}

// inFlight counts the flights under way.
func (f *flights[V]) inFlight() int {
	n := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		n += len(s.calls)
		s.mu.Unlock()
	}
	return n
}

// waitCallers waits until key's flight has n callers.
func waitCallers[V any](t *testing.T, f *flights[V], key string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s := f.shard(key)
		s.mu.Lock()
		defer s.mu.Unlock()
		c := s.calls[key]
		return c != nil && c.callers == n
	}, 5*time.Second, time.Millisecond)
}

// Callers that come while the leader's first step runs wait for it: the
// step runs once, on the leader's goroutine, and answers them all.
func TestLeadAnswersEveryCallerFromOneFirstStep(t *testing.T) {
	var f flights[string]
	defer f.close()
	var firsts atomic.Int32
	release := make(chan struct{})
	var leaderGoroutine, firstGoroutine string
	first := func(context.Context) (string, func(context.Context) (string, error), error) {
		firsts.Add(1)
		firstGoroutine = goroutineID()
		<-release
		return "v", nil, nil
	}
	ctx := context.Background()
	results := make(chan string, 10)
	go func() {
		leaderGoroutine = goroutineID()
		v, _ := f.lead(ctx, "k", local.Fence{}, time.Second, first)
		results <- v
	}()
	waitCallers(t, &f, "k", 1)
	for range 9 {
		go func() { v, _ := f.lead(ctx, "k", local.Fence{}, time.Second, first); results <- v }()
	}
	waitCallers(t, &f, "k", 10)
	close(release)
	for range 10 {
		assert.Equal(t, "v", <-results)
	}
	assert.Equal(t, int32(1), firsts.Load())
	assert.Equal(t, leaderGoroutine, firstGoroutine, "no hand-off: the leader ran it")
}

// The rest of a fetch runs on a worker: the leader may leave (its ctx
// ended) while the others still get the answer.
func TestLeadHandsTheRestToAWorker(t *testing.T) {
	var f flights[string]
	defer f.close()
	release := make(chan struct{})
	first := func(context.Context) (string, func(context.Context) (string, error), error) {
		return "", func(ctx context.Context) (string, error) {
			<-release
			return "loaded", ctx.Err()
		}, nil
	}
	leaderCtx, leave := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() { _, err := f.lead(leaderCtx, "k", local.Fence{}, time.Minute, first); leaderErr <- err }()
	waitCallers(t, &f, "k", 1)
	other := make(chan string, 1)
	go func() {
		v, _ := f.lead(context.Background(), "k", local.Fence{}, time.Minute, first)
		other <- v
	}()
	waitCallers(t, &f, "k", 2)
	leave()
	require.ErrorIs(t, <-leaderErr, context.Canceled, "the leader left at once")
	close(release)
	assert.Equal(t, "loaded", <-other, "the fetch went on for the caller still there")
}

// A leader whose first step fails because its own ctx ended answers
// nobody else: the others start afresh, and one of them leads.
func TestLeadersOwnEndMakesTheOthersStartAfresh(t *testing.T) {
	var f flights[string]
	defer f.close()
	leaderCtx, leave := context.WithCancel(context.Background())
	inFirst := make(chan struct{})
	var firsts atomic.Int32
	first := func(ctx context.Context) (string, func(context.Context) (string, error), error) {
		if firsts.Add(1) == 1 {
			close(inFirst)
			<-ctx.Done()
			return "", nil, ctx.Err()
		}
		return "v", nil, nil
	}
	leaderErr := make(chan error, 1)
	go func() { _, err := f.lead(leaderCtx, "k", local.Fence{}, time.Minute, first); leaderErr <- err }()
	<-inFirst
	other := make(chan error, 1)
	var got string
	go func() {
		var err error
		got, err = f.lead(context.Background(), "k", local.Fence{}, time.Minute, first)
		other <- err
	}()
	waitCallers(t, &f, "k", 2)
	leave()
	require.ErrorIs(t, <-leaderErr, context.Canceled)
	require.NoError(t, <-other)
	assert.Equal(t, "v", got)
	assert.Equal(t, int32(2), firsts.Load())
}

func goroutineID() string {
	buf := make([]byte, 64)
	return strings.Fields(string(buf[:runtime.Stack(buf, false)]))[1]
}

// A first step that panics leaves no flight behind: the panic reaches the
// leader, the others start afresh, and later callers are not stuck.
func TestLeadersPanicLeavesNoFlightBehind(t *testing.T) {
	var f flights[string]
	defer f.close()
	inFirst, release := make(chan struct{}), make(chan struct{})
	var firsts atomic.Int32
	first := func(context.Context) (string, func(context.Context) (string, error), error) {
		if firsts.Add(1) == 1 {
			close(inFirst)
			<-release
			panic("codec")
		}
		return "v", nil, nil
	}
	leader := make(chan any, 1)
	go func() {
		defer func() { leader <- recover() }()
		f.lead(context.Background(), "k", local.Fence{}, time.Minute, first)
	}()
	<-inFirst
	other := make(chan string, 1)
	go func() {
		v, _ := f.lead(context.Background(), "k", local.Fence{}, time.Minute, first)
		other <- v
	}()
	waitCallers(t, &f, "k", 2)
	close(release)
	assert.Equal(t, "codec", <-leader, "the panic reaches the leader")
	select {
	case v := <-other:
		assert.Equal(t, "v", v, "the other started afresh")
	case <-time.After(5 * time.Second):
		t.Fatal("the other caller still waits on the leader's flight")
	}
	v, err := f.lead(context.Background(), "k", local.Fence{}, time.Minute, first)
	require.NoError(t, err)
	assert.Equal(t, "v", v)
}

// TestReadAfterInvalidationStartsItsOwnFlight: replica A is loading k (its
// loader read the source before a write); replica W writes k and A
// applies the invalidation. A read of k that starts on A after that must
// not join the load under way, which answers with the value from before
// the write: it reads Redis for itself.
func TestReadAfterInvalidationStartsItsOwnFlight(t *testing.T) {
	srv := redistest.Start(t)
	applied := make(chan struct{}, 8)
	oa := testOptions[string]("joinafter")
	oa.applied = func(m coherence.Message) {
		if m.Kind == coherence.KindKeys && slices.Contains(m.Keys, "k") {
			applied <- struct{}{}
		}
	}
	a := newCache[string](t, srv, oa)
	w := newCache[string](t, srv, testOptions[string]("joinafter"))
	ctx := context.Background()

	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan string, 1)
	go func() {
		v, _ := a.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			close(started)
			<-release
			return "v1", nil // read from the source before W's write
		})
		first <- v
	}()
	<-started
	require.NoError(t, w.Set(ctx, "k", "v2"))
	select {
	case <-applied:
	case <-time.After(5 * time.Second):
		t.Fatal("W's invalidation was not applied on A")
	}
	second := make(chan string, 1)
	go func() {
		v, _ := a.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v2", nil })
		second <- v
	}()
	// Joined to the first flight, the second read would wait for the first
	// load (held until release) and answer v1.
	select {
	case v := <-second:
		assert.Equal(t, "v2", v)
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatalf("a read begun after the invalidation waited for the load begun before it, and answered %q", <-second)
	}
	close(release)
	assert.Equal(t, "v1", <-first, "the first read keeps what it loaded")
}

// TestReadAfterOwnDeleteStartsItsOwnFlight: the same on one replica: a
// read after this replica's own Delete returned does not join the load
// begun before it.
func TestReadAfterOwnDeleteStartsItsOwnFlight(t *testing.T) {
	srv := redistest.Start(t)
	a := newCache[string](t, srv, testOptions[string]("joindelete"))
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go a.GetOrLoad(ctx, "k", func(context.Context) (string, error) { close(started); <-release; return "old", nil })
	<-started
	require.NoError(t, a.Delete(ctx, "k"))
	// Joined to the first flight, the read would wait for the held load.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := a.GetOrLoad(rctx, "k", func(context.Context) (string, error) { return "new", nil })
	require.NoError(t, err, "a read after the Delete waited for the load begun before it")
	assert.Equal(t, "new", v)
}

// TestWaiterWokenByItsOwnReplicasFill: a batch load on this replica holds
// k's lease and a GetOrLoad of k on the same replica waits for it. The
// fill's wake-up is published with this replica's origin, which its bus
// skips as an echo: the fill itself must wake the waiter, not its timer.
func TestWaiterWokenByItsOwnReplicasFill(t *testing.T) {
	srv := redistest.Start(t)
	rec := &recorder{}
	o := testOptions[string]("ownwake")
	o.Observer = rec
	c := newCache[string](t, srv, o)
	ctx := context.Background()

	loading, release := make(chan struct{}), make(chan struct{})
	batch := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoadMany(ctx, []string{"k"}, func(context.Context, []string) (map[string]string, error) {
			close(loading)
			<-release
			return map[string]string{"k": "v"}, nil
		})
		batch <- err
	}()
	<-loading
	got := make(chan string, 1)
	go func() {
		v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			t.Error("a second load: the batch holds the lease")
			return "x", nil
		})
		assert.NoError(t, err)
		got <- v
	}()
	require.Eventually(t, func() bool { return c.Stats().LeaseWaits > 0 }, 5*time.Second, time.Millisecond, "the read waits for the batch")
	close(release)
	require.NoError(t, <-batch)
	assert.Equal(t, "v", <-got)
	var waits []string
	for _, s := range rec.take() {
		if strings.HasPrefix(s, string(OpLeaseWait)) {
			waits = append(waits, s)
		}
	}
	require.NotEmpty(t, waits)
	assert.True(t, strings.HasSuffix(waits[0], " woken"), "the first wait ended %q, not by the fill", waits[0])
}

// TestCorruptKeyLeavesNoWaitSlot: a read of a corrupt value removes the
// wait slot its lease round registered (it was left, one per such key,
// until the key was invalidated or the tier flushed). Here another holder
// has the replacement's lease, so the value is loaded for this replica
// only, and no fill of this replica's wakes the slot away either.
func TestCorruptKeyLeavesNoWaitSlot(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[user](t, srv, testOptions[user]("corruptslot"))
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	for i := range 20 {
		k := fmt.Sprint("k", i)
		require.NoError(t, rc.Do(ctx, rc.B().Set().Key(c.remote.ValueKey(k)).Value("not an envelope").Build()).Error())
		leased, err := c.remote.Lease(ctx, k, remote.NewToken())
		require.NoError(t, err)
		require.True(t, leased)
		_, err = c.GetOrLoad(ctx, k, func(context.Context) (user, error) { return user{ID: i}, nil })
		require.NoError(t, err)
	}
	c.waiting.mu.Lock()
	defer c.waiting.mu.Unlock()
	assert.Empty(t, c.waiting.slots, "wait slots left behind by finished loads")
}

type panicsOnMarshal struct{ N int }

func (panicsOnMarshal) MarshalJSON() ([]byte, error) { panic("MarshalJSON bug") }

// TestWorkerPanicReachesTheCallers: a codec that panics while a load's
// fill runs on a flight's worker panicked there, where no recover of the
// caller's could reach it, and the process died. Each caller now panics
// with it on its own goroutine; the flight is not left behind.
func TestWorkerPanicReachesTheCallers(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[panicsOnMarshal](t, srv, testOptions[panicsOnMarshal]("workerpanic"))
	ctx := context.Background()
	load := func(context.Context) (panicsOnMarshal, error) { return panicsOnMarshal{1}, nil }
	assert.PanicsWithValue(t, "MarshalJSON bug", func() { c.GetOrLoad(ctx, "k", load) })
	assert.Zero(t, c.loads.inFlight(), "no flight left for later callers to wait on")
	assert.PanicsWithValue(t, "MarshalJSON bug", func() { c.GetOrLoad(ctx, "k", load) }, "a later call runs afresh")
}

// TestBatchWaiterPanicReachesTheCaller: GetOrLoadMany waits for the keys
// other replicas hold with a GetOrLoad each, on a group's goroutines; when
// such a key's lease ended and its load (here this replica's) panicked,
// the panic was raised on that goroutine, where no recover of the
// caller's could reach it. It now reaches the caller.
func TestBatchWaiterPanicReachesTheCaller(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[panicsOnMarshal]("batchpanic")
	o.LeaseTTL = 100 * time.Millisecond
	c := newCache[panicsOnMarshal](t, srv, o)
	ctx := context.Background()
	// Another replica's lease, which it will never fill.
	r, err := c.remote.GetOrLease(ctx, "k", remote.NewToken())
	require.NoError(t, err)
	require.True(t, r.Leased)
	loadMany := func(_ context.Context, keys []string) (map[string]panicsOnMarshal, error) {
		m := map[string]panicsOnMarshal{}
		for _, k := range keys {
			m[k] = panicsOnMarshal{1}
		}
		return m, nil
	}
	assert.PanicsWithValue(t, "MarshalJSON bug", func() { c.GetOrLoadMany(ctx, []string{"k"}, loadMany) })
}

// TestFlightNotJoinedPastATagInvalidation: a flight is joined while no tag
// has been invalidated since it began. A value it reads from Redis carries
// its writer's tags, whichever the call's are, so after any InvalidateTags
// a later caller reads for itself (a flight checked against its own call's
// tags only let a caller join a flight whose value carried an invalidated
// tag of its writer's).
func TestFlightNotJoinedPastATagInvalidation(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("tagjoin"))
	ctx := context.Background()
	flightCallers := func(key string) int {
		s := c.loads.shard(key)
		s.mu.Lock()
		defer s.mu.Unlock()
		if f := s.calls[key]; f != nil {
			return f.callers
		}
		return 0
	}
	for _, invalidate := range []string{"", "other"} {
		key := "k-" + invalidate
		started, release := make(chan struct{}), make(chan struct{})
		first := make(chan string, 1)
		go func() {
			v, _ := c.GetOrLoad(ctx, key, func(context.Context) (string, error) { close(started); <-release; return "v1", nil })
			first <- v
		}()
		<-started
		if invalidate != "" {
			require.NoError(t, c.InvalidateTags(ctx, invalidate))
		}
		waitsBefore := c.Stats().LeaseWaits
		second := make(chan string, 1)
		go func() {
			v, _ := c.GetOrLoad(ctx, key, func(context.Context) (string, error) { return "v2", nil })
			second <- v
		}()
		if invalidate == "" {
			require.Eventually(t, func() bool { return flightCallers(key) == 2 }, 5*time.Second, time.Millisecond, "no invalidation: the second call joins")
		} else {
			require.Eventually(t, func() bool { return c.Stats().LeaseWaits > waitsBefore }, 5*time.Second, time.Millisecond,
				"after a tag's invalidation: the second call has a flight of its own, waiting for the first's lease")
		}
		close(release)
		assert.Equal(t, "v1", <-first)
		assert.Equal(t, "v1", <-second, "the first's fill, untagged, is current")
	}
}

// gateObserver holds the first Redis read of a key on its way back, until
// released: a flight paused after its read.
type gateObserver struct {
	key     string
	passed  atomic.Bool
	reached chan struct{}
	release chan struct{}
}

func (g *gateObserver) Start(ctx context.Context, call Call) (context.Context, func(string, error)) {
	if call.Op != OpRedisRead || call.Key != g.key {
		return ctx, func(string, error) {}
	}
	return ctx, func(string, error) {
		if g.passed.CompareAndSwap(false, true) {
			close(g.reached)
			<-g.release
		}
	}
}

// TestJoinerPastTheWritersTagInvalidation: a flight reads a value whose
// writer tagged it "b"; "b" is invalidated; a later call, tagged
// otherwise, must not be answered with that value by joining the flight.
func TestJoinerPastTheWritersTagInvalidation(t *testing.T) {
	srv := redistest.Start(t)
	gate := &gateObserver{key: "k", reached: make(chan struct{}), release: make(chan struct{})}
	o := testOptions[string]("writertag")
	o.Observer = gate
	a := newCache[string](t, srv, o)
	b := newCache[string](t, srv, testOptions[string]("writertag"))
	ctx := context.Background()
	require.NoError(t, b.Set(ctx, "k", "v1", WithTags("b")))
	// B's invalidation of k reached A before A's flight begins (it would
	// keep the joiner out by itself).
	require.Eventually(t, func() bool { return a.Stats().InvalidationsReceived > 0 }, 5*time.Second, time.Millisecond)
	first := make(chan string, 1)
	go func() {
		v, _ := a.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "loaded1", nil }, WithTags("a"))
		first <- v
	}()
	<-gate.reached // the flight has read v1
	require.NoError(t, a.InvalidateTags(ctx, "b"))
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := a.GetOrLoad(rctx, "k", func(context.Context) (string, error) { return "loaded2", nil }, WithTags("a"))
	close(gate.release)
	require.NoError(t, err, "the read waited for the paused flight")
	assert.Equal(t, "loaded2", v, "a value of an invalidated tag")
	<-first
}

// TestBatchPanicGivesItsLeasesBack: a GetOrLoadMany whose codec panics
// after its batch load leaves no lease behind for others to wait out.
func TestBatchPanicGivesItsLeasesBack(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[panicsOnMarshal](t, srv, testOptions[panicsOnMarshal]("batchlease"))
	ctx := context.Background()
	loadMany := func(_ context.Context, keys []string) (map[string]panicsOnMarshal, error) {
		m := map[string]panicsOnMarshal{}
		for _, k := range keys {
			m[k] = panicsOnMarshal{1}
		}
		return m, nil
	}
	assert.PanicsWithValue(t, "MarshalJSON bug", func() { c.GetOrLoadMany(ctx, []string{"k1", "k2"}, loadMany) })
	for _, k := range []string{"k1", "k2"} {
		r, err := c.remote.GetOrLease(ctx, k, remote.NewToken())
		require.NoError(t, err)
		assert.True(t, r.Leased, "%s's lease was given back", k)
	}
}

// BenchmarkLeadParallel: flights of distinct keys whose first step answers
// at once, from 16 goroutines: what a flight costs a miss besides its
// Redis read.
func BenchmarkLeadParallel(b *testing.B) {
	var f flights[string]
	var n atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := "k" + strconv.FormatUint(n.Add(1), 10)
			v, err := f.lead(ctx, key, local.Fence{}, time.Second, func(context.Context) (string, func(context.Context) (string, error), error) {
				return key, nil, nil
			})
			if v != key || err != nil {
				b.Fatalf("lead(%q) = %q, %v", key, v, err)
			}
		}
	})
	if n := f.inFlight(); n != 0 {
		b.Fatalf("%d flights left", n)
	}
}
