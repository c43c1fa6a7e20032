package warmup

import (
	"context"
	"fmt"
	"iter"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/tiered"
)

// emptyCache is a Cache whose Redis holds nothing: every key is loaded,
// and when each was is recorded. (A fake: these tests are of the preload's
// own pacing, not of Redis.)
type emptyCache struct {
	mu    sync.Mutex
	start time.Time
	loads []time.Duration
}

func (f *emptyCache) Namespace() string { return "ns" }
func (f *emptyCache) Keys(context.Context, string) iter.Seq2[string, error] {
	return func(func(string, error) bool) {}
}
func (f *emptyCache) GetMany(context.Context, []string) (map[string]string, error) {
	return map[string]string{}, nil
}
func (f *emptyCache) GetOrLoadMany(ctx context.Context, keys []string, load func(context.Context, []string) (map[string]string, error), _ ...tiered.CallOption) (map[string]string, error) {
	f.mu.Lock()
	for range keys {
		f.loads = append(f.loads, time.Since(f.start))
	}
	f.mu.Unlock()
	return load(ctx, keys)
}
func (f *emptyCache) Stats() tiered.Stats { return tiered.Stats{} }

func loadAll(_ context.Context, keys []string) (map[string]string, error) {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = "v"
	}
	return m, nil
}

// TestLoadRateHoldsFromTheStart: no more keys are loaded by any moment
// than LoadRate allows since the preload began. (The limiter's burst was
// max(BatchSize, LoadRate) and started full: with LoadRate 10 and batches
// of 100, 110 keys went in the first second.)
func TestLoadRateHoldsFromTheStart(t *testing.T) {
	const rate = 50
	fc := &emptyCache{start: time.Now()}
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	rep, _ := Preload[string](context.Background(), fc, Options[string]{
		TopN: -1, Keys: keys, BatchSize: 100, LoadRate: rate, Budget: time.Second, Load: loadAll,
	})
	fc.mu.Lock()
	defer fc.mu.Unlock()
	require.NotEmpty(t, fc.loads, "some keys were loaded within the budget")
	assert.Equal(t, len(fc.loads), rep.Loaded)
	for i, d := range fc.loads {
		assert.LessOrEqual(t, float64(i+1), rate*d.Seconds()+1, "%d keys loaded by %v: over %d a second", i+1, d, rate)
	}
	assert.True(t, rep.BudgetExceeded)
}

// TestKeySourceIsBoundedByTheBudget: a KeySource that hangs (a database
// query for the key list) held the warm-up, and readiness, past its
// budget for as long as it hung. It is now left behind at the budget.
func TestKeySourceIsBoundedByTheBudget(t *testing.T) {
	unblock := make(chan struct{})
	stopped := make(chan struct{})
	source := func(yield func(string) bool) {
		defer close(stopped)
		<-unblock
		for _, k := range []string{"k1", "k2"} {
			if !yield(k) {
				return
			}
		}
	}
	w := Start[string](context.Background(), &emptyCache{start: time.Now()}, Options[string]{TopN: -1, KeySource: source, Budget: 100 * time.Millisecond})
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		close(unblock)
		t.Fatal("readiness waited for a KeySource that hung past the budget")
	}
	rep, err, done := w.Report()
	require.True(t, done)
	assert.True(t, rep.BudgetExceeded)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	// The source, once it answers, is stopped at its first key.
	close(unblock)
	<-stopped
}

// TestUnlimitedLoadRate: an infinite LoadRate (x/time/rate's "no limit")
// loads each batch in one loader call; its conversion to a burst made
// steps of one key, one call each.
func TestUnlimitedLoadRate(t *testing.T) {
	fc := &emptyCache{start: time.Now()}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	calls := 0
	var mu sync.Mutex
	rep, err := Preload[string](context.Background(), fc, Options[string]{
		TopN: -1, Keys: keys, BatchSize: 500, LoadRate: math.Inf(1),
		Load: func(ctx context.Context, ks []string) (map[string]string, error) {
			mu.Lock()
			calls++
			mu.Unlock()
			return loadAll(ctx, ks)
		},
	})
	require.NoError(t, err)
	assert.Equal(t, 1000, rep.Loaded)
	assert.Equal(t, 2, calls, "one loader call per batch")
}

type panicsOnLoad struct{ emptyCache }

func (p *panicsOnLoad) GetOrLoadMany(context.Context, []string, func(context.Context, []string) (map[string]string, error), ...tiered.CallOption) (map[string]string, error) {
	panic("codec bug")
}

// TestPreloadPanicReachesTheCaller: a panic in a batch (a codec's, in
// GetOrLoadMany) ran on the preload's group goroutine, where no recover
// could reach it. Preload now panics on its caller's goroutine, and Start,
// whose goroutine nobody can recover, reports it as the warm-up's error.
func TestPreloadPanicReachesTheCaller(t *testing.T) {
	panicReachesTheCaller(t, Options[string]{TopN: -1, Keys: []string{"k1", "k2"}, BatchSize: 1, Load: loadAll, LoadRate: math.Inf(1)}, "codec bug")
}

// TestKeySourcePanicReachesTheCaller: a KeySource is read on a goroutine
// of its own (the budget cannot stop it); its panic there ended the
// process. It is raised on Preload's caller's goroutine, and Start reports
// it as the warm-up's error.
func TestKeySourcePanicReachesTheCaller(t *testing.T) {
	source := func(yield func(string) bool) {
		yield("k1")
		panic("key source bug")
	}
	panicReachesTheCaller(t, Options[string]{TopN: -1, KeySource: source, Load: loadAll, LoadRate: math.Inf(1)}, "key source bug")
}

// panicReachesTheCaller checks that a preload with opts panics with want
// on Preload's caller, and that Start reports it as the warm-up's error.
func panicReachesTheCaller(t *testing.T, opts Options[string], want string) {
	t.Helper()
	assert.PanicsWithValue(t, want, func() { Preload[string](context.Background(), &panicsOnLoad{}, opts) })
	w := Start[string](context.Background(), &panicsOnLoad{}, opts)
	select {
	case <-w.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the warm-up never ended")
	}
	_, err, done := w.Report()
	require.True(t, done)
	assert.ErrorContains(t, err, want)
}
