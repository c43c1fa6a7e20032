package tiered

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Write-behind is only as durable as the Redis under it. The queue is a
// stream without a TTL: an allkeys-* eviction policy may evict it (with
// every write it holds), and without persistence a restart loses it. So
// before SetBehind queues (and, in package writebehind, before a Flusher runs), the eviction policy is
// read (CONFIG GET, or INFO where CONFIG is forbidden): on an allkeys-*
// policy write-behind refuses with ErrQueueUnsafe unless
// Options.AllowQueueEviction says the user accepts losses (which are then
// detected and counted, not prevented). Persistence off is logged. The
// answer is kept for queueRecheck.

// queueRecheck is how long a durability answer is trusted.
const queueRecheck = time.Minute

type queueGuard struct {
	mu      sync.Mutex
	checked time.Time
	err     error
}

// checkQueue says whether write-behind may use this Redis. A Redis that
// cannot be asked (down) is not judged: the write itself will fail.
func (c *Cache[V]) checkQueue(ctx context.Context) error {
	g := &c.queueGuard
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.checked.IsZero() && time.Since(g.checked) < queueRecheck {
		return g.err
	}
	d, err := c.remote.Durability(ctx)
	if err != nil {
		return nil
	}
	g.checked, g.err = time.Now(), nil
	switch {
	case !d.Known:
		c.log.Warn("queue:unverified", "write-behind: cannot read the eviction policy (CONFIG and INFO refused): make sure it is noeviction or volatile-*, and that persistence is on")
	case d.CanEvictQueue() && !c.opts.AllowQueueEviction:
		g.err = fmt.Errorf("%w: Redis maxmemory-policy is %s, which can evict the queue and every acknowledged write it holds; use noeviction or a volatile-* policy (every cache key has a TTL, the queue has none), or a dedicated Redis, or set Options.AllowQueueEviction to accept losses", ErrQueueUnsafe, d.Policy)
		c.log.Error("queue:unsafe", "write-behind refused", "err", g.err)
	case d.CanEvictQueue():
		c.log.Warn("queue:evictable", "write-behind on an evicting Redis (AllowQueueEviction): queued writes may be lost; losses are counted", "policy", d.Policy)
	}
	if d.Known && !d.AOF {
		c.log.Warn("queue:no-aof", "write-behind: Redis persistence (appendonly) is off: a restart loses the queued writes")
	}
	return g.err
}
