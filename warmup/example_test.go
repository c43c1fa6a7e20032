package warmup_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/warmup"
)

// connect opens a client of the Redis at REDIS_URL, which `go test` sets
// (the package's TestMain starts a redis-server).
func connect() rueidis.Client {
	rc, err := rueidis.NewClient(rueidis.MustParseURL(os.Getenv("REDIS_URL")))
	if err != nil {
		log.Fatal(err)
	}
	return rc
}

func Example() {
	const ns = "example:warmup:users"
	rc := connect()
	defer rc.Close()
	ctx := context.Background()

	// Every replica counts a sample of its reads (here every read); the
	// fleet's counts meet in Redis.
	tracker, err := warmup.NewHotKeys(warmup.HotKeysOptions{Client: rc, Namespace: ns})
	if err != nil {
		log.Fatal(err)
	}
	defer tracker.Close()
	running, err := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: ns,
		LocalTTL: time.Minute, RemoteTTL: time.Hour, Sampler: tracker, SampleEvery: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer running.Close()
	if err := running.Set(ctx, "42", "Ada"); err != nil {
		log.Fatal(err)
	}
	for range 10 {
		running.Get(ctx, "42")
	}
	if err := tracker.Push(ctx); err != nil { // done every PushInterval
		log.Fatal(err)
	}

	// A new replica preloads the hot keys in the background; its readiness
	// probe answers 503 until that is done.
	fresh, err := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: ns,
		LocalTTL: time.Minute, RemoteTTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	defer fresh.Close()
	w := warmup.Start(ctx, fresh, warmup.Options[string]{Client: rc, TopN: 100, Budget: 5 * time.Second})
	// http.Handle("/ready", w.Handler())
	<-w.Ready()
	report, err, _ := w.Report()
	fmt.Println("preloaded:", report.Found, err)

	probe := httptest.NewRecorder()
	w.Handler().ServeHTTP(probe, httptest.NewRequest(http.MethodGet, "/ready", nil))
	fmt.Println("ready:", probe.Code)
	// Output:
	// preloaded: 1 <nil>
	// ready: 200
}

// Preload fills a cache before it serves, from keys given or found: here a
// list, of which Redis holds two.
func ExamplePreload() {
	ctx := context.Background()
	rc := connect()
	defer rc.Close()
	opts := tiered.Options[string]{Client: rc, Namespace: "example:warmup:preload",
		LocalTTL: time.Minute, RemoteTTL: time.Hour}

	// Another replica wrote two of the keys.
	other, err := tiered.New(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()
	for _, id := range []string{"1", "2"} {
		if err := other.Set(ctx, id, "user "+id); err != nil {
			log.Fatal(err)
		}
	}

	cache, err := tiered.New(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	report, err := warmup.Preload(ctx, cache, warmup.Options[string]{
		Client: rc, Keys: []string{"1", "2", "3"}, Budget: 5 * time.Second}) // and the hot set's top keys
	fmt.Println("requested:", report.Requested, "found:", report.Found, "error:", err)
	// Output:
	// requested: 3 found: 2 error: <nil>
}
