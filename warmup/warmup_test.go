package warmup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

type replica struct {
	rc      rueidis.Client
	cache   *tiered.Cache[string]
	tracker *HotKeys
}

func newReplica(t testing.TB, srv *redisserver.Server, ns string, track bool) replica {
	t.Helper()
	rc := redistest.Client(t, srv)
	opts := tiered.Options[string]{Client: rc, Namespace: ns, LocalTTL: time.Minute, RemoteTTL: time.Hour, LocalMaxCost: 32 << 20}
	r := replica{rc: rc}
	if track {
		tr, err := NewHotKeys(HotKeysOptions{Client: rc, Namespace: ns, PushInterval: time.Hour})
		require.NoError(t, err)
		t.Cleanup(tr.Close)
		r.tracker = tr
		opts.Sampler, opts.SampleEvery = tr, 1
	}
	r.cache = cachetest.New(t, srv, opts)
	return r
}

func TestHotKeysComeOnTopAndAFreshReplicaServesThemLocally(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var fleet []replica
	for range 3 {
		fleet = append(fleet, newReplica(t, srv, "svc", true))
	}
	hot := make([]string, 100)
	for i := range hot {
		hot[i] = fmt.Sprint("hot-", i)
		require.NoError(t, fleet[0].cache.Set(ctx, hot[i], strings.Repeat("v", 100)))
	}
	for i := range 300 {
		require.NoError(t, fleet[0].cache.Set(ctx, fmt.Sprint("cold-", i), "v"))
	}
	// Each replica reads the hot keys often and the cold ones once.
	for _, r := range fleet {
		for range 20 {
			for _, k := range hot {
				_, err := r.cache.Get(ctx, k)
				require.NoError(t, err)
			}
		}
		for i := range 300 {
			r.cache.Get(ctx, fmt.Sprint("cold-", i))
		}
		require.NoError(t, r.tracker.Push(ctx))
	}
	top, err := Top(ctx, fleet[0].rc, "svc", 100)
	require.NoError(t, err)
	require.Len(t, top, 100)
	var got []string
	for _, s := range top {
		got = append(got, s.Key)
	}
	assert.ElementsMatch(t, hot, got, "the fleet's hot keys are the top 100")
	assert.True(t, slices.IsSortedFunc(top, func(a, b Scored) int { return int(b.Score - a.Score) }))

	// A fresh fourth replica preloads the hot set and serves its first
	// 1,000 reads of those keys from memory.
	fresh := newReplica(t, srv, "svc", false)
	var progress atomic.Int32
	rep, err := Preload(ctx, fresh.cache, Options[string]{Client: fresh.rc, TopN: 100, Progress: func(Report) { progress.Add(1) }})
	require.NoError(t, err)
	assert.Equal(t, 100, rep.Requested)
	assert.Equal(t, 100, rep.Found)
	assert.Positive(t, rep.Bytes)
	assert.Positive(t, progress.Load())
	before := fresh.cache.Stats().LocalMisses
	for range 1000 {
		_, err := fresh.cache.Get(ctx, hot[rand.IntN(len(hot))])
		require.NoError(t, err)
	}
	misses := fresh.cache.Stats().LocalMisses - before
	ratio := 1 - float64(misses)/1000
	t.Logf("fresh replica: preload %+v; local-hit ratio of its first 1,000 reads %.3f", rep, ratio)
	assert.GreaterOrEqual(t, ratio, 0.95)
}

// getManyOnly is a Cache without tiered's Warm: a wrapper, or a test's
// stand-in, that Preload reads through GetMany.
type getManyOnly struct{ Cache[string] }

func TestSourcesAndOriginLoads(t *testing.T) {
	srv := redistest.Start(t)
	for name, wrap := range map[string]func(*tiered.Cache[string]) Cache[string]{
		"warm":     func(c *tiered.Cache[string]) Cache[string] { return c },
		"get-many": func(c *tiered.Cache[string]) Cache[string] { return getManyOnly{c} },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			writer := newReplica(t, srv, name, false)
			for i := range 20 {
				require.NoError(t, writer.cache.Set(ctx, fmt.Sprint("user:", i), "u"))
			}
			require.NoError(t, writer.cache.Set(ctx, "order:1", "o"))
			fresh := newReplica(t, srv, name, false)
			var loaded []string
			rep, err := Preload(ctx, wrap(fresh.cache), Options[string]{
				Client:    fresh.rc,
				TopN:      -1,
				Keys:      []string{"order:1", "order:missing"},
				KeySource: slices.Values([]string{"user:0", "user:1", "user:0"}),
				ScanMatch: "user:*",
				Load: func(_ context.Context, keys []string) (map[string]string, error) {
					loaded = append(loaded, keys...)
					return map[string]string{"order:missing": "from origin"}, nil
				},
			})
			require.NoError(t, err)
			assert.Equal(t, 22, rep.Requested, "order:1, order:missing and user:0–19, once each")
			assert.Equal(t, 21, rep.Found)
			assert.Equal(t, 1, rep.Loaded)
			assert.Equal(t, []string{"order:missing"}, loaded, "only what Redis lacks goes to the origin")
			before := fresh.cache.Stats().LocalMisses
			for _, k := range []string{"order:1", "order:missing", "user:7"} {
				_, err := fresh.cache.Get(ctx, k)
				require.NoError(t, err)
			}
			assert.Equal(t, before, fresh.cache.Stats().LocalMisses, "every key preloaded is served locally")
			v, err := writer.cache.Get(ctx, "order:missing")
			require.NoError(t, err)
			assert.Equal(t, "from origin", v, "the load reached Redis too")
		})
	}
}

func TestBudgetIsHonouredWhenRedisIsPaused(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, "slow", false)
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	require.NoError(t, srv.Pause())
	defer srv.Resume()
	w := Start(context.Background(), r.cache, Options[string]{Client: r.rc, Keys: keys, Budget: 300 * time.Millisecond, BatchSize: 100})
	select {
	case <-w.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("the warm-up went on past its budget")
	}
	rep, err, done := w.Report()
	require.True(t, done)
	assert.True(t, rep.BudgetExceeded)
	assert.Less(t, rep.Elapsed, 2*time.Second)
	assert.Error(t, err, "the hot set could not be read")
	assert.Zero(t, rep.Found)
}

func TestReadinessHandlerFlips(t *testing.T) {
	srv := redistest.Start(t)
	r := newReplica(t, srv, "ready", false)
	release := make(chan struct{})
	w := Start(context.Background(), r.cache, Options[string]{
		TopN:      -1,
		KeySource: func(yield func(string) bool) { <-release; yield("k") },
	})
	probe := func() int {
		rec := httptest.NewRecorder()
		w.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
		return rec.Code
	}
	assert.Equal(t, http.StatusServiceUnavailable, probe())
	assert.False(t, w.IsReady())
	assert.Equal(t, Report{}, w.Progress(), "nothing done yet")
	close(release)
	<-w.Ready()
	assert.Equal(t, http.StatusOK, probe())
	assert.True(t, w.IsReady())
	assert.Equal(t, 1, w.Progress().Requested, "progress ends with the final report")
}

func TestHotKeysTrimsDecaysAndBounds(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	tr, err := NewHotKeys(HotKeysOptions{Client: rc, Namespace: "trim", PushInterval: time.Hour, MaxKeys: 10, MaxPending: 15, HalfLife: time.Hour})
	require.NoError(t, err)
	defer tr.Close()
	for i := range 20 {
		for range i + 1 {
			tr.Sample(fmt.Sprint("k", i))
		}
	}
	// k0–k14 fill MaxPending; every sample of k15–k19 is dropped.
	assert.Equal(t, uint64(16+17+18+19+20), tr.Stats().Dropped)
	require.NoError(t, tr.Push(ctx))
	top, err := Top(ctx, rc, "trim", 100)
	require.NoError(t, err)
	assert.Len(t, top, 10, "the hot set is trimmed to MaxKeys")
	// The first flush also took the half-life lock and halved the scores.
	assert.Equal(t, Scored{Key: "k14", Score: 7.5}, top[0])
	// Within the half-life, later flushes add without halving.
	tr.Sample("k14")
	require.NoError(t, tr.Push(ctx))
	top, _ = Top(ctx, rc, "trim", 1)
	assert.Equal(t, 8.5, top[0].Score)
}

// TestHotKeysOnCluster: Push read the hot set and its half-life marker in
// one script, and on a Redis Cluster they are in different slots: rueidis
// panicked on the pushing goroutine. The marker is now a command of its
// own; the scores still halve once per half-life.
func TestHotKeysOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	rc := cl.Client(t)
	ctx := context.Background()
	tr, err := NewHotKeys(HotKeysOptions{Client: rc, Namespace: "svc:users", PushInterval: time.Hour, HalfLife: time.Hour})
	require.NoError(t, err)
	defer tr.Close()
	tr.Sample("k1")
	tr.Sample("k1")
	require.NotPanics(t, func() { assert.NoError(t, tr.Push(ctx)) })
	top, err := Top(ctx, rc, "svc:users", 10)
	require.NoError(t, err)
	assert.Equal(t, []Scored{{Key: "k1", Score: 1}}, top, "pushed, and halved once")
	tr.Sample("k1")
	require.NoError(t, tr.Push(ctx))
	top, err = Top(ctx, rc, "svc:users", 10)
	require.NoError(t, err)
	assert.Equal(t, []Scored{{Key: "k1", Score: 2}}, top, "not halved again within the half-life")
}

// TestHotKeysRefusesAHalfLifeUnderAMillisecond: its marker's PX would be 0,
// which Redis refuses, and every push then failed before its trim: the
// hot set grew without bound.
func TestHotKeysRefusesAHalfLifeUnderAMillisecond(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	_, err := NewHotKeys(HotKeysOptions{Client: rc, Namespace: "ns", HalfLife: 500 * time.Microsecond})
	assert.ErrorIs(t, err, ErrInvalidOptions)
	tr, err := NewHotKeys(HotKeysOptions{Client: rc, Namespace: "ns", PushInterval: time.Hour, HalfLife: time.Millisecond})
	require.NoError(t, err, "a millisecond is enough")
	tr.Close()
}
