package warmup

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
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
	rk := make([]string, n)
	for i, k := range keys {
		rk[i] = st.ValueKey(k)
	}
	b.Run("raw-mget", func(b *testing.B) {
		for b.Loop() {
			rawMGet(b, rc, rk, nil)
		}
	})
	// The floor of any preload into ristretto: the same MGETs, each value
	// Set as it is (no envelope, no decoding), configured as the local
	// tier configures it for these keys.
	b.Run("raw-mget+ristretto", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			rc2, err := ristretto.NewCache(&ristretto.Config[string, string]{NumCounters: 20 * n, MaxCost: 512 << 20, BufferItems: 64, IgnoreInternalCost: true})
			require.NoError(b, err)
			b.StartTimer()
			rawMGet(b, rc, rk, func(i int, v string) {
				for !rc2.Set(keys[i], v, int64(len(v))) {
					rc2.Wait() // the buffer was full: ristretto dropped it
				}
			})
			rc2.Wait()
			b.StopTimer()
			held := 0
			for _, k := range keys {
				if _, ok := rc2.Get(k); ok {
					held++
				}
			}
			require.Equal(b, n, held)
			rc2.Close()
			b.StartTimer()
		}
	})
	b.Run("tiercache", func(b *testing.B) { benchmarkPreload(b, rc, keys) })
}

// rawMGet reads rk with MGETs of 1,000 keys, four at a time, and hands
// each value to keep (when not nil) with its index in rk.
func rawMGet(b *testing.B, rc rueidis.Client, rk []string, keep func(i int, v string)) {
	g, gctx := errgroup.WithContext(context.Background())
	g.SetLimit(4)
	for start := 0; start < len(rk); start += 1000 {
		g.Go(func() error {
			batch := rk[start:min(start+1000, len(rk))]
			m, err := rueidis.MGet(rc, gctx, batch)
			if err == nil && len(m) != len(batch) {
				err = fmt.Errorf("MGET returned %d values", len(m))
			}
			if err != nil || keep == nil {
				return err
			}
			for i, k := range batch {
				msg := m[k]
				v, err := msg.ToString()
				if err != nil {
					return err
				}
				keep(start+i, v)
			}
			return nil
		})
	}
	require.NoError(b, g.Wait())
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
