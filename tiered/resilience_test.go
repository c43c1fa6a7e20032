package tiered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// outageOptions: a short remote timeout, a quick breaker.
func outageOptions[V any](ns string) Options[V] {
	o := testOptions[V](ns)
	o.RemoteTimeout = 100 * time.Millisecond
	o.BreakerThreshold = 3
	o.BreakerCooldown = 200 * time.Millisecond
	return o
}

// failOpen exercises a cache while Redis is out: local hits keep being
// served, GetOrLoad returns the loader's value, writes fail clearly and
// still drop the local copy. It returns GetOrLoad's latencies.
func failOpen(t *testing.T, c *Cache[string], warm []string) []time.Duration {
	ctx := context.Background()
	for _, k := range warm {
		v, err := c.Get(ctx, k)
		require.NoError(t, err, "a local hit is served while Redis is out")
		assert.Equal(t, "v:"+k, v)
	}
	got, err := c.GetMany(ctx, warm)
	require.NoError(t, err, "a batch of local hits too")
	assert.Len(t, got, len(warm))
	var lat []time.Duration
	for i := range 30 {
		t0 := time.Now()
		v, err := c.GetOrLoad(ctx, fmt.Sprint("cold-", i), func(context.Context) (string, error) { return "from origin", nil })
		lat = append(lat, time.Since(t0))
		require.NoError(t, err)
		assert.Equal(t, "from origin", v)
	}
	err = c.Set(ctx, warm[0], "new")
	require.ErrorIs(t, err, ErrRemote)
	_, ok := c.local.Get(warm[0])
	assert.False(t, ok, "a failed Set still drops the local copy")
	require.ErrorIs(t, c.Delete(ctx, warm[1]), ErrRemote)
	_, ok = c.local.Get(warm[1])
	assert.False(t, ok, "a failed Delete still drops the local copy")
	slices.Sort(lat)
	for _, d := range lat {
		assert.Less(t, d, time.Second, "nothing blocks for seconds")
	}
	return lat
}

func warmUp(t *testing.T, c *Cache[string], n int) []string {
	var keys []string
	for i := range n {
		k := fmt.Sprint("warm-", i)
		require.NoError(t, c.Set(context.Background(), k, "v:"+k))
		keys = append(keys, k)
	}
	c.local.Wait()
	return keys
}

// recover waits until the cache uses Redis again and returns how long it
// took from start.
func recovered(t *testing.T, c *Cache[string], start time.Time) time.Duration {
	ctx := context.Background()
	require.Eventually(t, func() bool { return c.Set(ctx, "probe", "ok") == nil }, 20*time.Second, 10*time.Millisecond,
		"the cache recovers by itself when Redis returns")
	took := time.Since(start)
	assert.Equal(t, "closed", c.Stats().Remote.BreakerState)
	return took
}

func TestFailOpenWhenRedisIsKilled(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, outageOptions[string]("killed"))
	keys := warmUp(t, c, 10)
	srv.Kill()
	lat := failOpen(t, c, keys)
	t.Logf("Redis killed: GetOrLoad fail-open latency p50=%v max=%v; breaker %s", lat[len(lat)/2], lat[len(lat)-1], c.Stats().Remote.BreakerState)
	assert.Positive(t, c.Stats().Remote.BreakerOpens)

	flushesBefore := c.Stats().LocalResets
	restarted := time.Now()
	require.NoError(t, srv.Restart(context.Background()))
	took := recovered(t, c, restarted)
	t.Logf("Redis restarted: cache recovered in %v", took)
	require.Eventually(t, func() bool {
		f := c.Stats().LocalResets
		return f["resubscribe"]+f["breaker"] > flushesBefore["resubscribe"]+flushesBefore["breaker"]
	}, 10*time.Second, 10*time.Millisecond, "the local tier is flushed: invalidations were missed")
	_, err := c.Get(context.Background(), keys[5])
	assert.ErrorIs(t, err, ErrNotFound, "after the flush the restarted (empty) Redis is the truth")
}

func TestFailOpenWhenRedisIsPaused(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, outageOptions[string]("paused"))
	keys := warmUp(t, c, 10)
	require.NoError(t, srv.Pause())
	lat := failOpen(t, c, keys)
	t.Logf("Redis paused: GetOrLoad fail-open latency p50=%v p90=%v max=%v (remote timeout 100ms)", lat[len(lat)/2], lat[len(lat)*9/10], lat[len(lat)-1])
	assert.Positive(t, c.Stats().Remote.Ops[0].Timeouts+c.Stats().Remote.Ops[1].Timeouts)

	resumed := time.Now()
	require.NoError(t, srv.Resume())
	took := recovered(t, c, resumed)
	t.Logf("Redis resumed: cache recovered in %v", took)
	assert.Positive(t, c.Stats().LocalResets["breaker"], "the local tier is flushed when the breaker closes")
}

func TestCloseWhileOperationsAreInFlight(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("inflight"))
	ctx := context.Background()
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprint(g, "-", i%20)
				_, err := c.GetOrLoad(ctx, k, func(context.Context) (string, error) {
					once.Do(func() { close(started) })
					time.Sleep(time.Millisecond)
					return "v", nil
				})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err == nil {
					_ = c.Set(ctx, k, "w")
				}
			}
		})
	}
	<-started
	time.Sleep(20 * time.Millisecond) // let operations pile up; not a correctness wait
	c.Close()
	wg.Wait() // every worker saw ErrClosed and returned: nothing hung
}

// TestCloseRacingDoubleDeletes: a Delete checks closed at its start and,
// with DoubleDeleteDelay, starts its second delete after its round trip.
// One that did so while Close waited for the background work made the
// WaitGroup panic ("reused before previous Wait has returned"), crashing
// the process. Deletes racing Close now either start their second delete
// before Close waits, or start none.
func TestCloseRacingDoubleDeletes(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[string]("doubledelete")
	o.DoubleDeleteDelay = time.Second
	ctx := context.Background()
	for range 10 {
		c := newCache[string](t, srv, o)
		var wg sync.WaitGroup
		var deletes atomic.Int64
		for range 8 {
			wg.Go(func() {
				for c.Delete(ctx, "k") == nil {
					deletes.Add(1)
				}
			})
		}
		require.Eventually(t, func() bool { return deletes.Load() > 8 }, 5*time.Second, time.Millisecond)
		c.Close()
		wg.Wait()
		assert.ErrorIs(t, c.Delete(ctx, "k"), ErrClosed)
	}
}

// TestCloseCancelsALoadInFlight: a GetOrLoad's load runs on a worker
// with a ctx of its own (LoadTimeout, an hour here). Close cancels it: the
// caller gets ErrClosed at once, not the load's value an hour later, and
// the load's lease is given back, not filled after Close.
func TestCloseCancelsALoadInFlight(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[string]("closeload")
	o.LoadTimeout = time.Hour
	c := newCache[string](t, srv, o)
	loading := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context) (string, error) {
			close(loading)
			<-ctx.Done()
			return "", ctx.Err()
		})
		got <- err
	}()
	waitClosed(t, loading, "the load started")
	c.Close()
	select {
	case err := <-got:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("GetOrLoad still waits for its load after Close")
	}
	n, err := srv.Command("EXISTS", c.remote.ValueKey("k"))
	require.NoError(t, err)
	assert.Equal(t, ":0", n, "the lease was given back, nothing filled")
}

// TestCloseWaitsForLoadsInFlight: Close returns only after the loads it
// cancelled have returned, so none of them fills after it (a loader that
// ignores its ctx holds Close, as documented).
func TestCloseWaitsForLoadsInFlight(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("closewait"))
	started, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	got := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context) (string, error) {
			close(started)
			<-ctx.Done()
			close(cancelled)
			<-release // a loader that takes its time to stop
			note("load returned")
			return "late", nil
		})
		got <- err
	}()
	waitClosed(t, started, "the load started")
	closed := make(chan struct{})
	go func() {
		c.Close()
		note("close returned")
		close(closed)
	}()
	waitClosed(t, cancelled, "Close cancelled the load")
	close(release)
	waitClosed(t, closed, "Close returned")
	mu.Lock()
	assert.Equal(t, []string{"load returned", "close returned"}, order)
	mu.Unlock()
	require.NoError(t, <-got, "a load that finished is served")
}

// TestCloseDuringAMissLeavesNoLease: a miss's Redis read took the key's
// fleet lease when Close began. Close waits for that read, the flight
// gives the lease back without loading and answers ErrClosed; nothing is
// left in Redis for other replicas to wait out.
func TestCloseDuringAMissLeavesNoLease(t *testing.T) {
	srv := redistest.Start(t)
	gate := &gateObserver{key: "k", reached: make(chan struct{}), release: make(chan struct{})}
	o := testOptions[string]("closemiss")
	o.Observer = gate
	c := newCache[string](t, srv, o)
	var loads atomic.Int32
	got := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) {
			loads.Add(1)
			return "v", nil
		})
		got <- err
	}()
	waitClosed(t, gate.reached, "the miss read Redis and took the lease")
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	s := c.loads.shard("k")
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closed
	}, 10*time.Second, time.Millisecond, "Close began")
	close(gate.release)
	waitClosed(t, closed, "Close returned")
	n, err := srv.Command("EXISTS", c.remote.ValueKey("k"))
	require.NoError(t, err)
	assert.Equal(t, ":0", n, "the lease was given back before Close returned")
	select {
	case err := <-got:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("the miss never returned")
	}
	assert.Zero(t, loads.Load(), "nothing loaded after Close")
}

// TestAMissCutShortLeavesNoLease: a miss's lease read sent to a Redis
// that does not answer ends with its caller's ctx, but Redis runs it when
// it resumes and the lease is taken all the same: the miss gives it back,
// or every replica would wait it out.
func TestAMissCutShortLeavesNoLease(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[string]("cutshort")
	o.RemoteTimeout = 5 * time.Second
	c := newCache[string](t, srv, o)
	require.NoError(t, srv.Pause())
	t.Cleanup(func() { srv.Resume() })
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
		got <- err
	}()
	released := func() uint64 { return c.Stats().Remote.Ops[remote.OpRelease].Calls }
	require.Eventually(t, func() bool { return released() > 0 }, 10*time.Second, time.Millisecond, "the lease is given back")
	require.NoError(t, srv.Resume())
	select {
	case err := <-got:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the miss never returned")
	}
	n, err := srv.Command("EXISTS", c.remote.ValueKey("k"))
	require.NoError(t, err)
	assert.Equal(t, ":0", n, "no lease left in Redis")
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting: %s", what)
	}
}

func TestAuthenticatedACLClient(t *testing.T) {
	srv := redistest.Start(t, "--user", "default", "off", "--user", "svc", "on", ">s3cret", "~*", "&*", "+@all")
	good := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "svc", Password: "s3cret", DisableCache: true})
	opts := testOptions[string]("secure")
	opts.Client = good
	ctx := context.Background()
	c, err := New[string](ctx, opts)
	require.NoError(t, err, "the cache works through the caller's authenticated client")
	defer c.Close()
	require.NoError(t, c.Set(ctx, "k", "v"))
	v, err := c.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	_, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "svc", Password: "wrong", DisableCache: true})
	require.Error(t, err, "wrong credentials fail when the client is made")
	assert.Contains(t, strings.ToUpper(err.Error()), "WRONGPASS")
}

func TestRepeatedErrorsAreLoggedRateLimited(t *testing.T) {
	srv := redistest.Start(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	opts := outageOptions[string]("logs")
	opts.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	opts.LogEvery = time.Hour
	c := newCache[string](t, srv, opts)
	srv.Kill()
	for range 50 {
		c.Set(context.Background(), "k", "v")
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	assert.Equal(t, 1, strings.Count(out, "op=set"), "one line for 50 failed Sets:\n%s", out)
	assert.Contains(t, out, "cache=logs")
	assert.NotContains(t, out, " k ", "raw keys are never logged")
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestLoaderPanicReachesEveryWaiter(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("panics"))
	release := make(chan struct{})
	load := func(context.Context) (string, error) {
		<-release
		panic("corrupt row")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := c.GetOrLoad(context.Background(), "k", load)
			errs <- err
		})
	}
	require.Eventually(t, func() bool { return c.Stats().Loads == 1 }, 5*time.Second, time.Millisecond)
	// Every caller waits on that load before it panics (the load
	// starts after one round trip, maybe before the last caller's read).
	waitCallers(t, &c.loads, "k", 20)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.ErrorIs(t, err, ErrLoaderPanic)
		var lp *LoaderPanic
		if assert.ErrorAs(t, err, &lp) {
			assert.Contains(t, string(lp.Stack), "TestLoaderPanicReachesEveryWaiter", "the stack is the loader's, where it panicked")
		}
	}
	assert.Equal(t, uint64(1), c.Stats().Loads, "one load, one panic, twenty callers told")
}

// TestARefusedFillGivesItsLeaseBack: a fill Redis refuses (here out of
// memory: maxmemory with noeviction, set while the load ran) writes
// nothing, and its lease stayed: every other replica waited it out. Redis
// answers, and a release needs no memory, so the lease is given back at
// once and the next replica loads without waiting.
func TestARefusedFillGivesItsLeaseBack(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[string]("oomfill")
	o.LeaseTTL = time.Minute // a wait for it would outlast the test
	rs := replicas[string](t, srv, 2, o)
	ctx := context.Background()
	full := func(on bool) { // also called from the loader: it only reports
		t.Helper()
		limit := map[bool]string{true: "1", false: "0"}[on]
		_, err := srv.Command("CONFIG", "SET", "maxmemory", limit)
		assert.NoError(t, err)
	}
	_, err := srv.Command("CONFIG", "SET", "maxmemory-policy", "noeviction")
	require.NoError(t, err)
	v, err := rs[0].GetOrLoad(ctx, "k", func(context.Context) (string, error) { full(true); return "a", nil })
	full(false)
	require.NoError(t, err)
	assert.Equal(t, "a", v, "fail open: the load is served")
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err = rs[1].GetOrLoad(lctx, "k", func(context.Context) (string, error) { return "b", nil })
	require.NoError(t, err)
	assert.Equal(t, "b", v, "loaded again: the refused fill wrote nothing")
	assert.Zero(t, rs[1].Stats().LeaseWaits, "and no lease was left to wait out")
}

// TestABatchWithARefusedKeyKeepsTheOthersLeases: one key of a
// GetOrLoadMany that Redis refuses (a value of another type in its place)
// failed the whole batch's lease read; the batch loaded without Redis and
// the leases it had taken for the other keys were neither filled nor
// given back, so every other replica waited them out. The refused key is
// now resolved alone, and the others are loaded and filled as usual.
func TestABatchWithARefusedKeyKeepsTheOthersLeases(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[string]("refusedbatch")
	o.LeaseTTL = time.Minute // a wait for it would outlast the test
	rs := replicas[string](t, srv, 2, o)
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	require.NoError(t, rc.Do(ctx, rc.B().Rpush().Key(rs[0].remote.ValueKey("b")).Element("a list").Build()).Error())
	loadMany := func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "loaded " + k
		}
		return m, nil
	}
	got, _ := rs[0].GetOrLoadMany(ctx, []string{"a", "b"}, loadMany)
	assert.Equal(t, "loaded a", got["a"])
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := rs[1].GetOrLoad(lctx, "a", func(context.Context) (string, error) { return "again", nil })
	require.NoError(t, err)
	assert.Equal(t, "loaded a", v, "the batch filled a")
	assert.Zero(t, rs[1].Stats().LeaseWaits)
}

// TestABatchOnAFullRedisLoadsOnce: a GetOrLoadMany on a Redis that
// refuses the whole lease read (full, under noeviction) loads the batch
// once without Redis, not each key alone.
func TestABatchOnAFullRedisLoadsOnce(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	c := newCache[string](t, srv, testOptions[string]("fullbatch"))
	ctx := context.Background()
	_, err := srv.Command("CONFIG", "SET", "maxmemory", "1")
	require.NoError(t, err)
	t.Cleanup(func() { srv.Command("CONFIG", "SET", "maxmemory", "0") })
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	var calls atomic.Int32
	got, err := c.GetOrLoadMany(ctx, keys, func(_ context.Context, ks []string) (map[string]string, error) {
		calls.Add(1)
		m := map[string]string{}
		for _, k := range ks {
			m[k] = "v" + k
		}
		return m, nil
	})
	require.NoError(t, err)
	assert.Len(t, got, len(keys), "fail open: every key loaded")
	assert.Equal(t, int32(1), calls.Load(), "one load for the batch")
}
