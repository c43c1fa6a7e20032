package tiered

import (
	"time"

	"github.com/tiercache/tiercache/coherence"
)

// The receiving side: what the cache does with invalidations, gaps and
// repairs its transport reports, and with the breaker's changes.

// applyInvalidation runs on the bus goroutine for every peer's message.
func (c *Cache[V]) applyInvalidation(m coherence.Message) {
	c.stats.lag.Observe(time.Duration(time.Now().UnixNano() - m.PublishedAt))
	switch m.Kind {
	case coherence.KindKeys:
		c.local.Invalidate(m.Keys...)
		c.waiting.wake(m.Keys...)
	case coherence.KindTags:
		c.local.InvalidateTags(m.Keys...)
	case coherence.KindFlush:
		if len(m.Keys) == 1 {
			c.remote.AdoptGeneration(m.Keys[0])
		}
		c.resetLocal(resetReasonMessage)
	default:
		// A kind this version does not know: the safe answer is to drop
		// everything.
		c.resetLocal(resetReasonMessage)
	}
	// Counted once applied (Stats: "peers' messages applied"): a reader
	// that sees the count sees the message's fences too.
	c.stats.received.Add(1)
	if c.opts.applied != nil {
		c.opts.applied(m)
	}
}

// killOnArrival stops the local copies of a peer's invalidated keys being
// served the moment its message is read (on the subscription's reading
// goroutine); applyInvalidation then fences their fills and removes them,
// in order with the rest of the stream.
func (c *Cache[V]) killOnArrival(m coherence.Message) {
	if m.Kind == coherence.KindKeys {
		c.local.Kill(m.Keys...)
	}
}

// killTracked is killOnArrival for the tracking transport: the local
// copies of the cache keys among a push's Redis keys stop being served as
// it is read; applyTracked invalidates them in turn.
func (c *Cache[V]) killTracked(redisKeys []string) {
	for _, rk := range redisKeys {
		if k, ok := c.remote.KeyOf(rk); ok {
			c.local.Kill(k)
		}
	}
}

// applyGap runs on the bus goroutine when invalidations may have been lost.
// A namespace flush may have been among them, so the generation is re-read.
func (c *Cache[V]) applyGap(reason coherence.GapReason) {
	if reason == coherence.GapResubscribe {
		// Redis answered our SUBSCRIBE: it is back, whatever the breaker
		// last saw. (The flush below covers what was missed.)
		c.remote.ResetBreaker()
	}
	c.resetLocal(string(reason))
	c.settleGeneration()
}

func (c *Cache[V]) resetLocal(reason string) {
	c.local.Reset()
	c.waiting.wakeAll()
	c.stats.resets(reason).Add(1)
	if reason != resetReasonMessage {
		c.log.Warn("flush:"+reason, "local tier flushed: invalidations may have been missed", "reason", reason)
	}
}

// breakerChanged runs when the Redis breaker changes state. While it was
// open this replica could not hear every invalidation reliably, so when a
// probe closes it again the local tier is flushed.
func (c *Cache[V]) breakerChanged(from, to string) {
	c.log.Warn("breaker", "redis circuit breaker "+to, "from", from, "to", to)
	if to != "closed" {
		return
	}
	if c.opts.Transport != TransportPubSub && c.bus != nil {
		c.bus.Resync(resetReasonBreaker) // a replay, or a flush if it cannot
		return
	}
	c.resetLocal(resetReasonBreaker)
}

// refused is told that Redis refused a command the transport needs after
// start: a configuration error (the ACL user's), which retrying will not
// fix, logged as such.
func (c *Cache[V]) refused(err error) {
	c.log.Error("refused", "redis refused a command the invalidation transport needs: check the ACL user's permissions (docs/operations.md)", "err", err)
}

// applyTracked applies a tracking push: the Redis keys that changed.
func (c *Cache[V]) applyTracked(redisKeys []string) {
	c.stats.received.Add(1)
	keys := redisKeys[:0:0]
	for _, rk := range redisKeys {
		if rk == c.remote.GenerationKey() {
			// InvalidateAll (or anyone, or Redis by evicting it) moved
			// the generation.
			c.resetLocal(resetReasonMessage)
			c.settleGeneration()
			continue
		}
		if k, ok := c.remote.KeyOf(rk); ok {
			keys = append(keys, k)
		} else if tag, ok := c.remote.TagOf(rk); ok {
			c.local.InvalidateTags(tag)
		}
	}
	if len(keys) > 0 {
		c.local.Invalidate(keys...)
		c.waiting.wake(keys...)
	}
}

// hold stops local reads while the bus deals with a gap (Options.OnHold).
func (c *Cache[V]) hold(on bool) {
	if on {
		c.local.Hold()
	} else {
		c.local.Release()
	}
}

// applyRepair is told of a gap the invalidation log repaired: nothing to
// flush.
func (c *Cache[V]) applyRepair(reason coherence.GapReason, replayed int) {
	if reason == coherence.GapResubscribe {
		c.remote.ResetBreaker() // Redis answered our SUBSCRIBE: it is back
	}
	c.log.Warn("repair:"+string(reason), "invalidations missed and replayed from the log", "reason", reason, "replayed", replayed)
}
