package tiered

import (
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/remote"
)

// Codec turns values into bytes for Redis and back.
type Codec = remote.Codec

// JSONCodec is the default codec (encoding/json).
var JSONCodec Codec = remote.JSON{}

// BytesCodec stores []byte and string values unencoded.
var BytesCodec Codec = remote.Bytes{}

// Options configures a Cache. Zero values mean the documented defaults;
// Client, Namespace, LocalTTL and RemoteTTL are required. New's start-up is
// bounded by its ctx, or by DefaultStartTimeout (10 s) when ctx has no
// deadline.
type Options struct {
	// Client is the caller's rueidis client; the cache never closes it.
	// Single, Sentinel and Cluster clients work the same, with rueidis's
	// default options (client-side caching on) too. AUTH, ACL users and
	// TLS are configured on it; the ACL a cache needs is in
	// docs/operations.md. Each cache also holds one connection of its own
	// for invalidations (one per node for TransportTracking on a
	// Cluster), taken from the client's pool and closed by Close.
	Client rueidis.Client
	// Namespace prefixes every Redis key and names the invalidation
	// channel "<Namespace>:inv". 1–128 bytes, no spaces, braces or control
	// characters. Two caches with different namespaces never see each
	// other's entries or invalidations.
	Namespace string
	// LocalTTL bounds how long a value lives in the in-process tier: the
	// staleness backstop if every invalidation were lost. Must be positive
	// and at most RemoteTTL.
	LocalTTL time.Duration
	// RemoteTTL is how long a value lives in Redis. Must be positive.
	RemoteTTL time.Duration

	// LocalMaxCost bounds the local tier's heap, in bytes: each entry is
	// charged its encoded size (standing for its decoded value) plus
	// local.EntryOverhead (320 B, measured), and the admission counters
	// (about 47 B per LocalMaxEntries) come out of it too. A full tier
	// measured 1.06–1.12× its budget. Default 64 MiB.
	LocalMaxCost int64
	// LocalMaxEntries bounds the local tier's entries (each is charged at
	// least LocalMaxCost/LocalMaxEntries) and sizes its admission counters
	// (10 per entry), so a large LocalMaxCost costs no extra counting.
	// Raise it when many small values should fit. Default 100,000.
	LocalMaxEntries int64
	// TTLJitter shortens each TTL, local and remote, by a random fraction
	// in [0, TTLJitter), so entries filled together do not expire together.
	// Default 0.1; negative disables; must be below 1.
	TTLJitter float64
	// Codec encodes values for Redis. Default JSONCodec.
	Codec Codec
	// MaxKeyBytes bounds key length. Default 512.
	MaxKeyBytes int
	// MaxValueBytes bounds an encoded value (before compression).
	// Default 1 MiB.
	MaxValueBytes int
	// CompressAbove compresses encoded values of at least this many bytes
	// in Redis (s2). Default 1024; negative disables.
	CompressAbove int
	// RemoteTimeout is the deadline of every Redis call whose ctx has none
	// sooner. Default 500ms.
	RemoteTimeout time.Duration
	// LeaseTTL bounds a fill lease: how long a load that started before a
	// write is kept from overwriting it. Default 5s.
	LeaseTTL time.Duration
	// LoadTimeout bounds a load. A load is shared by every caller of the
	// key on this replica, so it does not end when one caller's ctx does;
	// it ends when it returns or after LoadTimeout. Default 30s.
	LoadTimeout time.Duration
	// InvalidationQueue bounds invalidations received but not yet applied;
	// overflowing it flushes the local tier. Default 4096.
	InvalidationQueue int
	// PingInterval is how often the cache checks that its invalidation
	// subscription still delivers. Default 1s; negative disables.
	PingInterval time.Duration
	// WaitReplicas, when positive, makes Set, Delete, SetBehind and
	// InvalidateAll wait until that many Redis replicas have the write
	// (WAIT, in the same round trip), failing with ErrRemote after
	// WaitTimeout if they do not. Redis replicates asynchronously: without
	// this, a write acknowledged by a master that dies before replicating
	// it is lost in a Sentinel failover, and the new master serves the older
	// value until RemoteTTL. Default 0: off.
	WaitReplicas int
	// WaitTimeout bounds that wait. Default half of RemoteTimeout (and no
	// more).
	WaitTimeout time.Duration
	// Transport is how invalidations reach the other replicas:
	// TransportPubSub (the default), TransportResumable or
	// TransportTracking. Every replica of a namespace must use the same
	// one, except that tracking replicas can share a namespace with
	// pub/sub ones (writes publish either way).
	Transport Transport
	// InvalidationLogSize caps TransportResumable's invalidation log (Redis
	// trims it approximately). A replica cut off for longer than the fleet
	// takes to publish this many invalidations flushes its local tier, as
	// with TransportPubSub. Default 10,000. On a Redis Cluster the log is
	// kept per hash slot, and this caps each slot's.
	InvalidationLogSize int
	// InvalidationLogAge is how long TransportResumable's per-slot logs
	// keep an invalidation on a Redis Cluster (a slot's log also expires
	// after this long without writes). A replica cut off for longer than
	// about InvalidationLogAge minus 2 s flushes its local tier. At least
	// 5 s; default 30 s. Unused on a single Redis, whose one log is capped
	// by InvalidationLogSize alone.
	InvalidationLogAge time.Duration

	// FreshFor turns on stale-while-revalidate: a value is fresh for
	// FreshFor after it is written; after that, until it expires, it is
	// served at once while one refresh per fleet runs in the background
	// (when a loader is known: GetOrLoad's, or Loader). Zero: values stay
	// fresh until they expire. Per call: WithFreshFor.
	FreshFor time.Duration
	// EarlyRefreshBeta is XFetch's β: a hit refreshes early, in the
	// background, when now − δ·β·ln(rand) ≥ fresh-until (or the expiry),
	// δ being the value's last load time. Larger β refreshes earlier.
	// Default 1; negative disables.
	EarlyRefreshBeta float64
	// NegativeTTL is how long a loader's ErrNotFound is remembered, as a
	// tombstone in both tiers, so a missing row does not hammer the
	// origin. Writing the key ends it. Default 5s; negative disables.
	NegativeTTL time.Duration
	// LoadBackoff is how long the fleet waits after a failed load before
	// another replica tries the origin again. Callers of the failed load
	// get its error; waiters on other replicas do not. Default 100ms.
	LoadBackoff time.Duration
	// Loader makes the cache read-through: a
	// func(ctx context.Context, key string) (V, error) that Get calls on a
	// miss in both tiers (GetOrLoad's own loader takes precedence).
	// Optional; New checks its type.
	Loader any
	// Writer makes Set write-through to the source of truth: a
	// func(ctx context.Context, key string, v V) error called first; the
	// cache is written only when it succeeds. Optional; New checks its type.
	Writer any
	// DoubleDeleteDelay, when positive, makes Delete invalidate the keys a
	// second time after this delay, for callers who write a database
	// whose reads may lag (write-around). Default 0: off.
	DoubleDeleteDelay time.Duration
	// MaxTags bounds the tags of one Set. Default 32.
	MaxTags int
	// WriteBehindLimit bounds the write-behind queue: SetBehind fails with
	// ErrQueueFull, changing nothing, while this many writes wait to be
	// flushed. Default 100,000.
	WriteBehindLimit int
	// AllowQueueEviction lets write-behind run on a Redis whose
	// maxmemory-policy is allkeys-*, which can evict the queue and the
	// acknowledged writes in it. Without it SetBehind (and writebehind.Flusher.Run)
	// refuse there with ErrQueueUnsafe. With it, a lost queue is detected
	// by the flusher and counted (Stats.Remote.Lost.Queue), not prevented.
	// Default false.
	AllowQueueEviction bool

	// BreakerThreshold is how many consecutive Redis failures (timeouts,
	// connection errors) open the circuit breaker; while it is open Redis
	// is not called (reads fail open to the local tier and the loader,
	// writes fail at once) until a probe after BreakerCooldown succeeds.
	// Default 5.
	BreakerThreshold int
	// BreakerCooldown is how long the breaker stays open before a probe.
	// Default 1s.
	BreakerCooldown time.Duration
	// Logger receives the cache's warnings and errors, each kind at most
	// once per LogEvery with a count of those suppressed. Default: silent.
	Logger *slog.Logger
	// LogEvery rate-limits repeated log lines of one kind. Default 10s.
	LogEvery time.Duration

	// Sampler, when set, is shown a sample of the keys read (local hits
	// included): package warmup's Tracker uses it to learn the fleet's hot
	// keys. Sample must be fast and must not block.
	Sampler Sampler
	// SampleEvery shows the Sampler one read in SampleEvery, on average
	// (rounded up to a power of two). Default 64.
	SampleEvery int
}

// Sampler is told of sampled reads.
type Sampler interface {
	Sample(key string)
}

const (
	defaultJitter   = 0.1
	maxNamespaceLen = 128
)

func (o *Options) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
	}
	switch {
	case o.Client == nil:
		return bad("Client is nil")
	case o.Namespace == "" || len(o.Namespace) > maxNamespaceLen:
		return bad("Namespace must be 1–%d bytes, got %d", maxNamespaceLen, len(o.Namespace))
	case o.LocalTTL <= 0 || o.RemoteTTL <= 0:
		return bad("LocalTTL (%v) and RemoteTTL (%v) must be positive", o.LocalTTL, o.RemoteTTL)
	case o.LocalTTL > o.RemoteTTL:
		return bad("LocalTTL %v is longer than RemoteTTL %v", o.LocalTTL, o.RemoteTTL)
	case o.LocalMaxCost < 0 || o.LocalMaxEntries < 0:
		return bad("LocalMaxCost (%d) and LocalMaxEntries (%d) must not be negative", o.LocalMaxCost, o.LocalMaxEntries)
	case o.TTLJitter >= 1:
		return bad("TTLJitter %v ≥ 1", o.TTLJitter)
	case o.MaxKeyBytes < 0 || o.MaxValueBytes < 0:
		return bad("MaxKeyBytes and MaxValueBytes must not be negative")
	case o.RemoteTimeout < 0 || o.LeaseTTL < 0 || o.LoadTimeout < 0:
		return bad("RemoteTimeout, LeaseTTL and LoadTimeout must not be negative")
	case o.InvalidationQueue < 0:
		return bad("InvalidationQueue %d < 0", o.InvalidationQueue)
	case o.Transport != TransportPubSub && o.Transport != TransportResumable && o.Transport != TransportTracking && o.Transport != "":
		return bad("Transport %q unknown", o.Transport)
	case o.WaitReplicas < 0 || o.WaitTimeout < 0:
		return bad("WaitReplicas and WaitTimeout must not be negative")
	case o.InvalidationLogSize < 0:
		return bad("InvalidationLogSize %d < 0", o.InvalidationLogSize)
	case o.InvalidationLogAge != 0 && o.InvalidationLogAge < 5*time.Second:
		return bad("InvalidationLogAge %v is under 5s", o.InvalidationLogAge)
	case o.FreshFor < 0 || o.LoadBackoff < 0 || o.DoubleDeleteDelay < 0:
		return bad("FreshFor, LoadBackoff and DoubleDeleteDelay must not be negative")
	case o.MaxTags < 0:
		return bad("MaxTags %d < 0", o.MaxTags)
	case o.WriteBehindLimit < 0:
		return bad("WriteBehindLimit %d < 0", o.WriteBehindLimit)
	case o.SampleEvery < 0:
		return bad("SampleEvery %d < 0", o.SampleEvery)
	case o.BreakerThreshold < 0 || o.BreakerCooldown < 0 || o.LogEvery < 0:
		return bad("BreakerThreshold, BreakerCooldown and LogEvery must not be negative")
	}
	for _, r := range o.Namespace {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '{' || r == '}' {
			return bad("Namespace %q has a space, brace or control character", o.Namespace)
		}
	}
	return nil
}

func (o *Options) setDefaults() {
	switch {
	case o.TTLJitter == 0:
		o.TTLJitter = defaultJitter
	case o.TTLJitter < 0:
		o.TTLJitter = 0
	}
	if o.Codec == nil {
		o.Codec = JSONCodec
	}
	if o.MaxKeyBytes == 0 {
		o.MaxKeyBytes = 512
	}
	if o.RemoteTimeout == 0 {
		o.RemoteTimeout = 500 * time.Millisecond
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = 30 * time.Second
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 5 * time.Second
	}
	switch {
	case o.EarlyRefreshBeta == 0:
		o.EarlyRefreshBeta = 1
	case o.EarlyRefreshBeta < 0:
		o.EarlyRefreshBeta = 0
	}
	switch {
	case o.NegativeTTL == 0:
		o.NegativeTTL = 5 * time.Second
	case o.NegativeTTL < 0:
		o.NegativeTTL = 0
	}
	if o.LoadBackoff == 0 {
		o.LoadBackoff = 100 * time.Millisecond
	}
	if o.MaxTags == 0 {
		o.MaxTags = 32
	}
	if o.Transport == "" {
		o.Transport = TransportPubSub
	}
	if o.InvalidationLogSize == 0 {
		o.InvalidationLogSize = 10_000
	}
	if o.InvalidationLogAge == 0 {
		o.InvalidationLogAge = 30 * time.Second
	}
	if o.WriteBehindLimit == 0 {
		o.WriteBehindLimit = 100_000
	}
	if o.LogEvery == 0 {
		o.LogEvery = 10 * time.Second
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = 64
	}
	n := 1
	for n < o.SampleEvery {
		n <<= 1
	}
	o.SampleEvery = n
}

// hooks are the typed forms of Options.Loader and Options.Writer.
type hooks[V any] struct {
	loader func(ctx context.Context, key string) (V, error)
	writer func(ctx context.Context, key string, v V) error
}

func hooksOf[V any](o *Options) (hooks[V], error) {
	var h hooks[V]
	if o.Loader != nil {
		f, ok := o.Loader.(func(context.Context, string) (V, error))
		if !ok {
			return h, fmt.Errorf("%w: Loader is %T, want func(context.Context, string) (%T, error)", ErrInvalidOptions, o.Loader, *new(V))
		}
		h.loader = f
	}
	if o.Writer != nil {
		f, ok := o.Writer.(func(context.Context, string, V) error)
		if !ok {
			return h, fmt.Errorf("%w: Writer is %T, want func(context.Context, string, %T) error", ErrInvalidOptions, o.Writer, *new(V))
		}
		h.writer = f
	}
	return h, nil
}

// CallOption adjusts one call.
type CallOption func(*callOptions)

type callOptions struct {
	freshFor    time.Duration
	hasFreshFor bool
	tags        []string
}

// WithFreshFor overrides Options.FreshFor for the value this call writes
// (Set, or a load by Get/GetOrLoad).
func WithFreshFor(d time.Duration) CallOption {
	return func(o *callOptions) { o.freshFor, o.hasFreshFor = d, true }
}

// WithTags tags the value the call writes: by Set or SetBehind, or by the
// load of GetOrLoad, GetOrLoadMany or a read-through Get. InvalidateTags of
// any of the tags invalidates it, in both tiers of every replica. A tagged
// value costs one more small Redis read when it is read from Redis (its
// tags' versions), and a tagged load one more before it loads.
func WithTags(tags ...string) CallOption {
	return func(o *callOptions) { o.tags = append(o.tags, tags...) }
}

func (c *Cache[V]) callOptions(opts []CallOption) callOptions {
	co := callOptions{freshFor: c.opts.FreshFor}
	for _, o := range opts {
		o(&co)
	}
	return co
}

// Transport names a way invalidations travel between replicas.
type Transport string

const (
	// TransportPubSub publishes each invalidation on the namespace's
	// channel, <namespace>:inv, in the script that makes the write. A
	// replica that may have missed messages (a resubscribe, an overflow, a
	// ping that did not come back) flushes its local tier.
	TransportPubSub Transport = "pubsub"
	// TransportResumable is TransportPubSub plus an invalidation log: each
	// message is also appended to a capped Redis stream, <namespace>:v1:invlog,
	// in the same script, and a replica that may have missed messages
	// replays the log from the last one it saw instead of flushing. It
	// flushes only when the log was trimmed past that point. The price is
	// one XADD per write and the stream's memory. On a Redis Cluster there
	// is one log per hash slot, <namespace>:v1:invlog:{<tag>}, trimmed by
	// InvalidationLogAge as well, and a replay reads all 16,384 of them in
	// one pipelined round; it relies on the bus's pings, so PingInterval
	// must not be negative there.
	TransportResumable Transport = "resumable"
	// TransportTracking uses Redis server-assisted invalidation instead of
	// the channel: one dedicated RESP3 connection per replica runs CLIENT
	// TRACKING ON BCAST PREFIX <namespace>:v1:g, and Redis pushes the name
	// of every value key that is written, deleted, expired or evicted — by
	// this library or by any other program. A lost connection flushes, as
	// with TransportPubSub. Two differences: a replica's own writes are
	// pushed back to it, so it drops its own fresh copy (the next read goes
	// to Redis); and waiters of a fleet load are woken by the fill's key
	// change. Needs Redis 6+ and a RESP3 client (rueidis's default). On a
	// Cluster there is one tracking connection per node.
	TransportTracking Transport = "tracking"
)
