package bench

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLatenciesQuantilesWithinABucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b latencies
	var all []float64
	for i := range 20_000 {
		d := time.Duration(rng.ExpFloat64() * float64(200*time.Microsecond))
		all = append(all, float64(d))
		if i%2 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	require.Equal(t, uint64(len(all)), a.N)
	slices.Sort(all)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 1} {
		want := quantile(all, q)
		assert.InEpsilon(t, want, a.quantile(q), 1.0/64+1e-9, "q=%v", q)
	}
	pts := a.points(100, time.Microsecond)
	require.Len(t, pts, 100)
	assert.True(t, slices.IsSorted(pts))
	assert.InEpsilon(t, all[len(all)-1]/1e3, pts[99], 1.0/64+1e-9, "the last point is the maximum")
}

func TestLatencyBucketsAreContiguous(t *testing.T) {
	last := -1
	for ns := uint64(0); ns < 1<<20; ns++ {
		i := bucketOf(ns)
		require.True(t, i == last || i == last+1, "ns=%d jumps from bucket %d to %d", ns, last, i)
		last = i
		mid := bucketMid(i)
		require.LessOrEqual(t, math.Abs(mid-float64(ns))/max(float64(ns), 1), 1.0/64+1e-9, "ns=%d", ns)
	}
}

func TestStaleReadsAgainstTheWriteLog(t *testing.T) {
	const sec = int64(time.Second)
	log := mergeLogs(
		[]completion{{Key: 7, Version: 2, At: 20 * sec}}, // one replica's writes…
		[]completion{{Key: 7, Version: 1, At: 10 * sec}}, // …and another's: merged in order
	)
	grace := 100 * time.Millisecond
	for _, c := range []struct {
		r     readRecord
		stale bool
	}{
		{readRecord{Key: 7, Version: 0, Start: 5 * sec}, false},
		{readRecord{Key: 7, Version: 1, Start: 20*sec + int64(grace) - 1}, false}, // v2 completed, but within the grace
		{readRecord{Key: 7, Version: 1, Start: 20*sec + int64(grace) + 1}, true},
		{readRecord{Key: 7, Version: 3, Start: 40 * sec}, false}, // newer than any completed write: in flight
		{readRecord{Key: 7, Version: -1, Start: 5 * sec}, true},  // no version at all
		{readRecord{Key: 8, Version: 0, Start: 40 * sec}, false}, // another key
	} {
		n, _ := staleReads([]readRecord{c.r}, log, grace)
		assert.Equal(t, c.stale, n == 1, "%+v", c.r)
	}
	_, worst := staleReads([]readRecord{{Key: 7, Version: 1, Start: 25 * sec}}, log, grace)
	assert.Equal(t, 5*time.Second, worst, "how long after the newer write the stale read began")
}

// TestSourceIsSharedAndSerialisesWritersOfAKey maps one source twice, as
// two replica processes do.
func TestSourceIsSharedAndSerialisesWritersOfAKey(t *testing.T) {
	a, err := newSource()
	require.NoError(t, err)
	defer a.close(true)
	b, err := openSource(a.path)
	require.NoError(t, err)
	defer b.close(false)

	v, err := a.begin(1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), v)
	assert.Equal(t, int64(1), b.read(1), "the other mapping sees the version")
	second := make(chan int64)
	go func() {
		v, _ := b.begin(1)
		second <- v
	}()
	other, err := b.begin(2)
	require.NoError(t, err, "another key is not held up")
	assert.Equal(t, int64(1), other)
	select {
	case <-second:
		t.Fatal("a second writer of the key got in before the first ended")
	case <-time.After(20 * time.Millisecond):
	}
	a.end(1)
	assert.Equal(t, int64(2), <-second)
	assert.Equal(t, int64(2), a.read(1))
}

func TestPeerCallsBothWaysAndKeepsNotificationsInOrder(t *testing.T) {
	a, b := net.Pipe()
	pa, pb := newPeer(a, a), newPeer(b, b)
	type num struct{ N int }
	var mu sync.Mutex
	var got []int
	handle(pb, "double", func(x num) (num, error) { return num{2 * x.N}, nil })
	handle(pb, "fail", func(num) (num, error) { return num{}, errors.New("no luck") })
	handle(pb, "note", func(x num) (struct{}, error) {
		mu.Lock()
		got = append(got, x.N)
		mu.Unlock()
		return struct{}{}, nil
	})
	handle(pa, "ask-back", func(x num) (num, error) { return num{x.N + 1}, nil })
	handle(pb, "relay", func(x num) (num, error) { return call[num](context.Background(), pb, "ask-back", x) })
	block, blocked := make(chan struct{}), make(chan struct{})
	handle(pb, "block", func(num) (num, error) { close(blocked); <-block; return num{}, nil })
	go pa.serve(nil)
	go pb.serve(nil)

	r, err := call[num](context.Background(), pa, "double", num{21})
	require.NoError(t, err)
	assert.Equal(t, 42, r.N)
	_, err = call[num](context.Background(), pa, "fail", num{})
	assert.EqualError(t, err, "no luck")
	_, err = call[num](context.Background(), pa, "missing", num{})
	assert.ErrorContains(t, err, `no handler for "missing"`)
	r, err = call[num](context.Background(), pa, "relay", num{1})
	require.NoError(t, err, "a handler can call back the other side")
	assert.Equal(t, 2, r.N)

	for i := range 100 {
		require.NoError(t, notify(pa, "note", num{i}))
	}
	_, err = call[num](context.Background(), pa, "double", num{}) // after every note, on the same stream
	require.NoError(t, err)
	mu.Lock()
	assert.Equal(t, 100, len(got))
	assert.True(t, slices.IsSorted(got), "notifications are served in order")
	mu.Unlock()

	waiting := make(chan error)
	go func() {
		_, err := call[num](context.Background(), pa, "block", num{})
		waiting <- err
	}()
	<-blocked
	pb.close()
	assert.ErrorIs(t, <-waiting, errPeerClosed, "a call in flight fails when the connection ends")
	close(block)
}

func TestAxisScaleAndTicks(t *testing.T) {
	assert.False(t, spansDecade([]float64{0, 100, 900}), "zeros do not make a span")
	assert.True(t, spansDecade([]float64{139, 61470}))
	lin := newAxis([]float64{0, 4.2e6, 5.6e6}, "ops/s", false, 0, 340)
	assert.Equal(t, 0.0, lin.min)
	assert.GreaterOrEqual(t, lin.max, 5.6e6)
	log := newAxis([]float64{139, 61470}, "ns/op", true, 0, 340)
	assert.Equal(t, 100.0, log.min)
	assert.Equal(t, 1e5, log.max)
	assert.Equal(t, 0.0, log.px(0), "0 sits at the start of a log axis")

	for _, a := range []axis{lin, log, newAxis([]float64{0.3, 175000}, "µs", true, 0, 420)} {
		var labels []string
		lastRight := math.Inf(-1)
		for _, tk := range a.ticks() {
			if tk.label == "" {
				continue
			}
			labels = append(labels, tk.label)
			half := textWidth(tk.label) * tickPx / fontPx / 2
			assert.Greater(t, a.px(tk.v)-half, lastRight, "labels %v overlap", labels)
			lastRight = a.px(tk.v) + half
		}
		assert.GreaterOrEqual(t, len(labels), 3, "an axis has labels: %v", labels)
		for _, l := range labels {
			assert.NotContains(t, l, ".00", "no padded decimals")
			assert.NotContains(t, l, "e+", "no exponents")
		}
	}
}

func TestSILabels(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{5e6, "ops/s", "5 M"}, {250, "µs", "250 µs"}, {1500, "µs", "1.5 ms"}, {61470, "ns/op", "61.5 µs"},
		{0.441, "µs", "441 ns"}, {2.5, "s", "2.5 s"}, {0.85, "ratio", "0.85"}, {0, "ms", "0"}, {12_345, "reads", "12.3 k"},
	} {
		assert.Equal(t, c.want, siLabel(c.v, c.unit), "%v %s", c.v, c.unit)
	}
}

func TestBarChartGoesLogAndMarksTheSpread(t *testing.T) {
	m := Metric{Name: "serial", Unit: "ns/op", Better: "lower"}
	rows := []Row{
		{Candidate: "tiercache", Figures: []Figure{{Metric: m, Min: 130, Max: 160, Runs: 3}}},
		{Candidate: "go-redis-cache", Figures: []Figure{{Metric: m, Min: 220, Max: 240, Runs: 3}}},
		{Candidate: "rueidis", Figures: []Figure{{Metric: m, Min: 60000, Max: 90000, Runs: 3}}},
	}
	rows[0].Figures[0].Value, rows[1].Figures[0].Value, rows[2].Figures[0].Value = 154, 229, 61470
	svg, note := barChart(rows, m)
	s := string(svg)
	assert.Empty(t, note)
	assert.Contains(t, s, "log scale", "values 400× apart go on a log axis")
	assert.Contains(t, s, ">61.5 µs ⚠<", "the value label in SI, flagged: 60–90 k is 49 % of the median")
	assert.Contains(t, s, ">go-redis-cache<", "every name is its own label")
	assert.Equal(t, 3, strings.Count(s, "<rect x="), "a bar per candidate")

	zero := []Row{{Candidate: "a", Figures: []Figure{{Metric: Metric{Name: "errors", Unit: "ops", Better: "lower"}, Runs: 1}}}}
	svg, note = barChart(zero, zero[0].Figures[0].Metric)
	assert.Empty(t, svg)
	assert.Equal(t, "errors: 0 for every candidate in every run (no chart).", note)
}

func TestCDFChartMarksPercentilesOnALogAxis(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = 1 + float64(i*i)/10 // 1 µs … 100 ms
	}
	rows := []Row{{Candidate: "tiercache", Samples: map[string][]float64{"read latency (µs)": xs}},
		{Candidate: "naive", Samples: map[string][]float64{"read latency (µs)": xs[:500]}}}
	s := string(cdfChart(rows, "read latency (µs)"))
	assert.Contains(t, s, "log time axis")
	assert.Equal(t, 4, strings.Count(s, "<circle"), "p50 and p99 on each curve")
	assert.Contains(t, s, ">p99<")
	assert.Contains(t, s, "p50 25 ms · p99 97.8 ms", "the legend gives each curve's percentiles")
	assert.Contains(t, s, ">100 ms<", "time ticks carry their unit")
}
