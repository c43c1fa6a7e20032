package prommetrics_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/prommetrics"
)

func ExampleNewCacheCollector() {
	// A registry of the service's own, never the default one.
	reg := prometheus.NewRegistry()
	// The Redis at REDIS_URL, which `go test` sets (TestMain starts one).
	rc, err := rueidis.NewClient(rueidis.MustParseURL(os.Getenv("REDIS_URL")))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	ctx := context.Background()
	users, err := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: "example:prommetrics:users",
		LocalTTL: 30 * time.Second, RemoteTTL: 10 * time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	defer users.Close()

	// Likewise NewFlusherCollector, NewWarmupCollector and NewRedisCollector.
	reg.MustRegister(prommetrics.NewCacheCollector("users", users))
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{}) // http.Handle("/metrics", metrics)

	name, err := users.GetOrLoad(ctx, "42", func(ctx context.Context) (string, error) { return "Ada", nil })
	fmt.Println(name, err)
	if err := users.Delete(ctx, "42"); err != nil { // so that the next run loads again
		log.Fatal(err)
	}

	scrape := httptest.NewRecorder()
	metrics.ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(scrape.Body.String()) {
		if strings.HasPrefix(line, "tiercache_load") && !strings.Contains(line, "duration") {
			fmt.Print(line)
		}
	}
	// Output:
	// Ada <nil>
	// tiercache_load_errors_total{cache="users"} 0
	// tiercache_loads_total{cache="users"} 1
}

// The Redis side, from INFO at scrape time: memory, its limit, the eviction
// policy, evictions and clients, per node.
func ExampleNewRedisCollector() {
	// The Redis at REDIS_URL, which `go test` sets (TestMain starts one).
	rc, err := rueidis.NewClient(rueidis.MustParseURL(os.Getenv("REDIS_URL")))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prommetrics.NewRedisCollector("cache-redis", rc))

	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "tiercache_redis_up" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	// Output:
	// tiercache_redis_up 1
}
