package warmup_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/warmup"
)

func Example() {
	// A throwaway server so the example runs anywhere; use your own address.
	srv, err := redisserver.Start(context.Background(), redisserver.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Stop()
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rc.Close()
	ctx := context.Background()

	// Every replica tracks its reads; the fleet's counts meet in Redis.
	tracker, _ := warmup.NewHotKeys(warmup.HotKeysOptions{Client: rc, Namespace: "svc:users"})
	defer tracker.Close()
	running, _ := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: "svc:users",
		LocalTTL: time.Minute, RemoteTTL: time.Hour, Sampler: tracker, SampleEvery: 1})
	defer running.Close()
	running.Set(ctx, "42", "Ada")
	for range 10 {
		running.Get(ctx, "42")
	}
	tracker.Push(ctx)

	// A new replica preloads the hot keys in the background; a readiness
	// probe answers 503 until it is done.
	fresh, _ := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: "svc:users", LocalTTL: time.Minute, RemoteTTL: time.Hour})
	defer fresh.Close()
	w := warmup.Start(ctx, fresh, warmup.Options[string]{Client: rc, TopN: 100, Budget: 5 * time.Second})
	<-w.Ready()
	rep, _, _ := w.Report()
	fmt.Println("preloaded:", rep.Found)

	probe := httptest.NewRecorder()
	w.Handler().ServeHTTP(probe, httptest.NewRequest(http.MethodGet, "/ready", nil))
	fmt.Println("ready:", probe.Code)
	// Output:
	// preloaded: 1
	// ready: 200
}
