package prommetrics

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestRedisCollector: on a Redis made to evict, the collector shows the
// eviction policy, the limit, the memory used and the keys evicted; a
// second scrape within RedisCacheFor costs Redis nothing.
func TestRedisCollector(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru")
	c := redistest.Client(t, srv)
	ctx := context.Background()
	ballast := strings.Repeat("b", 64<<10)
	for i := range 200 { // 12.5 MB into 4 MB
		require.NoError(t, c.Do(ctx, c.B().Set().Key(fmt.Sprint("k", i)).Value(ballast).Build()).Error())
	}
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(NewRedisCollector("cache", c)))
	lint, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, lint)

	got := gather(t, reg)
	assert.Equal(t, 1.0, got[`tiercache_redis_up{node="default",redis="cache"}`])
	assert.Equal(t, 1.0, got[`tiercache_redis_maxmemory_policy{node="default",policy="allkeys-lru",redis="cache"}`])
	assert.Equal(t, float64(4<<20), got[`tiercache_redis_maxmemory_bytes{node="default",redis="cache"}`])
	evicted := got[`tiercache_redis_evicted_keys_total{node="default",redis="cache"}`]
	assert.Greater(t, evicted, 100.0, "Redis evicted most of the ballast")
	assert.Greater(t, got[`tiercache_redis_used_memory_bytes{node="default",redis="cache"}`], float64(1<<20))
	assert.Positive(t, got[`tiercache_redis_connected_clients{node="default",redis="cache"}`])

	calls := infoCalls(t, c)
	gather(t, reg)
	assert.Equal(t, calls, infoCalls(t, c)-1, "the second scrape was served from the cached read (only this check ran INFO)")
}

// gather flattens a registry's metrics into name{labels} → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

// infoCalls is how many INFO commands Redis has run (this one included).
func infoCalls(t *testing.T, c rueidis.Client) int {
	t.Helper()
	stats, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	require.NoError(t, err)
	_, rest, ok := strings.Cut(stats, "cmdstat_info:calls=")
	require.True(t, ok)
	n, _, _ := strings.Cut(rest, ",")
	calls, err := strconv.Atoi(n)
	require.NoError(t, err)
	return calls
}
