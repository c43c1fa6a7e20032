package warmup

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// BenchmarkHitSampling compares a local hit with hot-key tracking on
// (1 read in 64 sampled, the default) and off, in the same run.
func BenchmarkHitSampling(b *testing.B) {
	srv := redistest.Start(b)
	for _, track := range []bool{false, true} {
		name := map[bool]string{false: "tracking-off", true: "tracking-on"}[track]
		b.Run(name, func(b *testing.B) {
			rc := redistest.Client(b, srv)
			opts := tiered.Options[string]{Client: rc, Namespace: "sampling", LocalTTL: time.Hour, RemoteTTL: time.Hour, PingInterval: -1}
			if track {
				tr, err := NewHotKeys(HotKeysOptions{Client: rc, Namespace: "sampling"})
				require.NoError(b, err)
				defer tr.Close()
				opts.Sampler = tr
			}
			c, err := tiered.New[string](context.Background(), opts)
			require.NoError(b, err)
			defer c.Close()
			ctx := context.Background()
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = fmt.Sprint("k", i)
				require.NoError(b, c.Set(ctx, keys[i], "v"))
			}
			_, err = c.GetMany(ctx, keys) // returns once they are in the local tier
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					c.Get(ctx, keys[i&1023])
					i++
				}
			})
		})
	}
}

// BenchmarkPreload100k preloads 100,000 keys of 1 KiB from a local Redis
// into a fresh replica's local tier, against a raw pipelined MGET of the
// same keys in the same batches and concurrency, in the same run.
func BenchmarkPreload100k(b *testing.B) {
	srv := redistest.Start(b)
	rc := redistest.Client(b, srv)
	ctx := context.Background()
	const n = 100_000
	st, err := remote.New(remote.Options{Client: rc, Namespace: "preload", TTL: time.Hour, CompressAbove: -1})
	require.NoError(b, err)
	_, err = st.Settle(ctx) // the namespace's generation, which the caches join
	require.NoError(b, err)
	payload := `"` + strings.Repeat("x", 1022) + `"` // a 1 KiB JSON string
	keys := make([]string, n)
	for start := 0; start < n; start += 5000 {
		cmds := make(rueidis.Commands, 0, 5000)
		for i := start; i < start+5000; i++ {
			keys[i] = fmt.Sprint("item:", i)
			now := time.Now()
			b, err := st.Encode(&remote.Envelope{WrittenAt: now.UnixNano(), ExpiresAt: now.Add(time.Hour).UnixNano(), Payload: []byte(payload)})
			if err != nil {
				panic(err)
			}
			cmds = append(cmds, rc.B().Set().Key(st.ValueKey(keys[i])).Value(string(b)).Px(time.Hour).Build())
		}
		for _, r := range rc.DoMulti(ctx, cmds...) {
			require.NoError(b, r.Error())
		}
	}
	b.Run("raw-mget", func(b *testing.B) {
		rk := make([]string, n)
		for i, k := range keys {
			rk[i] = st.ValueKey(k)
		}
		for b.Loop() {
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(4)
			for start := 0; start < n; start += 1000 {
				g.Go(func() error {
					m, err := rueidis.MGet(rc, gctx, rk[start:start+1000])
					if err == nil && len(m) != 1000 {
						err = fmt.Errorf("MGET returned %d values", len(m))
					}
					return err
				})
			}
			require.NoError(b, g.Wait())
		}
	})
	b.Run("tiercache", func(b *testing.B) { benchmarkPreload(b, rc, keys) })
}

func benchmarkPreload(b *testing.B, rc rueidis.Client, keys []string) {
	ctx := context.Background()
	n := len(keys)
	var last Report
	for b.Loop() {
		b.StopTimer()
		c, err := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: "preload", LocalTTL: time.Hour, RemoteTTL: time.Hour, LocalMaxCost: 512 << 20, LocalMaxEntries: 2 * int64(n), PingInterval: -1})
		require.NoError(b, err)
		b.StartTimer()
		last, err = Preload(ctx, c, Options[string]{TopN: -1, Keys: keys, BatchSize: 1000, Concurrency: 4, Budget: time.Minute})
		b.StopTimer()
		require.NoError(b, err)
		require.Equal(b, n, last.Found)
		missesBefore := c.Stats().LocalMisses
		for _, k := range keys {
			c.Get(ctx, k)
		}
		b.ReportMetric(1-float64(c.Stats().LocalMisses-missesBefore)/float64(n), "local-hit-after")
		c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(last.Elapsed.Milliseconds()), "ms/preload")
	b.ReportMetric(float64(last.Bytes)/(1<<20), "MiB")
}
