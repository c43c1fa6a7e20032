package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

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
	fresh      freshness
	origin     uint64
	typeID     uint64 // valueTypeID(Options.ValueType), stamped on every value written
	channel    string
	local      *local.Tier[V]
	remote     *remote.Store
	bus        transport

	loads      flights[V]
	waiting    waiters
	refreshing sync.Map     // keys with a background refresh running here
	refreshes  atomic.Int64 // refreshes running here: at most MaxRefreshes
	loadEWMA   atomic.Int64 // recent load time, ns (expectedLoad)
	queueGuard queueGuard
	later      *laterDeletes // with DoubleDeleteDelay

	// life ends at Close; background work (refreshes, second deletes)
	// runs under it and is waited for. It is counted under bgMu, which
	// Close holds to close (startBackground).
	life       context.Context
	endLife    context.CancelFunc
	background sync.WaitGroup
	bgMu       sync.Mutex

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
	channel := opts.Namespace + ":inv"
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
		WakeMessage:        func(key string) remote.Publication { return keysPublication(msgOrigin, opts.Namespace, channel, key) },
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
		fresh:      freshness{beta: opts.EarlyRefreshBeta, draw: rand.Float64},
		origin:     msgOrigin,
		typeID:     valueTypeID(opts.ValueType),
		channel:    channel,
		local:      lt,
		remote:     rs,
	}
	c.stats.localHits.init()
	c.loads.holds = lt.Holds
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
	if opts.DoubleDeleteDelay > 0 {
		c.later = newLaterDeletes()
		c.background.Add(1)
		go c.runLaterDeletes()
	}
	return c, nil
}

// Namespace is the cache's namespace.
func (c *Cache[V]) Namespace() string { return c.opts.Namespace }

// Close stops the subscription and releases the local tier. It cancels
// the loads this cache runs (a GetOrLoad's, whose callers then get
// ErrClosed, and background refreshes) and waits for them to return, and
// for the Redis reads of misses under way (a read, and the release of a
// lease it took: RemoteTimeout each at most), so nothing it started
// writes to Redis after it and no fleet lease it took is left behind.
// (A GetOrLoadMany runs on its caller's goroutine, under the caller's
// ctx: Close neither cancels nor waits for it.) A loader that ignores its
// ctx holds Close until it returns; a loader must not call Close (it would
// wait for itself). Calls after Close return ErrClosed. Close is
// idempotent; the caller's rueidis client stays open.
func (c *Cache[V]) Close() {
	c.close.Do(func() {
		c.bgMu.Lock()
		c.closed.Store(true)
		c.bgMu.Unlock()
		c.endLife()
		c.loads.close()
		c.background.Wait()
		c.bus.Close()
		c.local.Close()
	})
}

// startBackground counts one more piece of background work, unless the
// cache is closed. A call that checked closed at its start may start
// such work after Close began to wait for it, which a WaitGroup does not
// allow (it panics): the count and the check are one step, under the lock
// Close takes to close.
func (c *Cache[V]) startBackground() bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.background.Add(1)
	return true
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
