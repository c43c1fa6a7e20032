package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// entryOverhead is the cost charged per local entry on top of its encoded
// size: key, entry header and ristretto's bookkeeping, roughly.
const entryOverhead = 96

// Cache is a two-tier cache of values of type V for one namespace. Its
// methods are safe for concurrent use.
type Cache[V any] struct {
	opts    Options
	origin  uint64
	channel string
	local   *local.Tier[V]
	remote  *remote.Store
	bus     *coherence.Bus
	gets    flights[V]
	loads   flights[V]
	closed  atomic.Bool
	close   sync.Once
	stats   counters
}

// New builds a cache and subscribes it to its namespace's invalidations. It
// returns once the subscription is confirmed, so no write that completes
// after New returns can be missed; if ctx ends first it fails.
func New[V any](ctx context.Context, opts Options) (*Cache[V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	lt, err := local.New[V](local.Options{MaxCost: opts.LocalMaxCost, TTLJitter: opts.TTLJitter})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	rs, err := remote.New(remote.Options{
		Client:        opts.Client,
		Namespace:     opts.Namespace,
		TTL:           opts.RemoteTTL,
		TTLJitter:     opts.TTLJitter,
		LeaseTTL:      opts.LeaseTTL,
		MaxValueBytes: opts.MaxValueBytes,
		CompressAbove: opts.CompressAbove,
		Timeout:       opts.RemoteTimeout,
	})
	if err != nil {
		lt.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c := &Cache[V]{
		opts:    opts,
		origin:  rand.Uint64() | 1,
		channel: opts.Namespace + ":inv",
		local:   lt,
		remote:  rs,
	}
	c.bus, err = coherence.Subscribe(ctx, coherence.Options{
		Client:       opts.Client,
		Channel:      c.channel,
		Namespace:    opts.Namespace,
		Origin:       c.origin,
		OnMessage:    c.applyInvalidation,
		OnGap:        c.applyGap,
		QueueSize:    opts.InvalidationQueue,
		PingInterval: opts.PingInterval,
	})
	if err != nil {
		lt.Close()
		return nil, fmt.Errorf("%w: %w", ErrRemote, err)
	}
	return c, nil
}

// Close stops the subscription and releases the local tier. Calls after
// Close return ErrClosed. Close is idempotent; the caller's rueidis client
// stays open.
func (c *Cache[V]) Close() {
	c.close.Do(func() {
		c.closed.Store(true)
		c.bus.Close()
		c.local.Close()
	})
}

// checkKey validates a key. The local-hit path checks nothing else: a
// closed cache's local tier always misses, and the miss path checks closed.
func (c *Cache[V]) checkKey(key string) error {
	if key == "" || len(key) > c.opts.MaxKeyBytes {
		return fmt.Errorf("%w: length %d not in 1–%d", ErrInvalidKey, len(key), c.opts.MaxKeyBytes)
	}
	return nil
}

// check validates a key for a call that goes beyond the local tier.
func (c *Cache[V]) check(key string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	return c.checkKey(key)
}

// Get returns key's value from the local tier, or from Redis (filling the
// local tier), or ErrNotFound. A local hit does no I/O and allocates
// nothing. The value returned is shared with other readers: treat it as
// immutable.
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	return c.lookup(ctx, key, nil)
}

// GetOrLoad returns key's value from the local tier, Redis, or load, in that
// order. At most one load per key runs at a time on this replica; callers
// wait for it and leave when their ctx ends. A load that started before a
// Set or Delete of the key never overwrites it, in Redis or locally. If
// Redis fails, the loaded value is still returned (fail open). A loader
// returning ErrNotFound makes GetOrLoad return ErrNotFound.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load func(context.Context) (V, error)) (V, error) {
	return c.lookup(ctx, key, load)
}

// lookup is Get (load == nil) and GetOrLoad. Past a local miss, one flight
// per key runs the rest; the flight closure is made only then, so a hit
// allocates nothing.
func (c *Cache[V]) lookup(ctx context.Context, key string, load func(context.Context) (V, error)) (V, error) {
	var zero V
	if err := c.checkKey(key); err != nil {
		return zero, err
	}
	if e, ok := c.local.Get(key); ok {
		c.stats.localHits.inc()
		return c.hit(e)
	}
	if c.closed.Load() {
		return zero, ErrClosed
	}
	group := &c.gets
	if load != nil {
		group = &c.loads
	}
	return group.do(ctx, key, func() (V, error) {
		fctx, cancel := c.flightContext(ctx)
		defer cancel()
		// The fence is taken before the re-check and the Redis read, so an
		// invalidation that lands meanwhile refuses the fill.
		fence := c.local.Fence(key)
		if e, ok := c.local.Get(key); ok {
			c.stats.localHits.inc()
			return c.hit(e)
		}
		c.stats.localMisses.Add(1)
		if load == nil {
			return c.readThrough(fctx, key, fence)
		}
		return c.readOrLoad(fctx, key, fence, load)
	})
}

func (c *Cache[V]) hit(e local.Entry[V]) (V, error) {
	if e.Negative {
		var zero V
		return zero, ErrNotFound
	}
	return e.Value, nil
}

// flightContext is the context of a fetch shared by several callers: the
// first caller's values, none of its cancellation, bounded by LoadTimeout.
func (c *Cache[V]) flightContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.opts.LoadTimeout)
}

// readThrough reads key from Redis and fills the local tier under fence.
func (c *Cache[V]) readThrough(ctx context.Context, key string, fence local.Fence) (V, error) {
	var zero V
	env, err := c.remote.Get(ctx, key)
	switch {
	case errors.Is(err, remote.ErrMiss):
		c.stats.remoteMisses.Add(1)
		return zero, ErrNotFound
	case errors.Is(err, remote.ErrCorrupt):
		c.stats.corrupt.Add(1)
		return zero, ErrNotFound
	case err != nil:
		c.stats.remoteErrors.Add(1)
		return zero, fmt.Errorf("%w: get: %w", ErrRemote, err)
	}
	v, err := c.decode(env.Payload)
	if err != nil {
		c.stats.corrupt.Add(1)
		return zero, ErrNotFound
	}
	c.stats.remoteHits.Add(1)
	c.local.Fill(fence, key, local.Entry[V]{Value: v, FreshUntil: env.FreshUntil}, cost(env.Payload), c.opts.LocalTTL)
	return v, nil
}

// readOrLoad reads key from Redis, taking its fill lease on a miss, and
// otherwise loads it and fills Redis (while the lease holds) and the local
// tier (while fence holds).
func (c *Cache[V]) readOrLoad(ctx context.Context, key string, fence local.Fence, load func(context.Context) (V, error)) (V, error) {
	var zero V
	token := remote.NewToken()
	r, err := c.remote.GetOrLease(ctx, key, token)
	remoteUp := err == nil
	if err != nil {
		c.stats.remoteErrors.Add(1)
	}
	if r.Found {
		v, err := c.decode(r.Envelope.Payload)
		if err == nil {
			c.stats.remoteHits.Add(1)
			c.local.Fill(fence, key, local.Entry[V]{Value: v, FreshUntil: r.Envelope.FreshUntil}, cost(r.Envelope.Payload), c.opts.LocalTTL)
			return v, nil
		}
		r.Corrupt = err
	}
	leased := r.Leased
	if r.Corrupt != nil {
		// Treat it as a miss, and take the lease so the load replaces it.
		c.stats.corrupt.Add(1)
		leased, _ = c.remote.Lease(ctx, key, token)
	} else if remoteUp {
		c.stats.remoteMisses.Add(1)
	}

	v, loadTime, err := c.callLoader(ctx, load)
	if err != nil {
		if leased {
			c.remote.Release(ctx, key, token)
		}
		return zero, err
	}
	payload, err := c.opts.Codec.Marshal(v)
	if err != nil {
		if leased {
			c.remote.Release(ctx, key, token)
		}
		return zero, fmt.Errorf("%w: encode: %w", ErrCodec, err)
	}
	if leased {
		env := remote.Envelope{WrittenAt: time.Now().UnixNano(), LoadMicros: uint32(min(loadTime.Microseconds(), 1<<32-1)), Payload: payload}
		stored, err := c.remote.Fill(ctx, key, token, &env)
		switch {
		case errors.Is(err, remote.ErrTooLarge):
			c.remote.Release(ctx, key, token)
			return zero, fmt.Errorf("%w: %w", ErrValueTooLarge, err)
		case err != nil:
			c.stats.remoteErrors.Add(1) // fail open: serve the value, cache it locally
		case !stored:
			// A write landed while we loaded: what we loaded may be older
			// than it. Serve it to the callers who asked before, keep it
			// out of both tiers.
			c.stats.fillsVoided.Add(1)
			return v, nil
		}
	} else if len(payload) > c.remote.MaxValueBytes() {
		return zero, fmt.Errorf("%w: %d bytes over the %d limit", ErrValueTooLarge, len(payload), c.remote.MaxValueBytes())
	}
	c.local.Fill(fence, key, local.Entry[V]{Value: v}, cost(payload), c.opts.LocalTTL)
	return v, nil
}

// callLoader runs the loader, turning a panic into ErrLoaderPanic.
func (c *Cache[V]) callLoader(ctx context.Context, load func(context.Context) (V, error)) (v V, took time.Duration, err error) {
	c.stats.loads.Add(1)
	start := time.Now()
	defer func() {
		took = time.Since(start)
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, p)
		}
		if err != nil {
			c.stats.loadErrors.Add(1)
		}
	}()
	v, err = load(ctx)
	return v, 0, err
}

func (c *Cache[V]) decode(payload []byte) (V, error) {
	var v V
	if err := c.opts.Codec.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("%w: decode: %w", ErrCodec, err)
	}
	return v, nil
}

func cost(payload []byte) int64 { return int64(len(payload)) + entryOverhead }

// Set writes v through: to Redis and, in the same round trip, the
// invalidation of every other replica's copy; then to this replica's local
// tier. If Redis fails, Set returns an error wrapping ErrRemote and still
// drops the local copy.
func (c *Cache[V]) Set(ctx context.Context, key string, v V) error {
	if err := c.check(key); err != nil {
		return err
	}
	payload, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: encode: %w", ErrCodec, err)
	}
	// The local copy is decoded from the payload, so later changes the
	// caller makes to v (a pointer, slice or map) do not reach the cache.
	own, err := c.decode(payload)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	fence := c.local.Fence(key)
	msg := coherence.Message{Origin: c.origin, Namespace: c.opts.Namespace, Kind: coherence.KindKeys, Keys: []string{key}, PublishedAt: now}
	err = c.remote.Set(ctx, key, &remote.Envelope{WrittenAt: now, Payload: payload}, c.publication(&msg))
	if err != nil {
		c.local.Invalidate(key)
		if errors.Is(err, remote.ErrTooLarge) {
			return fmt.Errorf("%w: %w", ErrValueTooLarge, err)
		}
		c.stats.remoteErrors.Add(1)
		return fmt.Errorf("%w: set: %w", ErrRemote, err)
	}
	c.stats.published.Add(1)
	c.local.Replace(fence, key, local.Entry[V]{Value: own}, cost(payload), c.opts.LocalTTL)
	return nil
}

// maxKeysPerMessage bounds one Delete script and its message.
const maxKeysPerMessage = 512

// Delete removes keys from Redis and invalidates them on every replica.
// Keys are sent in batches; an error wraps ErrRemote and the local copies
// are dropped regardless.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := c.check(k); err != nil {
			return err
		}
	}
	var errs []error
	for start := 0; start < len(keys); start += maxKeysPerMessage {
		batch := keys[start:min(start+maxKeysPerMessage, len(keys))]
		msg := coherence.Message{Origin: c.origin, Namespace: c.opts.Namespace, Kind: coherence.KindKeys, Keys: batch, PublishedAt: time.Now().UnixNano()}
		err := c.remote.Delete(ctx, batch, c.publication(&msg))
		// After Redis, not before: a local fill that read the old value
		// meanwhile is refused by the bumped fence.
		c.local.Invalidate(batch...)
		if err != nil {
			c.stats.remoteErrors.Add(1)
			errs = append(errs, err)
			continue
		}
		c.stats.published.Add(1)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: delete: %w", ErrRemote, errors.Join(errs...))
	}
	return nil
}

func (c *Cache[V]) publication(m *coherence.Message) remote.Publication {
	return remote.Publication{Channel: c.channel, Message: m.Encode()}
}

// applyInvalidation runs on the bus goroutine for every peer's message.
func (c *Cache[V]) applyInvalidation(m coherence.Message) {
	c.stats.received.Add(1)
	c.stats.lag.observe(time.Duration(time.Now().UnixNano() - m.PublishedAt))
	switch m.Kind {
	case coherence.KindKeys:
		c.local.Invalidate(m.Keys...)
	default:
		// Flush-namespace, and any kind this version does not know: the
		// safe answer is to drop everything.
		c.local.Flush()
		c.stats.flushes(flushReasonMessage).Add(1)
	}
}

// applyGap runs on the bus goroutine when invalidations may have been lost.
func (c *Cache[V]) applyGap(reason coherence.GapReason) {
	c.local.Flush()
	c.stats.flushes(string(reason)).Add(1)
}
