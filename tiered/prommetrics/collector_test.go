package prommetrics

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/warmup"
	"github.com/tiercache/tiercache/writebehind"
)

// TestMain gives the examples a Redis at REDIS_URL and checks for leaked
// goroutines after everything ran.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.WithExampleRedis(m, "example:prommetrics:"))
}

func TestCollectorExposition(t *testing.T) {
	srv := redistest.Start(t)
	users := cachetest.New(t, srv, cachetest.Options[string]("svc:users"))
	orders := cachetest.New(t, srv, cachetest.Options[string]("svc:orders"))
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(NewCacheCollector("users", users)))
	require.NoError(t, reg.Register(NewCacheCollector("orders", orders)))
	assert.Error(t, reg.Register(NewCacheCollector("users", users)), "a second collector with the same name is refused")

	ctx := context.Background()
	_, err := users.GetOrLoad(ctx, "secret-key-42", func(context.Context) (string, error) { return "v", nil })
	require.NoError(t, err)
	_, err = users.GetOrLoad(ctx, "secret-key-43", func(context.Context) (string, error) { return "", errors.New("boom") })
	require.Error(t, err)
	require.NoError(t, users.Set(ctx, "secret-key-44", "v"))
	_, err = users.Get(ctx, "absent-key")
	require.ErrorIs(t, err, tiered.ErrNotFound)

	expected := `
# HELP tiercache_loads_total Loader calls (single and batch).
# TYPE tiercache_loads_total counter
tiercache_loads_total{cache="orders"} 0
tiercache_loads_total{cache="users"} 2
# HELP tiercache_load_errors_total Loader calls that failed or panicked (not-found excluded).
# TYPE tiercache_load_errors_total counter
tiercache_load_errors_total{cache="orders"} 0
tiercache_load_errors_total{cache="users"} 1
# HELP tiercache_invalidations_published_total Invalidation messages published with writes.
# TYPE tiercache_invalidations_published_total counter
tiercache_invalidations_published_total{cache="orders"} 0
tiercache_invalidations_published_total{cache="users"} 1
# HELP tiercache_breaker_state Redis circuit breaker: 0 closed, 1 half-open, 2 open.
# TYPE tiercache_breaker_state gauge
tiercache_breaker_state{cache="orders"} 0
tiercache_breaker_state{cache="users"} 0
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"tiercache_loads_total", "tiercache_load_errors_total", "tiercache_invalidations_published_total", "tiercache_breaker_state"))

	// Requests by tier and result: 3 local misses (two loads, one Get), one
	// remote miss per load plus the Get's.
	assert.Equal(t, 3.0, testutil.ToFloat64(metric(t, reg, "tiercache_requests_total", map[string]string{"cache": "users", "tier": "local", "result": "miss"})))
	assert.Equal(t, 3.0, testutil.ToFloat64(metric(t, reg, "tiercache_requests_total", map[string]string{"cache": "users", "tier": "remote", "result": "miss"})))

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)

	// No label value holds a raw key.
	families, err := reg.Gather()
	require.NoError(t, err)
	series := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			series++
			for _, l := range m.GetLabel() {
				assert.NotContains(t, l.GetValue(), "key", "metric %s label %s", f.GetName(), l.GetName())
			}
		}
	}
	t.Logf("%d metric families, %d series for 2 caches", len(families), series)
}

// metric picks one series out of a registry as a collector testutil can read.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue next
				}
			}
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "picked"})
			g.Set(m.GetCounter().GetValue() + m.GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no series %s %v", name, labels)
	return nil
}

// TestDashboardUsesOnlyExportedMetrics parses docs/grafana-dashboard.json
// and checks every metric its queries name is one the collector exports.
func TestDashboardUsesOnlyExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	require.NoError(t, err)
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	require.NoError(t, json.Unmarshal(raw, &dash), "the dashboard is valid JSON")
	require.NotEmpty(t, dash.Panels)

	exported := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	NewCacheCollector("x", nil).Describe(ch)
	close(ch)
	for d := range ch {
		name := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]
		exported[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			exported[name+suffix] = true
		}
	}
	used := regexp.MustCompile(`tiercache_[a-z_]+`)
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			names := used.FindAllString(tg.Expr, -1)
			require.NotEmpty(t, names, "panel %q queries no tiercache metric", p.Title)
			for _, n := range names {
				assert.True(t, exported[n], "panel %q uses %s, which the collector does not export", p.Title, n)
			}
		}
	}
}

func TestWarmupProgress(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	w := &fakeWarmup{report: warmup.Report{Requested: 100, Found: 30, Loaded: 10}}
	require.NoError(t, reg.Register(NewWarmupCollector("users", w)))
	expected := `
# HELP tiercache_warmup_keys Warm-up keys requested and done so far.
# TYPE tiercache_warmup_keys gauge
tiercache_warmup_keys{cache="users",state="done"} 40
tiercache_warmup_keys{cache="users",state="requested"} 100
# HELP tiercache_warmup_ready 1 once the warm-up is over (finished or out of budget).
# TYPE tiercache_warmup_ready gauge
tiercache_warmup_ready{cache="users"} 0
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected)))
	w.report.Found, w.ready = 90, true
	assert.Equal(t, 1.0, testutil.ToFloat64(metric(t, reg, "tiercache_warmup_keys", map[string]string{"state": "done"}))/100)
}

func TestFlusherMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	st := writebehind.Stats{Leader: true, Batches: 3, Written: 10, Retries: 2, DeadLetters: 1, QueueDepth: 42, DeadLetterDepth: 1}
	st.FlushDuration.Buckets[10] = 3
	st.FlushDuration.Count, st.FlushDuration.SumNs = 3, 3e6
	require.NoError(t, reg.Register(NewFlusherCollector("users", fakeFlusher{st})))
	expected := `
# HELP tiercache_writebehind_queue_depth Writes queued and not yet flushed, as last read by the lease holder.
# TYPE tiercache_writebehind_queue_depth gauge
tiercache_writebehind_queue_depth{cache="users"} 42
# HELP tiercache_writebehind_leader 1 while this flusher holds the flusher lease.
# TYPE tiercache_writebehind_leader gauge
tiercache_writebehind_leader{cache="users"} 1
# HELP tiercache_writebehind_dead_letters_total Queue entries moved to the dead-letter stream.
# TYPE tiercache_writebehind_dead_letters_total counter
tiercache_writebehind_dead_letters_total{cache="users"} 1
# HELP tiercache_writebehind_writes_total Coalesced writes the writer accepted.
# TYPE tiercache_writebehind_writes_total counter
tiercache_writebehind_writes_total{cache="users"} 10
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"tiercache_writebehind_queue_depth", "tiercache_writebehind_leader",
		"tiercache_writebehind_dead_letters_total", "tiercache_writebehind_writes_total"))
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Equal(t, 12, n, "every flusher metric is exported")
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

type fakeWarmup struct {
	report warmup.Report
	ready  bool
}

func (w *fakeWarmup) Progress() warmup.Report { return w.report }
func (w *fakeWarmup) IsReady() bool           { return w.ready }

type fakeFlusher struct{ stats writebehind.Stats }

func (f fakeFlusher) Stats() writebehind.Stats { return f.stats }
