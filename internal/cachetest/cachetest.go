// Package cachetest builds tiered caches for the tests of the packages
// around tiered (warmup, writebehind, prommetrics, the CLI): each against a
// real redis-server of internal/redistest, with its own client, closed at
// the test's end.
package cachetest

import (
	"context"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// Options are a test cache's options for namespace ns: a minute locally,
// ten in Redis.
func Options[V any](ns string) tiered.Options[V] {
	return tiered.Options[V]{Namespace: ns, LocalTTL: time.Minute, RemoteTTL: 10 * time.Minute}
}

// New builds a cache over opts.Client, or over a client of its own to srv
// when opts.Client is nil, as a separate replica would have; it is closed
// at cleanup.
func New[V any](tb testing.TB, srv *redisserver.Server, opts tiered.Options[V]) *tiered.Cache[V] {
	tb.Helper()
	if opts.Client == nil {
		opts.Client = redistest.Client(tb, srv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tiered.New[V](ctx, opts)
	if err != nil {
		tb.Fatalf("tiered.New: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}
