package coherence

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkClusterPublish compares the two ways to carry invalidations on
// a Redis Cluster, in the same run: PUBLISH (broadcast over the cluster bus
// to every node) and SPUBLISH (sharded: only the shard owning the channel's
// slot). Each iteration publishes one message and waits until all four
// subscribers, each with its own cluster client, have it: the figure is
// the delivery time of one invalidation to the fleet.
func BenchmarkClusterPublish(b *testing.B) {
	cl := redistest.StartCluster(b)
	for _, sharded := range []bool{false, true} {
		name := "publish"
		if sharded {
			name = "spublish"
		}
		b.Run(name, func(b *testing.B) {
			ch := "bench:inv:" + name
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const subscribers = 4
			var got [subscribers]atomic.Int64
			ready := make(chan struct{}, subscribers)
			done := make(chan struct{}, subscribers)
			for i := range subscribers {
				c := cl.Client(b)
				sub := c.B().Subscribe().Channel(ch).Build()
				if sharded {
					sub = c.B().Ssubscribe().Channel(ch).Build()
				}
				go func() {
					defer func() { done <- struct{}{} }()
					hook := rueidis.WithOnSubscriptionHook(ctx, func(rueidis.PubSubSubscription) { ready <- struct{}{} })
					c.Receive(hook, sub, func(m rueidis.PubSubMessage) {
						n, _ := strconv.ParseInt(m.Message, 10, 64)
						got[i].Store(n)
					})
				}()
			}
			for range subscribers {
				<-ready
			}
			pub := cl.Client(b)
			b.ResetTimer()
			for n := int64(1); n <= int64(b.N); n++ {
				msg := strconv.FormatInt(n, 10)
				cmd := pub.B().Publish().Channel(ch).Message(msg).Build()
				if sharded {
					cmd = pub.B().Spublish().Channel(ch).Message(msg).Build()
				}
				if err := pub.Do(ctx, cmd).Error(); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for i := range subscribers {
					for got[i].Load() < n {
						if time.Now().After(deadline) {
							b.Fatalf("subscriber %d never got message %d", i, n)
						}
						time.Sleep(5 * time.Microsecond)
					}
				}
			}
			b.StopTimer()
			cancel()
			for range subscribers {
				<-done
			}
		})
	}
}
