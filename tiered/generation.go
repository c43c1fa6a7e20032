package tiered

import (
	"context"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/remote"
)

// The namespace generation (see remote/generation.go) is settled at start,
// after every gap in invalidations, when a tracking push says its key
// changed, and every PingInterval: Redis may lose the key (eviction, an
// empty restart) or turn it back (a failover), and a replica that finds so
// moves the whole fleet to a new generation, so that nobody serves what
// Redis no longer backs. On a single Redis, writes are fenced by the key
// too; the periodic check is what a Cluster relies on.

// generationPublication is the message that announces a new generation:
// every replica adopts it and flushes its local tier.
func generationPublication(origin uint64, namespace, value string) remote.Publication {
	m := coherence.Message{Origin: origin, Namespace: namespace, Kind: coherence.KindFlush,
		Keys: []string{value}, PublishedAt: time.Now().UnixNano()}
	return remote.Publication{Channel: namespace + ":inv", Message: m.Encode()}
}

// generationMoved runs when the store moved to another generation: what
// the local tier holds was read under the old one.
func (c *Cache[V]) generationMoved(g remote.GenerationChange) {
	c.resetLocal(resetReasonGeneration)
	if g.Lost != "" {
		c.log.Warn("lost:"+g.Lost, "redis lost the namespace generation: the namespace moved to a new one and every replica drops its local tier",
			"lost", g.Lost, "from", g.From, "to", g.To)
	}
}

// settleGeneration checks the generation now, on the caller's goroutine.
func (c *Cache[V]) settleGeneration() {
	ctx, cancel := context.WithTimeout(c.life, c.opts.RemoteTimeout)
	defer cancel()
	if _, err := c.remote.Settle(ctx); err != nil && ctx.Err() == nil {
		c.remoteFailed("generation", err)
	}
}

// watchGeneration settles the generation every interval until Close.
func (c *Cache[V]) watchGeneration(every time.Duration) {
	defer c.background.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.life.Done():
			return
		case <-t.C:
			c.settleGeneration()
		}
	}
}

// pingEvery is the interval Options.PingInterval means (not negative).
func pingEvery(d time.Duration) time.Duration {
	if d == 0 {
		return time.Second
	}
	return d
}
