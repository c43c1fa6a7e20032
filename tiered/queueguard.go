package tiered

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tiercache/tiercache/remote"
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
	// checking is closed when the check under way ends (nil: none). The
	// check is a Redis call: callers do not wait for it under mu, where
	// each, on a Redis that does not answer, would have waited for every
	// one before it, past its own ctx.
	checking chan struct{}
	// gaveUp: the last check ended with its caller's ctx, not with
	// Redis's failure; its waiters ask again themselves.
	gaveUp bool
	// ask, when set, stands in for the store's Durability (for this
	// room's unit tests).
	ask func(context.Context) (remote.Durability, error)
}

// checkQueue says whether write-behind may use this Redis. A Redis that
// cannot be asked (down) is not judged: the write itself will fail. One
// caller checks at a time; the others take the answer held, even a stale
// one while it is renewed, and without one wait for the check (or their
// ctx). When that check could not judge because its caller's ctx ended,
// they check themselves; when Redis failed it, they go on unjudged, as it
// did (waiting for one check after another would take each caller that
// many RemoteTimeouts).
func (c *Cache[V]) checkQueue(ctx context.Context) error {
	g := &c.queueGuard
	for {
		g.mu.Lock()
		held := !g.checked.IsZero()
		if held && (time.Since(g.checked) < queueRecheck || g.checking != nil) {
			err := g.err
			g.mu.Unlock()
			return err
		}
		if wait := g.checking; wait != nil {
			g.mu.Unlock()
			select {
			case <-wait:
				g.mu.Lock()
				unjudged := g.checked.IsZero() && !g.gaveUp
				g.mu.Unlock()
				if unjudged {
					return nil
				}
				continue // judged: take it; given up: ask
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		done := make(chan struct{})
		g.checking = done
		g.mu.Unlock()
		return c.renewQueueVerdict(ctx, done)
	}
}

// renewQueueVerdict asks Redis for its durability and keeps the verdict;
// done is closed once it is kept (or the question failed), even on a
// panic (a logger's).
func (c *Cache[V]) renewQueueVerdict(ctx context.Context, done chan struct{}) error {
	g := &c.queueGuard
	defer func() {
		g.mu.Lock()
		g.checking = nil
		g.mu.Unlock()
		close(done)
	}()
	ask := g.ask
	if ask == nil {
		ask = c.remote.Durability
	}
	d, err := ask(ctx)
	if err != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		gone := ended(ctx)
		g.gaveUp = gone != nil
		if gone != nil {
			return gone
		}
		return g.err // unjudged: the answer held before, if any
	}
	verdict := c.judgeQueue(d)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checked, g.err, g.gaveUp = time.Now(), verdict, false
	return verdict
}

// judgeQueue is the verdict on a Redis's durability, logged.
func (c *Cache[V]) judgeQueue(d remote.Durability) error {
	var err error
	switch {
	case !d.Known:
		c.log.Warn("queue:unverified", "write-behind: cannot read the eviction policy (CONFIG and INFO refused): make sure it is noeviction or volatile-*, and that persistence is on")
	case d.CanEvictQueue() && !c.opts.AllowQueueEviction:
		err = fmt.Errorf("%w: Redis maxmemory-policy is %s, which can evict the queue and every acknowledged write it holds; use noeviction or a volatile-* policy (every cache key has a TTL, the queue has none), or a dedicated Redis, or set Options.AllowQueueEviction to accept losses", ErrQueueUnsafe, d.Policy)
		c.log.Error("queue:unsafe", "write-behind refused", "err", err)
	case d.CanEvictQueue():
		c.log.Warn("queue:evictable", "write-behind on an evicting Redis (AllowQueueEviction): queued writes may be lost; losses are counted", "policy", d.Policy)
	}
	if d.Known && !d.AOF {
		c.log.Warn("queue:no-aof", "write-behind: Redis persistence (appendonly) is off: a restart loses the queued writes")
	}
	return err
}
