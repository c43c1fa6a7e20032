package tiered

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// fill writes a loaded value to Redis while the lease holds (waking the
// replicas that wait), then to the local tier while fence holds.
func (c *Cache[V]) fill(ctx context.Context, key string, fence local.Fence, token string, v V, env *remote.Envelope, payload []byte) {
	fctx, end := c.observe(ctx, OpFill, key, 1)
	// Its waiters' wake-up is built by the store, only if one waits.
	stored, err := c.remote.Fill(fctx, key, token, env, remote.FillOptions{TTL: c.ttlOf(env)})
	c.waiting.wake(key) // this replica's own waiters: see waiters
	endFill(end, stored, err)
	switch {
	case err != nil:
		c.remoteFailed("fill", err) // fail open: cache it locally
		if remote.Refused(err) {
			// Refused (out of memory, read-only, busy; or before it was
			// sent): the lease is still ours, and the replicas that wait
			// for it would wait it out. Redis answers, so give it back
			// (a release needs no memory). After a timeout it is left to
			// expire: Redis is not answering.
			c.release(ctx, key, token, 0)
		}
	case !stored:
		// A write landed while we loaded: what we loaded may be older
		// than it. It was served to the callers who asked before; it is
		// kept out of both tiers.
		c.stats.fillsVoided.Add(1)
		return
	}
	c.fillLocal(fence, key, v, env, cost(payload), afterMiss)
}

// tooLarge counts (and logs) a loaded value served uncached because its
// encoding is over Options.MaxValueBytes.
func (c *Cache[V]) tooLarge(n int) {
	c.stats.tooLarge.Add(1)
	c.log.Warn("too-large", "loaded value over MaxValueBytes: returned to its callers, not cached", "bytes", n, "limit", c.remote.MaxValueBytes())
}

// fillTombstone remembers that the loader found nothing.
// loaderTTL is what the loader set with SetTTL, or 0 for NegativeTTL.
func (c *Cache[V]) fillTombstone(ctx context.Context, key string, fence local.Fence, token string, took, loaderTTL time.Duration, tags []remote.TagVersion) {
	env := c.envelope(nil, took, 0, c.tombstoneTTL(loaderTTL))
	env.Negative, env.Tags = true, tags
	stored, err := c.remote.Fill(ctx, key, token, &env, remote.FillOptions{TTL: c.ttlOf(&env)})
	c.waiting.wake(key)
	if remote.Refused(err) {
		c.release(ctx, key, token, 0) // as fill does
	}
	if err == nil && stored {
		var zero V
		c.fillLocal(fence, key, zero, &env, 0, afterMiss)
	}
}

// tagNames are the names of tags.
func tagNames(tags []remote.TagVersion) []string {
	if len(tags) == 0 {
		return nil
	}
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Tag
	}
	return out
}

// localTags are tags for a value cached only locally: the local tier needs
// their names, Redis never sees their versions.
func localTags(tags []string) []remote.TagVersion {
	if len(tags) == 0 {
		return nil
	}
	out := make([]remote.TagVersion, len(tags))
	for i, t := range tags {
		out[i].Tag = t
	}
	return out
}

// envelope stamps a value written now: fresh for freshFor (0: until it
// expires), expiring after ttl (valueTTL or tombstoneTTL, jittered there;
// 0: RemoteTTL with jitter).
func (c *Cache[V]) envelope(payload []byte, took time.Duration, freshFor, ttl time.Duration) remote.Envelope {
	now := time.Now()
	if ttl <= 0 {
		ttl = c.jitter(c.opts.RemoteTTL)
	}
	e := remote.Envelope{
		WrittenAt:  now.UnixNano(),
		ExpiresAt:  now.Add(ttl).UnixNano(),
		LoadMicros: uint32(min(took.Microseconds(), 1<<32-1)),
		Type:       c.typeID,
		Payload:    payload,
	}
	if freshFor > 0 && freshFor < ttl {
		e.FreshUntil = now.Add(freshFor).UnixNano()
	}
	return e
}

// ttlOf is the Redis TTL an envelope was stamped with.
func (c *Cache[V]) ttlOf(e *remote.Envelope) time.Duration {
	return max(e.TTL(), time.Millisecond)
}

// jitter shortens d by a random fraction in [0, TTLJitter), so entries
// filled together do not expire together. It is the only place TTLs are
// jittered: Redis copies get it through the envelope's expiry, local
// copies in fillLocal.
func (c *Cache[V]) jitter(d time.Duration) time.Duration {
	if j := c.opts.TTLJitter; j > 0 {
		d -= time.Duration(rand.Float64() * j * float64(d))
	}
	return d
}

// keysPublication is the invalidation of keys, as published with a write.
func (c *Cache[V]) keysPublication(keys ...string) remote.Publication {
	return keysPublication(c.origin, c.opts.Namespace, c.channel, keys...)
}

func keysPublication(origin uint64, namespace, channel string, keys ...string) remote.Publication {
	m := coherence.Message{Origin: origin, Namespace: namespace, Kind: coherence.KindKeys, Keys: keys, PublishedAt: time.Now().UnixNano()}
	return remote.Publication{Channel: channel, Message: m.Encode()}
}
