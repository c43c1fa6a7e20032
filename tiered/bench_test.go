package tiered

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkLocalHit compares a tiercache local hit with a raw ristretto Get
// of entries stored with a TTL, in the same run, over zipf-distributed keys.
// Report the ratio of the two, not the absolute figures.
func BenchmarkLocalHit(b *testing.B) {
	const n = 4096
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("user:", i)
	}
	// A zipf sequence fixed up front, so both candidates read the same keys
	// and the benchmark loop draws no random numbers.
	seq := make([]string, 1<<16)
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.01, 1, n-1)
	for i := range seq {
		seq[i] = keys[z.Uint64()]
	}

	b.Run("tiercache", func(b *testing.B) {
		srv := redistest.Start(b)
		c := newCache[user](b, srv, Options{Namespace: "bench", LocalTTL: time.Hour, RemoteTTL: time.Hour, PingInterval: -1})
		ctx := context.Background()
		for i, k := range keys {
			require.NoError(b, c.Set(ctx, k, user{ID: i, Name: k}))
		}
		c.local.Wait()
		before := c.Stats().LocalHits
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(seq))
			for pb.Next() {
				c.Get(ctx, seq[i&(len(seq)-1)])
				i++
			}
		})
		b.StopTimer()
		hits := c.Stats().LocalHits - before
		b.ReportMetric(float64(hits)/float64(b.N), "local-hit-ratio")
	})
	b.Run("raw-ristretto", func(b *testing.B) {
		rc, err := ristretto.NewCache(&ristretto.Config[string, user]{NumCounters: 10 * n, MaxCost: 64 << 20, BufferItems: 64, IgnoreInternalCost: true})
		require.NoError(b, err)
		defer rc.Close()
		for i, k := range keys {
			rc.SetWithTTL(k, user{ID: i, Name: k}, 100, time.Hour)
		}
		rc.Wait()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(seq))
			for pb.Next() {
				rc.Get(seq[i&(len(seq)-1)])
				i++
			}
		})
	})
}

// BenchmarkSet is the cost of a write-through Set (one Redis round trip).
func BenchmarkSet(b *testing.B) {
	srv := redistest.Start(b)
	c := newCache[user](b, srv, Options{Namespace: "bench", LocalTTL: time.Hour, RemoteTTL: time.Hour, PingInterval: -1})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(1 << 20)
		for pb.Next() {
			c.Set(ctx, fmt.Sprint("k", i&1023), user{ID: i})
			i++
		}
	})
}
