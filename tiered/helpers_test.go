package tiered

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// testOptions are short TTLs and timeouts suited to tests; Client is set
// by newCache.
func testOptions[V any](ns string) Options[V] {
	return Options[V]{Namespace: ns, LocalTTL: time.Minute, RemoteTTL: 10 * time.Minute}
}

// newCache builds a cache with its own rueidis client (its own
// connections), as a separate replica would have.
func newCache[V any](t testing.TB, srv *redisserver.Server, opts Options[V]) *Cache[V] {
	t.Helper()
	opts.Client = redistest.Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New[V](ctx, opts)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func replicas[V any](t testing.TB, srv *redisserver.Server, n int, opts Options[V]) []*Cache[V] {
	out := make([]*Cache[V], n)
	for i := range out {
		out[i] = newCache[V](t, srv, opts)
	}
	return out
}
