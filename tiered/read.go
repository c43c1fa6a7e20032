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

// lookup is Get (load == nil) and GetOrLoad. Past a local miss that may
// load, one flight per key runs the rest; closures are made only then, so
// a hit allocates nothing.
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
	if load == nil && c.opts.Loader == nil {
		return c.read(ctx, key)
	}
	if load == nil {
		load = func(ctx context.Context) (V, error) { return c.opts.Loader(ctx, key) }
	}
	// The fence is taken before the Redis read, so an invalidation that
	// lands meanwhile refuses the fill, and keeps later callers out of this
	// flight.
	fence := c.local.Fence(key)
	return c.loads.lead(ctx, key, fence, c.opts.LoadTimeout, func(ctx context.Context) (V, func(context.Context) (V, error), error) {
		return c.readOrLease(ctx, key, fence, load, opts)
	})
}

// read is Get's miss without a loader: one plain read, the local fill
// fenced by the local generation taken before it.
func (c *Cache[V]) read(ctx context.Context, key string) (V, error) {
	var zero V
	fence := c.local.Fence(key)
	rctx, end := c.observe(ctx, OpRedisRead, key, 1)
	env, err := c.remote.Get(rctx, key)
	endRead(end, err)
	if err == nil {
		v, derr := c.decodeEnvelope(&env)
		if derr == nil {
			c.stats.remoteHits.Add(1)
			return c.fromRemote(key, fence, &env, v, nil)
		}
		if errors.Is(derr, ErrTypeClash) {
			return zero, c.typeClash(key, derr)
		}
		err = derr
	}
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

// readOrLease is the first step of a miss that may load, run by the
// first caller of the key's flight on its own goroutine while this
// replica's other callers of the key wait for it. Most misses are
// answered here by Redis in one plain round trip, the local fill fenced by
// the local generation taken before it: GetOrLease (SET of a lease marker
// with NX and GET) returns the value when Redis has one and takes the
// key's fleet-wide fill lease when it has none. Otherwise it returns the
// rest of the miss (the load, or waiting for another replica's) for the
// flight to run on a worker.
func (c *Cache[V]) readOrLease(ctx context.Context, key string, fence local.Fence, load func(context.Context) (V, error), opts []CallOption) (V, func(context.Context) (V, error), error) {
	var zero V
	// (No second look at the local tier: on a large keyspace a ristretto
	// Get costs a cache miss or two, and a flight that filled the key just
	// before this one began is rare.)
	token := remote.LeaseToken(c.expectedLoad())
	rctx, end := c.observe(ctx, OpRedisRead, key, 1)
	r, err := c.remote.GetOrLease(rctx, key, token)
	endLease(end, &r, err)
	callFailed := err != nil
	switch {
	case err != nil:
	case r.Found:
		v, derr := c.decodeEnvelope(&r.Envelope)
		if derr == nil {
			c.stats.remoteHits.Add(1)
			v, err := c.fromRemote(key, fence, &r.Envelope, v, load)
			return v, nil, err
		}
		if errors.Is(derr, ErrTypeClash) {
			return zero, nil, c.typeClash(key, derr)
		}
		// Counted by the lease round, which finds it again.
		err = derr
	case r.Corrupt != nil:
		err = r.Corrupt
	default: // leased, or another replica holds the lease
		err = remote.ErrMiss
	}
	if err := ended(ctx); err != nil {
		// A call the ctx cut short may have been sent, and taken the
		// lease, all the same: give it back (a release is the token's,
		// and does nothing if the lease is not).
		if r.Leased || callFailed {
			c.release(ctx, key, token, 0)
		}
		return zero, nil, err
	}
	co := c.callOptions(opts)
	if r.Leased {
		c.stats.remoteMisses.Add(1)
		return zero, func(fctx context.Context) (V, error) {
			return c.loadLeased(fctx, key, fence, token, load, co)
		}, nil
	}
	// Redis did not answer: fail open at once, without a second call to
	// time out.
	unreachable := !errors.Is(err, remote.ErrMiss) && !errors.Is(err, remote.ErrCorrupt) && !errors.Is(err, ErrCodec)
	if unreachable {
		c.remoteFailed("get", err)
	}
	return zero, func(fctx context.Context) (V, error) {
		if unreachable {
			if e, ok := c.heldHit(key); ok {
				return c.hit(e)
			}
			return c.loadLocalOnly(fctx, key, fence, load, co)
		}
		return c.readOrLoad(fctx, key, fence, load, co)
	}, nil
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
	return c.decode(e)
}

// decode decodes e's payload (sharing it when it may: Envelope.Unmarshal).
func (c *Cache[V]) decode(e *remote.Envelope) (V, error) {
	var v V
	if err := e.Unmarshal(c.opts.Codec, &v); err != nil {
		return v, fmt.Errorf("%w: decode: %w", ErrCodec, err)
	}
	return v, nil
}

// cost is the heap a decoded value is taken to hold: its encoded size (the
// local tier adds its own per-entry overhead).
func cost(payload []byte) int64 { return int64(len(payload)) }
