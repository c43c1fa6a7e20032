package writebehind

import (
	"context"
	"testing"

	"github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/leaktest"
	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// TestMain gives the examples a Redis at REDIS_URL and checks for leaked
// goroutines after everything ran.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.WithExampleRedis(m, "example:writebehind:"), leaktest.IgnoreClusterClient()...)
}

// replica is a cache that writes behind, with the client and namespace a
// flusher of its queue is built from.
type replica[V any] struct {
	*tiered.Cache[V]
	client rueidis.Client
	ns     string
}

func newCache[V any](t testing.TB, srv *redisserver.Server, opts tiered.Options[V]) *replica[V] {
	t.Helper()
	if opts.Client == nil {
		opts.Client = redistest.Client(t, srv)
	}
	return &replica[V]{Cache: cachetest.New[V](t, srv, opts), client: opts.Client, ns: opts.Namespace}
}

func replicas[V any](t testing.TB, srv *redisserver.Server, n int, opts tiered.Options[V]) []*replica[V] {
	out := make([]*replica[V], n)
	for i := range out {
		out[i] = newCache[V](t, srv, opts)
	}
	return out
}

// newFlusher builds a flusher of c's queue.
func newFlusher[V any](c *replica[V], opts Options[V]) (*Flusher[V], error) {
	opts.Client, opts.Namespace = c.client, c.ns
	return New(opts)
}

// queueDepth reads c's queue and dead-letter lengths.
func queueDepth[V any](c *replica[V], ctx context.Context) (queued, dead int64, err error) {
	return newQueue(c.client, c.ns, DefaultRemoteTimeout, DefaultMaxValueBytes).depth(ctx)
}

// user is a value of the benchmarks.
type user struct {
	ID   int
	Name string
}
