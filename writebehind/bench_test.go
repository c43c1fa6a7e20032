package writebehind

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// BenchmarkSetBehind measures the writes one replica absorbs, against Set
// in the same run: compare the two, and read writes/s as 1e9 / ns/op.
// The flusher runs meanwhile, as it would in production, so the queue
// does not fill.
func BenchmarkSetBehind(b *testing.B) {
	for _, behind := range []bool{false, true} {
		name := "set"
		if behind {
			name = "set-behind"
		}
		b.Run(name, func(b *testing.B) {
			srv := redistest.Start(b)
			c := newCache[user](b, srv, tiered.Options[user]{Namespace: "bench", LocalTTL: time.Hour, RemoteTTL: time.Hour, PingInterval: -1})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if behind {
				f, err := newFlusher(c, Options[user]{Writer: func(context.Context, []Write[user]) error { return nil }})
				require.NoError(b, err)
				go f.Run(ctx)
			}
			write := c.Set
			if behind {
				write = c.SetBehind
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(1 << 20)
				for pb.Next() {
					if err := write(ctx, fmt.Sprint("k", i&1023), user{ID: i}); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkFlush measures flush throughput: b.N queued writes to distinct
// keys drained by one flusher whose writer accepts at once, so the figure
// is the queue's own cost per write (read, decode, acknowledge).
func BenchmarkFlush(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	run := 0
	for _, batch := range []int{64, 512} {
		b.Run(fmt.Sprint("batch-", batch), func(b *testing.B) {
			b.StopTimer()
			// A namespace per run: a run's last batch may be left
			// unacknowledged when it stops, and must not reach the next.
			run++
			c := newCache[user](b, srv, tiered.Options[user]{Namespace: fmt.Sprint("flush", run), LocalTTL: time.Hour,
				RemoteTTL: time.Hour, PingInterval: -1, WriteBehindLimit: 1 << 30})
			for i := range b.N {
				require.NoError(b, c.SetBehind(ctx, fmt.Sprint("k", i), user{ID: i}))
			}
			var delivered int
			done := make(chan struct{})
			f, err := newFlusher(c, Options[user]{BatchSize: batch, Writer: func(_ context.Context, ws []Write[user]) error {
				delivered += len(ws)
				if delivered == b.N { // distinct keys: nothing coalesces
					close(done)
				}
				return nil
			}})
			require.NoError(b, err)
			fctx, cancel := context.WithCancel(ctx)
			b.StartTimer()
			ran := make(chan error)
			go func() { ran <- f.Run(fctx) }()
			<-done
			b.StopTimer()
			cancel()
			<-ran
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}
