package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// leaseSlack is added to a waiter's own deadline to look again: past the
// holder's expiry, or its expected load time.
const leaseSlack = time.Millisecond

// unknownLoadTime is what a waiter assumes a load takes when its holder
// had no measure yet.
const unknownLoadTime = 100 * time.Millisecond

// waitFor is how long a waiter waits for the holder's fill to wake it
// before it looks again by itself. The wake-up is the fill's message; this
// only covers its loss (an evicted wait marker or lease, a dropped
// message), so it is about as long as the holder expects its load to
// take, longer each round spent on the same holder, and never past the
// holder's lease.
func waitFor(r *remote.LeaseResult, round int) time.Duration {
	d := r.HolderExpects
	if d <= 0 {
		d = unknownLoadTime
	}
	d += d + leaseSlack
	d <<= min(round, 6)
	return min(d, r.HeldFor+leaseSlack)
}

// expectedLoad is how long this replica's loads have taken lately, for its
// lease tokens (remote.LeaseToken): waiters on other replicas pace their
// own checks by it.
func (c *Cache[V]) expectedLoad() time.Duration { return time.Duration(c.loadEWMA.Load()) }

func (c *Cache[V]) observeLoad(took time.Duration) {
	prev := c.loadEWMA.Load()
	if prev == 0 {
		c.loadEWMA.Store(int64(took))
		return
	}
	c.loadEWMA.Store(prev - prev/8 + int64(took)/8) // a lost update only skips a sample
}

// readOrLoad is the fleet-wide single flight. Each round reads Redis and,
// on a miss, takes the key's lease in the same script: the holder loads;
// every other replica waits until the holder's fill (or a write) wakes it,
// or the holder's lease runs out, and then reads again.
func (c *Cache[V]) readOrLoad(ctx context.Context, key string, fence local.Fence, load func(context.Context) (V, error), co callOptions) (V, error) {
	var zero V
	if err := c.checkCall(co); err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		return zero, err // abandoned (flights.abandon), or every caller left
	}
	token := remote.LeaseToken(c.expectedLoad())
	waits, holder := 0, ""
	for round := 0; ; round++ {
		if round > 0 {
			// A wake is an invalidation of the key, which broke the old
			// fence; this round's read starts now. The value has most
			// likely landed: a plain read first.
			fence = c.local.Fence(key)
			rctx, end := c.observe(ctx, OpRedisRead, key, 1)
			env, err := c.remote.Get(rctx, key)
			endRead(end, err)
			if err == nil {
				v, derr := c.decodeEnvelope(&env)
				switch {
				case derr == nil:
					c.stats.remoteHits.Add(1)
					return c.fromRemote(key, fence, &env, v, load)
				case errors.Is(derr, ErrTypeClash):
					return zero, c.typeClash(key, derr)
				}
			}
		}
		slot := c.waiting.add(key)
		rctx, end := c.observe(ctx, OpRedisRead, key, 1)
		r, err := c.remote.LeaseOrRead(rctx, key, token)
		endLease(end, &r, err)
		if err != nil || r.Found || r.Leased || r.Corrupt != nil {
			c.waiting.remove(key, slot) // only a wait for another holder keeps it
		}
		switch {
		case err != nil:
			if err := ended(ctx); err != nil {
				c.release(ctx, key, token, 0) // the call may have been sent, and taken it
				return zero, err
			}
			c.remoteFailed("lease", err)
			return c.loadLocalOnly(ctx, key, fence, load, co)
		case r.Found:
			v, err := c.decodeEnvelope(&r.Envelope)
			if err == nil {
				c.stats.remoteHits.Add(1)
				return c.fromRemote(key, fence, &r.Envelope, v, load)
			}
			if errors.Is(err, ErrTypeClash) {
				// Another cache's value: not this cache's to replace.
				return zero, c.typeClash(key, err)
			}
			// Readable envelope, undecodable value: as corrupt.
			c.corrupt(err)
			return c.replaceCorrupt(ctx, key, fence, token, load, co)
		case r.Leased:
			c.stats.remoteMisses.Add(1)
			return c.loadAndFill(ctx, key, fence, token, load, co)
		case r.Corrupt != nil:
			// A value is there, unreadable: a load under a lease of its
			// own replaces it.
			c.corrupt(r.Corrupt)
			return c.replaceCorrupt(ctx, key, fence, token, load, co)
		}
		// Another replica holds the lease: wait for its fill.
		c.stats.leaseWaits.Add(1)
		_, end = c.observe(ctx, OpLeaseWait, key, 1)
		if r.Holder != holder {
			// A new holder's load has just begun: a lost wake-up from the
			// last one says nothing of how long this one takes.
			holder, waits = r.Holder, 0
		}
		timer := time.NewTimer(waitFor(&r, waits))
		waits++
		select {
		case <-slot.ch:
			end.with("woken", nil)
		case <-timer.C:
			end.with("expired", nil)
		case <-ctx.Done():
			end.with("cancelled", ctx.Err())
		}
		timer.Stop()
		c.waiting.remove(key, slot)
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
	}
}

// loadLeased is the load of a caller that took key's fleet lease in its
// first read (GetOrLease).
func (c *Cache[V]) loadLeased(ctx context.Context, key string, fence local.Fence, token string, load func(context.Context) (V, error), co callOptions) (V, error) {
	if err := c.checkCall(co); err != nil {
		c.release(ctx, key, token, 0)
		var zero V
		return zero, err
	}
	return c.loadAndFill(ctx, key, fence, token, load, co)
}

// release gives back key's lease taken with token (keeping it for hold, a
// back-off) and wakes the replicas that wait for it, even when every
// caller has left.
func (c *Cache[V]) release(ctx context.Context, key, token string, hold time.Duration) {
	c.remote.Release(context.WithoutCancel(ctx), key, token, hold, c.keysPublication(key))
	c.waiting.wake(key) // this replica's own waiters: see waiters
}

// replaceCorrupt loads a key whose value Redis holds but cannot be read,
// under a lease of its own (the value is there, so it cannot be leased in
// place); when another replica holds that lease, the value is loaded and
// cached here only.
func (c *Cache[V]) replaceCorrupt(ctx context.Context, key string, fence local.Fence, token string, load func(context.Context) (V, error), co callOptions) (V, error) {
	leased, err := c.remote.Lease(ctx, key, token)
	if gone := ended(ctx); err != nil && gone != nil {
		c.release(ctx, key, token, 0) // the call may have been sent, and taken it
		var zero V
		return zero, gone
	}
	if err != nil || !leased {
		return c.loadLocalOnly(ctx, key, fence, load, co)
	}
	return c.loadAndFill(ctx, key, fence, token, load, co)
}

// fromRemote serves a value found in Redis: fills the local tier, and
// starts a background refresh when the value is stale or XFetch says so.
func (c *Cache[V]) fromRemote(key string, fence local.Fence, env *remote.Envelope, v V, load func(context.Context) (V, error)) (V, error) {
	now := c.fillLocal(fence, key, v, env, cost(env.Payload), afterMiss)
	if env.Negative {
		var zero V
		return zero, ErrNotFound
	}
	c.refreshIfDue(key, envelopeStamps(env), now, load, tagNames(env.Tags))
	return v, nil
}

// loadAndFill runs the load as the key's lease holder and fills Redis
// (only while the lease holds, waking waiters) and the local tier (only
// while fence holds).
func (c *Cache[V]) loadAndFill(ctx context.Context, key string, fence local.Fence, token string, load func(context.Context) (V, error), co callOptions) (V, error) {
	var zero V
	// The fill must run even when every caller has left (as release does).
	bg := context.WithoutCancel(ctx)
	defer func() {
		// A panic (the codec's, an observer's) on the way: give the lease
		// back at once, so the next caller need not wait it out. (After a
		// fill the lease is gone, and the release finds nothing.)
		if p := recover(); p != nil {
			c.release(bg, key, token, 0)
			panic(p)
		}
	}()
	// The tags' versions are read before the load: a source change whose
	// InvalidateTags lands during the load leaves this value invalid.
	tags, err := c.remote.TagVersions(ctx, co.tags, 0)
	if err != nil {
		c.release(ctx, key, token, 0)
		if err := ended(ctx); err != nil {
			return zero, err // not Redis's failure
		}
		c.remoteFailed("tags", err)
		return c.loadLocalOnly(ctx, key, fence, load, co)
	}
	if err := ctx.Err(); err != nil {
		// Abandoned (flights.abandon), or every caller left before the
		// load began: give the lease back, load nothing.
		c.release(ctx, key, token, 0)
		return zero, err
	}
	v, took, ttl, err := c.callLoader(ctx, key, load)
	if errors.Is(err, ErrNotFound) && (c.opts.NegativeTTL > 0 || ttl > 0) {
		c.fillTombstone(bg, key, fence, token, took, ttl, tags)
		return zero, ErrNotFound
	}
	if err != nil {
		hold := c.opts.LoadBackoff
		if ctx.Err() != nil {
			hold = 0 // nobody waits here any more: hand over at once
		}
		c.release(ctx, key, token, hold)
		return zero, err
	}
	payload, err := c.opts.Codec.Marshal(v)
	if err != nil {
		c.release(ctx, key, token, c.opts.LoadBackoff)
		return zero, fmt.Errorf("%w: encode: %w", ErrCodec, err)
	}
	if len(payload) > c.remote.MaxValueBytes() {
		// Fail open: the callers get what they asked for, uncached.
		c.release(ctx, key, token, c.opts.LoadBackoff)
		c.tooLarge(len(payload))
		return v, nil
	}
	env := c.envelope(payload, took, co.freshFor, c.valueTTL(ttl, co))
	env.Tags = tags
	c.fill(bg, key, fence, token, v, &env, payload)
	return v, nil
}

// loadLocalOnly is the fail-open path: Redis is unreachable (or another
// load holds a corrupt key), so load and cache locally under the fence.
func (c *Cache[V]) loadLocalOnly(ctx context.Context, key string, fence local.Fence, load func(context.Context) (V, error), co callOptions) (V, error) {
	if err := ctx.Err(); err != nil {
		var zero V
		return zero, err // nobody to load for
	}
	v, took, ttl, err := c.callLoader(ctx, key, load)
	if err != nil {
		return v, err
	}
	payload, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return v, fmt.Errorf("%w: encode: %w", ErrCodec, err)
	}
	if len(payload) > c.remote.MaxValueBytes() {
		c.tooLarge(len(payload))
		return v, nil // fail open: served, not cached
	}
	env := c.envelope(payload, took, co.freshFor, c.valueTTL(ttl, co))
	env.Tags = localTags(co.tags)
	c.fillLocal(fence, key, v, &env, cost(payload), afterMiss)
	return v, nil
}

// callLoader runs the loader, turning a panic into ErrLoaderPanic.
// ttl is what the loader set with SetTTL, or 0.
func (c *Cache[V]) callLoader(ctx context.Context, key string, load func(context.Context) (V, error)) (v V, took, ttl time.Duration, err error) {
	c.stats.loads.Add(1)
	ctx, set := withLoadTTL(ctx)
	ctx, end := c.observe(ctx, OpLoad, key, 1)
	start := time.Now()
	defer func() {
		defer func() { endLoad(end, err) }()
		took = time.Since(start)
		c.stats.loadDuration.Observe(took)
		c.observeLoad(took)
		if p := recover(); p != nil {
			lp := loaderPanic(p)
			err = lp
			c.log.Error("loader-panic", "loader panicked", "panic", p, "stack", string(lp.Stack))
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.stats.loadErrors.Add(1)
		}
	}()
	v, err = load(ctx)
	return v, 0, set.of(""), err
}

// carriedOver is the TTL and freshness a refresh keeps from the copy it
// refreshes (0 and freshFor when it keeps none). They are read back from
// Redis, where anything may have written the copy: a TTL no call could
// have set (over limit, the longest of MaxTTL and RemoteTTL: stamps
// another program wrote) is not kept, nor the freshness measured from the
// same stamps, which would otherwise carry on from refresh to refresh.
func carriedOver(env *remote.Envelope, freshFor, limit time.Duration) (time.Duration, time.Duration) {
	ttl := env.TTL()
	if ttl <= 0 || ttl > limit {
		return 0, freshFor
	}
	if env.FreshUntil != 0 {
		if d := time.Duration(env.FreshUntil - env.WrittenAt); d > 0 && d < ttl {
			freshFor = d
		}
	}
	return ttl, freshFor
}

// refresh reloads key in the background, once per replica at a time and,
// through the lease, once per fleet. Its fill publishes an invalidation, so
// every replica drops its stale copy and reads the fresh one. seen is the
// ExpiresAt of the copy being refreshed: every write stamps its own.
func (c *Cache[V]) refresh(key string, load func(context.Context) (V, error), seen int64, tags []string) {
	if load == nil && c.opts.Loader != nil {
		load = func(ctx context.Context) (V, error) { return c.opts.Loader(ctx, key) }
	}
	if load == nil || c.closed.Load() {
		return // nothing to refresh with: the value lives until it expires
	}
	if _, running := c.refreshing.LoadOrStore(key, struct{}{}); running {
		return
	}
	if c.refreshes.Add(1) > int64(c.opts.MaxRefreshes) {
		c.refreshes.Add(-1)
		c.refreshing.Delete(key)
		c.stats.refreshesDeferred.Add(1)
		return
	}
	if !c.startBackground() {
		c.refreshes.Add(-1)
		c.refreshing.Delete(key)
		return
	}
	go func() {
		defer c.background.Done()
		defer c.refreshes.Add(-1)
		defer c.refreshing.Delete(key)
		ctx, cancel := context.WithTimeout(c.life, c.opts.LoadTimeout)
		defer cancel()
		fence := c.local.Fence(key)
		token := remote.NewToken()
		if leased, err := c.remote.Lease(ctx, key, token); err != nil || !leased {
			if err != nil && ended(ctx) != nil {
				// Close cut the call short; it may have been sent.
				c.remote.Release(context.WithoutCancel(ctx), key, token, 0, remote.Publication{})
			}
			return // another replica refreshes; its fill invalidates our copy
		}
		// Another replica's refresh (or a write) may have landed just before
		// we took the lease, its invalidation not yet here: then Redis holds
		// another write than the one we are refreshing. Use it; don't reload.
		// The refreshed copy's TTL and freshness (WithTTL's, WithFreshFor's
		// or the loader's) carry over to its refresh.
		var keepTTL time.Duration
		freshFor := c.opts.FreshFor
		if env, err := c.remote.Get(ctx, key); err == nil && !env.Negative {
			if env.ExpiresAt != seen {
				c.remote.Release(ctx, key, token, 0, remote.Publication{})
				if v, err := c.decodeEnvelope(&env); err == nil {
					c.fillLocal(fence, key, v, &env, cost(env.Payload), overHeld)
				}
				return
			}
			keepTTL, freshFor = carriedOver(&env, freshFor, max(MaxTTL, c.opts.RemoteTTL))
		}
		versions, err := c.remote.TagVersions(ctx, tags, 0)
		if err != nil {
			c.remote.Release(ctx, key, token, c.opts.LoadBackoff, c.keysPublication(key))
			return
		}
		v, took, ttl, err := c.callLoader(ctx, key, load)
		if err != nil {
			// Keep serving the stale value; let the fleet retry after the
			// back-off. (A refresh finding the key gone leaves it to expire.)
			c.remote.Release(ctx, key, token, c.opts.LoadBackoff, c.keysPublication(key))
			return
		}
		payload, err := c.opts.Codec.Marshal(v)
		if err != nil {
			c.remote.Release(ctx, key, token, c.opts.LoadBackoff, c.keysPublication(key))
			return
		}
		if ttl > 0 {
			ttl = c.jitter(ttl)
		} else {
			ttl = keepTTL // 0 when unknown: RemoteTTL
		}
		env := c.envelope(payload, took, freshFor, ttl)
		env.Tags = versions
		stored, err := c.remote.Fill(ctx, key, token, &env, remote.FillOptions{TTL: c.ttlOf(&env), Publication: c.keysPublication(key), Always: true})
		if err == nil && stored {
			c.stats.refreshes.Add(1)
			c.fillLocal(fence, key, v, &env, cost(payload), overHeld)
		}
	}()
}
