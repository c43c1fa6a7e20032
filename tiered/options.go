package tiered

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"
	"unicode"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Codec turns values into bytes for Redis and back.
type Codec = remote.Codec

// JSONCodec is the default codec (encoding/json).
var JSONCodec Codec = remote.JSON{}

// BytesCodec stores []byte and string values unencoded.
var BytesCodec Codec = remote.Bytes{}

// The defaults of Options, named by the fields' comments and by
// docs/operations.md.
const (
	DefaultLocalMaxCost        = local.DefaultMaxCost    // 64 MiB
	DefaultLocalMaxEntries     = local.DefaultMaxEntries // 100,000
	DefaultTTLJitter           = 0.1
	DefaultMaxKeyBytes         = 512
	DefaultMaxValueBytes       = 1 << 20
	DefaultCompressAbove       = 1024
	DefaultMaxTags             = 32
	DefaultLoadTimeout         = 30 * time.Second
	DefaultLeaseTTL            = 5 * time.Second
	DefaultLoadBackoff         = 100 * time.Millisecond
	DefaultNegativeTTL         = 5 * time.Second
	DefaultEarlyRefreshBeta    = 1.0
	DefaultMaxRefreshes        = 32
	DefaultRemoteTimeout       = 500 * time.Millisecond
	DefaultBreakerThreshold    = 5
	DefaultBreakerCooldown     = time.Second
	DefaultInvalidationQueue   = 4096
	DefaultPingInterval        = time.Second
	DefaultInvalidationLogSize = 10_000
	DefaultInvalidationLogAge  = 30 * time.Second
	DefaultWriteBehindLimit    = 100_000
	DefaultLogEvery            = 10 * time.Second
	DefaultSampleEvery         = 64
	// DefaultStartTimeout bounds New when its ctx has no deadline: Redis
	// unreachable, or a subscription that never confirms, fails New after
	// this long instead of blocking it forever.
	DefaultStartTimeout = 10 * time.Second

	maxNamespaceLen = 128
)

// Options configures a Cache of values of type V. Zero values mean the
// documented defaults (the Default… constants); Client, Namespace,
// LocalTTL and RemoteTTL are required.
type Options[V any] struct {
	// Required.

	// Client is the caller's rueidis client; the cache never closes it.
	// Single, Sentinel and Cluster clients work the same. AUTH, ACL users
	// and TLS are configured on it.
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

	// The source of truth.

	// Loader makes the cache read-through: Get calls it on a miss in both
	// tiers (GetOrLoad's own loader takes precedence). Optional.
	Loader func(ctx context.Context, key string) (V, error)
	// Writer makes Set write-through: it is called first, and the cache is
	// written only when it succeeds. Optional.
	Writer func(ctx context.Context, key string, v V) error

	// The local tier.

	// LocalMaxCost bounds the local tier's heap, in bytes: each entry is
	// charged its encoded size (standing for its decoded value) plus
	// local.EntryOverhead (320 B, measured), and the admission counters
	// (about 47 B per LocalMaxEntries) come out of it too. A full tier
	// measured 0.97–1.08× its budget. Default DefaultLocalMaxCost.
	LocalMaxCost int64
	// LocalMaxEntries bounds the local tier's entries (each is charged at
	// least LocalMaxCost/LocalMaxEntries) and sizes its admission counters
	// (10 per entry), so a large LocalMaxCost costs no extra counting.
	// Raise it when many small values should fit. Default
	// DefaultLocalMaxEntries.
	LocalMaxEntries int64

	// Values.

	// Codec encodes values for Redis. Default JSONCodec.
	Codec Codec
	// ValueType names the type and encoding of the namespace's values. A
	// fingerprint of it goes with every value written, so a cache of
	// another ValueType reading the value gets ErrTypeClash rather than a
	// silent miss. Caches of different Go types may share a namespace
	// only if their values decode both ways: give them the same ValueType.
	// Default: V's package path and name, and the Codec's type (for
	// example "example.com/svc.User remote.JSON").
	ValueType string
	// MaxKeyBytes bounds key length, and a tag's (a tag is also bounded
	// by remote.MaxTagBytes). Default DefaultMaxKeyBytes.
	MaxKeyBytes int
	// MaxValueBytes bounds an encoded value (before compression); a loaded
	// value over it is returned to its callers uncached. Default
	// DefaultMaxValueBytes.
	MaxValueBytes int
	// CompressAbove compresses encoded values of at least this many bytes
	// in Redis (s2). Default DefaultCompressAbove; negative disables.
	CompressAbove int
	// TTLJitter shortens each TTL, local and remote, by a random fraction
	// in [0, TTLJitter), so entries filled together do not expire together.
	// Default DefaultTTLJitter; negative disables; must be below 1.
	TTLJitter float64
	// MaxTags bounds the tags of one call, at most remote.MaxTags. Default
	// DefaultMaxTags.
	MaxTags int

	// Loads and freshness.

	// LoadTimeout bounds a load. A load is shared by every caller of the
	// key on this replica, so it does not end when one caller's ctx does;
	// it ends when it returns or after LoadTimeout. Default
	// DefaultLoadTimeout.
	LoadTimeout time.Duration
	// LeaseTTL bounds a fill lease: how long a load that started before a
	// write is kept from overwriting it, and how long a dead loader delays
	// the fleet. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// LoadBackoff is how long the fleet waits after a failed load before
	// another replica tries the origin again. Callers of the failed load
	// get its error; waiters on other replicas do not. Default
	// DefaultLoadBackoff.
	LoadBackoff time.Duration
	// NegativeTTL is how long a loader's ErrNotFound is remembered, as a
	// tombstone in both tiers, so a missing row does not hammer the
	// origin. Writing the key ends it. Default DefaultNegativeTTL;
	// negative disables.
	NegativeTTL time.Duration
	// FreshFor turns on stale-while-revalidate: a value is fresh for
	// FreshFor after it is written; after that, until it expires, it is
	// served at once while one refresh per fleet runs in the background
	// (when a loader is known: GetOrLoad's, or Loader). Zero: values stay
	// fresh until they expire. Per call: WithFreshFor.
	FreshFor time.Duration
	// EarlyRefreshBeta is XFetch's β: a hit refreshes early, in the
	// background, when now − δ·β·ln(rand) ≥ fresh-until (or the expiry),
	// δ being the value's last load time. Larger β refreshes earlier.
	// Default DefaultEarlyRefreshBeta; negative disables.
	EarlyRefreshBeta float64
	// MaxRefreshes bounds the background refreshes (stale-while-revalidate
	// and early ones) this replica runs at a time, so keys written
	// together, which go stale together, do not call the origin all at
	// once. A refresh due while MaxRefreshes run is not started
	// (Stats.RefreshesDeferred): the value is served as it is, and a later
	// hit starts its refresh, until it expires. Default
	// DefaultMaxRefreshes.
	MaxRefreshes int

	// Redis calls.

	// RemoteTimeout is the deadline of every Redis call whose ctx has none
	// sooner (within a tenth of it). Such calls share one deadline instead
	// of making a timer each, so a caller's cancellation is seen before
	// each Redis call and by every wait on another replica's load, but a
	// call already sent ends at Redis's reply or at RemoteTimeout. Default
	// DefaultRemoteTimeout.
	RemoteTimeout time.Duration
	// BreakerThreshold is how many consecutive Redis failures (timeouts,
	// connection errors) open the circuit breaker; while it is open Redis
	// is not called (reads fail open to the local tier and the loader,
	// writes fail at once) until a probe after BreakerCooldown succeeds.
	// Default DefaultBreakerThreshold.
	BreakerThreshold int
	// BreakerCooldown is how long the breaker stays open before a probe.
	// Default DefaultBreakerCooldown.
	BreakerCooldown time.Duration
	// WaitReplicas, when positive, makes Set, Delete, SetBehind and
	// InvalidateAll wait until that many Redis replicas have the write
	// (WAIT, in the same round trip), failing with ErrRemote after
	// WaitTimeout if they do not. Redis replicates asynchronously: without
	// this, a write acknowledged by a master that dies before replicating
	// it is lost in a Sentinel failover. Default 0: off.
	WaitReplicas int
	// WaitTimeout bounds that wait. Default half of RemoteTimeout (and no
	// more).
	WaitTimeout time.Duration

	// Invalidations.

	// Transport is how invalidations reach the other replicas:
	// TransportPubSub (the default), TransportResumable or
	// TransportTracking. Every replica of a namespace must use the same
	// one, except that tracking replicas can share a namespace with
	// pub/sub ones (writes publish either way).
	Transport Transport
	// InvalidationQueue bounds invalidations received but not yet applied
	// (as do their bytes: 64 MiB); overflowing it flushes the local tier.
	// Default DefaultInvalidationQueue.
	InvalidationQueue int
	// PingInterval is how often the cache checks that its invalidation
	// subscription still delivers, and settles the namespace generation
	// with Redis. Default DefaultPingInterval; negative disables.
	PingInterval time.Duration
	// InvalidationLogSize caps TransportResumable's invalidation log (Redis
	// trims it approximately). A replica cut off for longer than the fleet
	// takes to publish this many invalidations flushes its local tier, as
	// with TransportPubSub. On a Redis Cluster the log is kept per hash
	// slot, and this caps each slot's. Default DefaultInvalidationLogSize.
	InvalidationLogSize int
	// InvalidationLogAge is how long TransportResumable's per-slot logs
	// keep an invalidation on a Redis Cluster (a slot's log also expires
	// after this long without writes). A replica cut off for longer than
	// about InvalidationLogAge minus 2 s flushes its local tier. At least
	// 5 s; default DefaultInvalidationLogAge. Unused on a single Redis,
	// whose one log is capped by InvalidationLogSize alone.
	InvalidationLogAge time.Duration
	// DoubleDeleteDelay, when positive, makes Delete invalidate the keys a
	// second time after this delay, for callers who write a database
	// whose reads may lag (write-around). Deletes within an eighth of the
	// delay of one another share one second round; the keys wait in
	// memory until it (the keys of one delay's Deletes). Default 0: off.
	DoubleDeleteDelay time.Duration

	// Write-behind.

	// WriteBehindLimit bounds the write-behind queue: SetBehind fails with
	// ErrQueueFull, changing nothing, while this many writes wait to be
	// flushed. Default DefaultWriteBehindLimit.
	WriteBehindLimit int
	// AllowQueueEviction lets SetBehind queue on a Redis whose
	// maxmemory-policy is allkeys-*, which can evict the queue and the
	// acknowledged writes in it; without it SetBehind refuses there with
	// ErrQueueUnsafe (writebehind.Options has the same switch). Default
	// false.
	AllowQueueEviction bool

	// Observability.

	// Logger receives the cache's warnings and errors, each kind at most
	// once per LogEvery with a count of those suppressed. Default: silent.
	Logger *slog.Logger
	// LogEvery rate-limits repeated log lines of one kind. Default
	// DefaultLogEvery.
	LogEvery time.Duration
	// Sampler, when set, is shown a sample of the keys read (local hits
	// included): package warmup's HotKeys uses it to learn the fleet's hot
	// keys. Sample must be fast and must not block.
	Sampler Sampler
	// SampleEvery shows the Sampler one read in SampleEvery, on average
	// (rounded up to a power of two). Default DefaultSampleEvery.
	SampleEvery int
	// Observer, when set, is told of every step of a call that leaves the
	// process (Redis reads on a miss, lease waits, loads, fills, writes):
	// package tieredotel turns them into OpenTelemetry spans. Default: none.
	Observer Observer

	// applied, for this package's tests, is told of each peer message once
	// it is applied: the staleness ledger tells an invalidation still in
	// flight when a read began from one that was lost.
	applied func(coherence.Message)
}

// Sampler is told of sampled reads.
type Sampler interface {
	Sample(key string)
}

func (o *Options[V]) validate() error {
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
	case o.MaxTags < 0 || o.MaxTags > remote.MaxTags:
		return bad("MaxTags %d not in 0–%d", o.MaxTags, remote.MaxTags)
	case o.MaxRefreshes < 0:
		return bad("MaxRefreshes %d < 0", o.MaxRefreshes)
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

// setDefaults fills in every default, so the layers below get explicit
// values and keep none of their own for the cache.
func (o *Options[V]) setDefaults() {
	o.LocalMaxCost = cmp.Or(o.LocalMaxCost, DefaultLocalMaxCost)
	o.LocalMaxEntries = cmp.Or(o.LocalMaxEntries, DefaultLocalMaxEntries)
	switch {
	case o.TTLJitter == 0:
		o.TTLJitter = DefaultTTLJitter
	case o.TTLJitter < 0:
		o.TTLJitter = 0
	}
	if o.Codec == nil {
		o.Codec = JSONCodec
	}
	if o.ValueType == "" {
		o.ValueType = defaultValueType[V](o.Codec)
	}
	o.MaxKeyBytes = cmp.Or(o.MaxKeyBytes, DefaultMaxKeyBytes)
	o.MaxValueBytes = cmp.Or(o.MaxValueBytes, DefaultMaxValueBytes)
	o.CompressAbove = cmp.Or(o.CompressAbove, DefaultCompressAbove)
	o.MaxTags = cmp.Or(o.MaxTags, DefaultMaxTags)
	o.LoadTimeout = cmp.Or(o.LoadTimeout, DefaultLoadTimeout)
	o.LeaseTTL = cmp.Or(o.LeaseTTL, DefaultLeaseTTL)
	o.LoadBackoff = cmp.Or(o.LoadBackoff, DefaultLoadBackoff)
	o.MaxRefreshes = cmp.Or(o.MaxRefreshes, DefaultMaxRefreshes)
	switch {
	case o.NegativeTTL == 0:
		o.NegativeTTL = DefaultNegativeTTL
	case o.NegativeTTL < 0:
		o.NegativeTTL = 0
	}
	switch {
	case o.EarlyRefreshBeta == 0:
		o.EarlyRefreshBeta = DefaultEarlyRefreshBeta
	case o.EarlyRefreshBeta < 0:
		o.EarlyRefreshBeta = 0
	}
	o.RemoteTimeout = cmp.Or(o.RemoteTimeout, DefaultRemoteTimeout)
	o.BreakerThreshold = cmp.Or(o.BreakerThreshold, DefaultBreakerThreshold)
	o.BreakerCooldown = cmp.Or(o.BreakerCooldown, DefaultBreakerCooldown)
	if o.WaitTimeout == 0 || o.WaitTimeout >= o.RemoteTimeout {
		o.WaitTimeout = o.RemoteTimeout / 2 // WAIT must end before the call's deadline does
	}
	if o.Transport == "" {
		o.Transport = TransportPubSub
	}
	o.InvalidationQueue = cmp.Or(o.InvalidationQueue, DefaultInvalidationQueue)
	o.PingInterval = cmp.Or(o.PingInterval, DefaultPingInterval)
	o.InvalidationLogSize = cmp.Or(o.InvalidationLogSize, DefaultInvalidationLogSize)
	o.InvalidationLogAge = cmp.Or(o.InvalidationLogAge, DefaultInvalidationLogAge)
	o.WriteBehindLimit = cmp.Or(o.WriteBehindLimit, DefaultWriteBehindLimit)
	o.LogEvery = cmp.Or(o.LogEvery, DefaultLogEvery)
	o.SampleEvery = cmp.Or(o.SampleEvery, DefaultSampleEvery)
	n := 1
	for n < o.SampleEvery {
		n <<= 1
	}
	o.SampleEvery = n
}
