package tiered

import (
	"context"

	"github.com/tiercache/tiercache/coherence"
)

// Transport names a way invalidations travel between replicas.
type Transport string

const (
	// TransportPubSub publishes each invalidation on the namespace's
	// channel, <namespace>:inv, in the script that makes the write. A
	// replica that may have missed messages (a resubscribe, an overflow, a
	// ping that did not come back) flushes its local tier.
	TransportPubSub Transport = "pubsub"
	// TransportResumable is TransportPubSub plus an invalidation log: each
	// message is also appended to a capped Redis stream, <namespace>:v1:invlog,
	// in the same script, and a replica that may have missed messages
	// replays the log from the last one it saw instead of flushing. It
	// flushes only when the log was trimmed past that point. The price is
	// one XADD per write and the stream's memory. On a Redis Cluster there
	// is one log per hash slot, <namespace>:v1:invlog:{<tag>}, trimmed by
	// InvalidationLogAge as well, and a replay reads all 16,384 of them in
	// one pipelined round; it relies on the bus's pings, so PingInterval
	// must not be negative there.
	TransportResumable Transport = "resumable"
	// TransportTracking uses Redis server-assisted invalidation instead of
	// the channel: one dedicated RESP3 connection per replica runs CLIENT
	// TRACKING ON BCAST PREFIX <namespace>:v1:g, and Redis pushes the name
	// of every value key that is written, deleted, expired or evicted — by
	// this library or by any other program. A lost connection flushes, as
	// with TransportPubSub. Two differences: a replica's own writes are
	// pushed back to it, so it drops its own fresh copy (the next read goes
	// to Redis); and waiters of a fleet load are woken by the fill's key
	// change. Needs Redis 6+ and a RESP3 client (rueidis's default). On a
	// Cluster there is one tracking connection per node.
	TransportTracking Transport = "tracking"
)

// transport is what carries invalidations to this replica: a pub/sub Bus
// (TransportPubSub, TransportResumable) or a Tracker (TransportTracking).
type transport interface {
	Close()
	Stats() coherence.Stats
	Resync(coherence.GapReason)
}

// startTransport returns a nil interface (not a nil pointer in one) on error.
func (c *Cache[V]) startTransport(ctx context.Context) (transport, error) {
	if c.opts.Transport == TransportTracking {
		// "<ns>:v1:g" covers the generation key and every generation's
		// values (and their leases, wait markers and tags, which KeyOf
		// ignores), and leaves out the write-behind queue, the
		// invalidation log and the hot-key set.
		t, err := coherence.Track(ctx, coherence.TrackingOptions{
			Client:       c.opts.Client,
			Prefix:       c.opts.Namespace + ":v1:g",
			OnKeys:       c.applyTracked,
			OnArrival:    c.killTracked,
			OnGap:        c.applyGap,
			OnHold:       c.hold,
			QueueSize:    c.opts.InvalidationQueue,
			PingInterval: c.opts.PingInterval,
			OnRefused:    c.refused,
		})
		if err != nil {
			return nil, err
		}
		return t, nil
	}
	bo := coherence.Options{
		Client:       c.opts.Client,
		Channel:      c.channel,
		Namespace:    c.opts.Namespace,
		Origin:       c.origin,
		OnMessage:    c.applyInvalidation,
		OnArrival:    c.killOnArrival,
		OnGap:        c.applyGap,
		QueueSize:    c.opts.InvalidationQueue,
		PingInterval: c.opts.PingInterval,
		OnRepair:     c.applyRepair,
		OnHold:       c.hold,
		OnRefused:    c.refused,
	}
	if c.opts.Transport == TransportResumable {
		if c.remote.Cluster() {
			bo.SlotLogKey, bo.LogAge = c.remote.SlotLogKey, c.opts.InvalidationLogAge
		} else {
			bo.LogKey = c.remote.InvalidationLogKey()
		}
	}
	b, err := coherence.Subscribe(ctx, bo)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func logSize[V any](o *Options[V]) int {
	if o.Transport == TransportResumable {
		return o.InvalidationLogSize
	}
	return 0
}
