package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Get returns key's value from the local tier, or from Redis (filling the
// local tier), or from Options.Loader when one is set, or ErrNotFound. A
// local hit does no I/O and allocates nothing. The value returned is shared
// with other readers: treat it as immutable.
func (c *Cache[V]) Get(ctx context.Context, key string, opts ...CallOption) (V, error) {
	return c.lookup(ctx, key, nil, opts)
}

// GetOrLoad returns key's value from the local tier, Redis, or load, in that
// order. One load per key runs at a time in the whole fleet: the replica
// that takes the key's lease loads, the others wait and are woken when the
// value lands. Callers leave when their ctx ends; a load nobody waits for
// any more is cancelled and another replica takes over. A load that started
// before a Set or Delete of the key is cached in neither tier. If Redis
// fails, the loaded value is still returned (fail open). A loader returning
// ErrNotFound makes GetOrLoad return ErrNotFound and leaves a tombstone for
// Options.NegativeTTL.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (V, error), opts ...CallOption) (V, error) {
	return c.lookup(ctx, key, load, opts)
}

// lookup is Get (load == nil) and GetOrLoad. Past a local miss, one flight
// per key runs the rest; closures are made only then, so a hit allocates
// nothing.
func (c *Cache[V]) lookup(ctx context.Context, key string, load func(context.Context) (V, error), opts []CallOption) (V, error) {
	var zero V
	if err := c.checkKey(key); err != nil {
		return zero, err
	}
	if c.sampler != nil && rand.Uint32()&c.sampleMask == 0 {
		c.sampler.Sample(key)
	}
	if e, ok := c.local.Get(key); ok {
		c.stats.localHits.inc()
		if e.RefreshFrom != 0 {
			c.considerRefresh(key, e, load)
		}
		return c.hit(e)
	}
	if c.closed.Load() {
		return zero, ErrClosed
	}
	c.stats.localMisses.Add(1)
	// Most misses are answered by Redis in one plain round trip, the local
	// fill fenced by the local generation taken before it, with no flight:
	// a GET or, when a load may follow, GetOrLease (SET of a lease marker
	// with NX and GET), which returns the value when Redis has one and
	// takes the key's fleet-wide fill lease when it has none. Waiting for
	// another replica's load, and a flight shared by this replica's
	// callers, only come when Redis has no value to give.
	fence := c.local.Fence(key)
	loading := load != nil || c.opts.Loader != nil
	var env remote.Envelope
	var err error
	var token string
	leased := false
	rctx, end := c.observe(ctx, OpRedisRead, key, 1)
	if loading {
		token = remote.LeaseToken(c.expectedLoad())
		var r remote.LeaseResult
		r, err = c.remote.GetOrLease(rctx, key, token)
		endLease(end, &r, err)
		switch {
		case err != nil:
		case r.Found:
			env = r.Envelope
		case r.Corrupt != nil:
			err = r.Corrupt
		default: // leased, or another replica holds the lease
			leased, err = r.Leased, remote.ErrMiss
		}
	} else {
		env, err = c.remote.Get(rctx, key)
		endRead(end, err)
	}
	if err == nil {
		v, derr := c.decodeEnvelope(&env)
		if derr == nil {
			c.stats.remoteHits.Add(1)
			return c.fromRemote(key, fence, &env, v, load)
		}
		if errors.Is(derr, ErrTypeClash) {
			return zero, c.typeClash(key, derr)
		}
		err = derr
	}
	if !loading {
		switch {
		case errors.Is(err, remote.ErrCorrupt), errors.Is(err, ErrCodec):
			c.corrupt(err)
			return zero, ErrNotFound
		case errors.Is(err, remote.ErrMiss):
			c.stats.remoteMisses.Add(1)
			return zero, ErrNotFound
		case ctx.Err() != nil:
			return zero, ctx.Err()
		}
		c.remoteFailed("get", err)
		if e, ok := c.heldHit(key); ok {
			return c.hit(e)
		}
		return zero, fmt.Errorf("%w: get: %w", ErrRemote, err)
	}
	if ctx.Err() != nil {
		if leased {
			c.release(ctx, key, token, 0)
		}
		return zero, ctx.Err()
	}
	if load == nil {
		load = func(ctx context.Context) (V, error) { return c.opts.Loader(ctx, key) }
	}
	if leased {
		c.stats.remoteMisses.Add(1)
		return c.loads.join(ctx, key, c.opts.LoadTimeout, func(fctx context.Context) (V, error) {
			return c.loadLeased(fctx, key, fence, token, load, c.callOptions(opts))
		}, func() {
			// This replica is already fetching key, waiting for the lease
			// just taken here: give it back, which wakes that fetch to
			// take it.
			c.release(ctx, key, token, 0)
		})
	}
	// A corrupt value is counted by the lease round, which finds it again.
	// Redis did not answer: fail open at once, without a second call to
	// time out.
	unreachable := err != nil && !errors.Is(err, remote.ErrMiss) && !errors.Is(err, remote.ErrCorrupt) && !errors.Is(err, ErrCodec)
	if unreachable {
		c.remoteFailed("get", err)
	}
	return c.loads.do(ctx, key, c.opts.LoadTimeout, func(fctx context.Context) (V, error) {
		// The fence is taken before the re-check and the Redis read, so an
		// invalidation that lands meanwhile refuses the fill.
		fence := c.local.Fence(key)
		if e, ok := c.local.Get(key); ok {
			return c.hit(e)
		}
		if unreachable {
			if e, ok := c.heldHit(key); ok {
				return c.hit(e)
			}
			return c.loadLocalOnly(fctx, key, fence, load, c.callOptions(opts))
		}
		return c.readOrLoad(fctx, key, fence, load, c.callOptions(opts))
	})
}

// heldHit fails open for a held local tier. A hold (the subscription is
// lost, or a gap is being dealt with) sends reads to Redis, because the
// local copy may have missed an invalidation; when Redis does not answer
// either, the local copy is served, as it would be without the hold
// (a replica cut off from Redis keeps serving its local tier).
func (c *Cache[V]) heldHit(key string) (*local.Entry[V], bool) {
	if !c.local.Held() {
		return nil, false
	}
	e, ok := c.local.GetDespiteHold(key)
	if ok {
		c.stats.localHits.inc()
	}
	return e, ok
}

func (c *Cache[V]) hit(e *local.Entry[V]) (V, error) {
	if e.Negative {
		c.stats.negativeHits.Add(1)
		var zero V
		return zero, ErrNotFound
	}
	return e.Value, nil
}

// decodeEnvelope decodes a value read from Redis; a tombstone has no
// payload and decodes to the zero value.
func (c *Cache[V]) decodeEnvelope(e *remote.Envelope) (V, error) {
	var zero V
	if e.Negative {
		return zero, nil
	}
	if err := c.checkType(e); err != nil {
		return zero, err
	}
	return c.decode(e.Payload)
}

func (c *Cache[V]) decode(payload []byte) (V, error) {
	var v V
	if err := c.opts.Codec.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("%w: decode: %w", ErrCodec, err)
	}
	return v, nil
}

// cost is the heap a decoded value is taken to hold: its encoded size (the
// local tier adds its own per-entry overhead).
func cost(payload []byte) int64 { return int64(len(payload)) }
