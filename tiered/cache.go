package tiered

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/internal/ratelog"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Cache is a two-tier cache of values of type V for one namespace. Its
// methods are safe for concurrent use.
type Cache[V any] struct {
	sampler    Sampler // nil: no sampling
	sampleMask uint32
	log        *ratelog.Logger
	opts       Options[V]
	origin     uint64
	channel    string
	local      *local.Tier[V]
	remote     *remote.Store
	bus        transport

	loads      flights[V]
	waiting    waiters
	refreshing sync.Map     // keys with a background refresh running here
	loadEWMA   atomic.Int64 // recent load time, ns (expectedLoad)
	queueGuard queueGuard

	// life ends at Close; background work (refreshes, second deletes)
	// runs under it and is waited for.
	life       context.Context
	endLife    context.CancelFunc
	background sync.WaitGroup

	closed atomic.Bool
	close  sync.Once
	stats  counters
}

// New builds a cache and subscribes it to its namespace's invalidations. It
// returns once the subscription is confirmed, so no write that completes
// after New returns can be missed. It fails (ErrRemote) if ctx ends first,
// or after DefaultStartTimeout when ctx has no deadline, with the last
// attempt's error; and at once, with Redis's reply (NOPERM …), if Redis
// refuses a command the transport needs: see the ACL in docs/operations.md.
func New[V any](ctx context.Context, opts Options[V]) (*Cache[V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	opts.setDefaults()
	log := ratelog.New(opts.Logger, opts.LogEvery, "cache", opts.Namespace)
	lt, err := local.New[V](local.Options{MaxCost: opts.LocalMaxCost, MaxEntries: opts.LocalMaxEntries})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	// The store is built before the cache it reports to.
	onBreaker := func(from, to string) {}
	onGeneration := func(remote.GenerationChange) {}
	var msgOrigin uint64 = rand.Uint64() | 1
	rs, err := remote.New(remote.Options{
		Client:             opts.Client,
		Namespace:          opts.Namespace,
		TTL:                opts.RemoteTTL, // jittered per write here, so envelopes know their expiry
		LeaseTTL:           opts.LeaseTTL,
		MaxValueBytes:      opts.MaxValueBytes,
		CompressAbove:      opts.CompressAbove,
		Timeout:            opts.RemoteTimeout,
		BreakerThreshold:   opts.BreakerThreshold,
		BreakerCooldown:    opts.BreakerCooldown,
		OnBreakerChange:    func(from, to string) { onBreaker(from, to) },
		InvalidationLog:    logSize(&opts),
		InvalidationLogAge: opts.InvalidationLogAge,
		WaitReplicas:       opts.WaitReplicas,
		WaitTimeout:        opts.WaitTimeout,
		GenerationMessage:  func(value string) remote.Publication { return generationPublication(msgOrigin, opts.Namespace, value) },
		OnGeneration:       func(g remote.GenerationChange) { onGeneration(g) },
		Warn:               func(kind, msg string, err error) { log.Warn(kind, msg, "err", err) },
	})
	if err != nil {
		lt.Close()
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c := &Cache[V]{
		sampler:    opts.Sampler,
		sampleMask: uint32(opts.SampleEvery - 1),
		log:        log,
		opts:       opts,
		origin:     msgOrigin,
		channel:    opts.Namespace + ":inv",
		local:      lt,
		remote:     rs,
	}
	c.stats.localHits.init()
	onBreaker = c.breakerChanged
	onGeneration = c.generationMoved
	c.life, c.endLife = context.WithCancel(context.Background())
	c.bus, err = c.startTransport(ctx)
	if err == nil {
		// Subscribed first, so a generation bump from now on is heard.
		_, err = rs.Settle(ctx)
	}
	if err != nil {
		c.endLife()
		if c.bus != nil {
			c.bus.Close()
		}
		lt.Close()
		// The transport checks its options before any I/O (on a Cluster,
		// TransportResumable needs pings and a long enough
		// InvalidationLogAge).
		if errors.Is(err, coherence.ErrInvalidOptions) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		return nil, fmt.Errorf("%w: start: %w", ErrRemote, err)
	}
	if p := opts.PingInterval; p >= 0 {
		c.background.Add(1)
		go c.watchGeneration(pingEvery(p))
	}
	return c, nil
}

// Namespace is the cache's namespace.
func (c *Cache[V]) Namespace() string { return c.opts.Namespace }

// WaitLocal blocks until every local insert made so far is applied.
// ristretto applies inserts through a bounded buffer and drops what does
// not fit, so a bulk preload (package warmup) waits between batches.
func (c *Cache[V]) WaitLocal() { c.local.Wait() }

// ScanPattern is the Redis SCAN MATCH pattern of this namespace's values
// whose keys match glob (Redis glob syntax); KeyOf maps what SCAN returns
// back to cache keys.
func (c *Cache[V]) ScanPattern(glob string) string { return c.remote.ValueKey(glob) }

// KeyOf returns the cache key of a Redis key matched by ScanPattern.
func (c *Cache[V]) KeyOf(redisKey string) (string, bool) { return c.remote.KeyOf(redisKey) }

// Close stops the subscription and background refreshes and releases the
// local tier. Calls after Close return ErrClosed. Close is idempotent; the
// caller's rueidis client stays open.
func (c *Cache[V]) Close() {
	c.close.Do(func() {
		c.closed.Store(true)
		c.endLife()
		c.background.Wait()
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
	// Most misses are answered by Redis: one plain GET, its fill fenced by
	// the local generation taken before it, with no flight and no lease.
	// The lease script, and a flight shared by this replica's callers,
	// only come when Redis has no value to give.
	fence := c.local.Fence(key)
	env, err := c.remote.Get(ctx, key)
	if err == nil {
		v, derr := c.decodeEnvelope(&env)
		if derr == nil {
			c.stats.remoteHits.Add(1)
			return c.fromRemote(key, fence, &env, v, load)
		}
		err = derr
	}
	if load == nil && c.opts.Loader == nil {
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
		return zero, fmt.Errorf("%w: get: %w", ErrRemote, err)
	}
	if ctx.Err() != nil {
		return zero, ctx.Err()
	}
	if load == nil {
		load = func(ctx context.Context) (V, error) { return c.opts.Loader(ctx, key) }
	}
	// A corrupt value is counted by the lease round, which finds it again.
	// Redis did not answer: fail open at once, without a second call to
	// time out.
	unreachable := err != nil && !errors.Is(err, remote.ErrMiss) && !errors.Is(err, remote.ErrCorrupt) && !errors.Is(err, ErrCodec)
	if unreachable {
		c.remoteFailed("get", err)
	}
	return c.loads.do(ctx, key, func(fctx context.Context) (V, error) {
		fctx, cancel := context.WithTimeout(fctx, c.opts.LoadTimeout)
		defer cancel()
		// The fence is taken before the re-check and the Redis read, so an
		// invalidation that lands meanwhile refuses the fill.
		fence := c.local.Fence(key)
		if e, ok := c.local.Get(key); ok {
			return c.hit(e)
		}
		if unreachable {
			return c.loadLocalOnly(fctx, key, fence, load, c.callOptions(opts))
		}
		return c.readOrLoad(fctx, key, fence, load, c.callOptions(opts))
	})
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
	if e.Negative {
		var zero V
		return zero, nil
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

// xfetchHorizon: −ln(rand) exceeds it with probability e^−20, so a value
// further than horizon·δ·β from its target needs no draw.
const xfetchHorizon = 20

// fillLocal stores a value read or written with envelope env. Its local TTL
// never outlives the Redis copy, and it records when hits must start
// considering a refresh.
func (c *Cache[V]) fillLocal(fence local.Fence, key string, v V, env *remote.Envelope, payloadCost int64, replace bool) {
	now := time.Now().UnixNano()
	ttl := c.jitter(c.opts.LocalTTL)
	if env.ExpiresAt != 0 {
		ttl = min(ttl, time.Duration(env.ExpiresAt-now))
	}
	e := local.Entry[V]{Value: v, FreshUntil: env.FreshUntil, ExpiresAt: env.ExpiresAt, LoadMicros: env.LoadMicros, Negative: env.Negative}
	e.Tags = tagNames(env.Tags)
	if !env.Negative {
		e.RefreshFrom = c.refreshFrom(&e, now+int64(ttl))
	}
	if replace {
		c.local.Replace(fence, key, e, payloadCost, ttl)
		return
	}
	c.local.Fill(fence, key, e, payloadCost, ttl)
}

// refreshFrom is when hits on e must start considering a refresh: when it
// goes stale, or XFetch's horizon before its target. Zero when the entry
// expires locally before that.
func (c *Cache[V]) refreshFrom(e *local.Entry[V], localExpiry int64) int64 {
	from := e.FreshUntil
	if beta := c.opts.EarlyRefreshBeta; beta > 0 {
		target := refreshTarget(e)
		if target != 0 {
			early := target - int64(xfetchHorizon*beta*float64(e.LoadMicros)*1e3)
			if from == 0 || early < from {
				from = early
			}
		}
	}
	if from == 0 || from >= localExpiry {
		return 0
	}
	return max(from, 1)
}

// refreshTarget is when a value should have been refreshed: when it goes
// stale, or else when it expires.
func refreshTarget[V any](e *local.Entry[V]) int64 {
	if e.FreshUntil != 0 {
		return e.FreshUntil
	}
	return e.ExpiresAt
}

// considerRefresh runs on a hit past e.RefreshFrom.
func (c *Cache[V]) considerRefresh(key string, e *local.Entry[V], load func(context.Context) (V, error)) {
	now := time.Now().UnixNano()
	if now < e.RefreshFrom {
		return
	}
	c.refreshIfDue(key, e.FreshUntil, e.ExpiresAt, e.LoadMicros, now, load, e.Tags)
}

// refreshIfDue starts a refresh of a value that is stale, or that XFetch
// picks for an early one.
func (c *Cache[V]) refreshIfDue(key string, freshUntil, expiresAt int64, loadMicros uint32, now int64, load func(context.Context) (V, error), tags []string) {
	if freshUntil != 0 && now >= freshUntil {
		c.stats.staleHits.Add(1)
		c.refresh(key, load, expiresAt, tags)
		return
	}
	target := freshUntil
	if target == 0 {
		target = expiresAt
	}
	if c.xfetch(target, loadMicros, now) {
		c.stats.earlyRefreshes.Add(1)
		c.refresh(key, load, expiresAt, tags)
	}
}

// xfetch is the probabilistic early-refresh test:
// now − δ·β·ln(rand) ≥ target.
func (c *Cache[V]) xfetch(target int64, loadMicros uint32, now int64) bool {
	beta := c.opts.EarlyRefreshBeta
	if beta <= 0 || target == 0 {
		return false
	}
	delta := float64(loadMicros) * 1e3
	return float64(now)-delta*beta*math.Log(rand.Float64()) >= float64(target)
}

// applyInvalidation runs on the bus goroutine for every peer's message.
func (c *Cache[V]) applyInvalidation(m coherence.Message) {
	c.stats.received.Add(1)
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
		c.flush(flushReasonMessage)
	default:
		// A kind this version does not know: the safe answer is to drop
		// everything.
		c.flush(flushReasonMessage)
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
	c.flush(string(reason))
	c.settleGeneration()
}

func (c *Cache[V]) flush(reason string) {
	c.local.Flush()
	c.waiting.wakeAll()
	c.stats.flushes(reason).Add(1)
	if reason != flushReasonMessage {
		c.log.Warn("flush:"+reason, "local tier flushed: invalidations may have been missed", "reason", reason)
	}
}

// corrupt counts (and logs) an unreadable value in Redis.
func (c *Cache[V]) corrupt(err error) {
	c.stats.corrupt.Add(1)
	c.log.Warn("corrupt", "unreadable value in redis, treated as a miss", "err", err)
}

// remoteFailed counts (and logs) a failed Redis call the cache answered
// around.
func (c *Cache[V]) remoteFailed(op string, err error) {
	c.stats.remoteErrors.Add(1)
	c.log.Warn("remote:"+op, "redis call failed", "op", op, "err", err)
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
		c.bus.Resync(flushReasonBreaker) // a replay, or a flush if it cannot
		return
	}
	c.flush(flushReasonBreaker)
}

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
			OnGap:        c.applyGap,
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
			c.flush(flushReasonMessage)
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

func logSize[V any](o *Options[V]) int {
	if o.Transport == TransportResumable {
		return o.InvalidationLogSize
	}
	return 0
}
