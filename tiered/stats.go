package tiered

import (
	"sync/atomic"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/internal/histogram"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Stats is a snapshot of what a cache did since New. Counters only grow.
type Stats struct {
	// LocalHits counts the reads answered from the local tier.
	LocalHits    uint64
	LocalMisses  uint64 // …that went on to Redis
	RemoteHits   uint64
	RemoteMisses uint64
	RemoteErrors uint64 // Redis calls that failed or timed out
	Corrupt      uint64 // unreadable values in Redis, treated as misses
	TypeClashes  uint64 // values of another ValueType found (ErrTypeClash)
	Loads        uint64 // loader calls
	LoadErrors   uint64 // loader calls that failed or panicked
	FillsVoided  uint64 // loads not cached because a write landed meanwhile
	LeaseWaits   uint64 // rounds spent waiting for another replica's load
	StaleHits    uint64 // values served past fresh-until (a refresh started)
	EarlyRefresh uint64 // XFetch refreshes started before fresh-until
	Refreshes    uint64 // background refreshes that landed
	// RefreshesDeferred counts refreshes due but not started because
	// Options.MaxRefreshes were running: a later hit starts them.
	RefreshesDeferred uint64
	SecondDeletes     uint64 // delayed second-delete rounds done (Deletes close in time share one)

	InvalidationsPublished uint64 // Set/Delete messages sent
	InvalidationsReceived  uint64 // peers' messages applied
	// LocalResets counts local-tier resets (epoch bumps: every entry
	// becomes a miss at once) by reason (LocalResetReasons):
	// "resubscribe", "overflow", "undecodable", "ping-timeout", "message"
	// (a peer's InvalidateAll), "breaker" (Redis came back after the
	// breaker had opened), "generation" (this replica found the namespace
	// generation moved, or lost in Redis: Stats.Remote.Lost),
	// "tracking-flush" (the tracking transport: Redis said every key may
	// have changed, as after a FLUSHALL).
	LocalResets map[string]uint64
	// Lag is the distribution of invalidation lag (publish → applied).
	Lag Histogram
	// LoadDuration is the distribution of loader call durations.
	LoadDuration Histogram
	NegativeHits uint64 // reads answered by a tombstone
	// TooLarge counts loaded values returned to their callers but not
	// cached: their encoding was over Options.MaxValueBytes.
	TooLarge  uint64
	LocalCost int64 // the local tier's current cost, in bytes

	Local  local.Stats
	Bus    coherence.Stats
	Remote remote.Stats
}

const (
	resetReasonMessage    = "message"
	resetReasonBreaker    = "breaker"
	resetReasonGeneration = "generation"
)

// resetReasons are the reasons Stats.LocalResets counts, in the order of
// counters.resetByReason.
var resetReasons = [...]string{
	string(coherence.GapResubscribe), string(coherence.GapOverflow),
	string(coherence.GapUndecodable), string(coherence.GapPingTimeout),
	resetReasonMessage, resetReasonBreaker, resetReasonGeneration,
	string(coherence.GapTrackingFlush),
}

// LocalResetReasons lists the reasons Stats.LocalResets counts (a new slice
// each call).
func LocalResetReasons() []string { return append([]string(nil), resetReasons[:]...) }

// Histogram counts durations in power-of-two microsecond buckets: bucket i
// holds durations in [2^(i-1), 2^i) µs, bucket 0 those under 1 µs, the last
// everything longer. Quantile estimates a quantile; BucketUpperBound gives
// a bucket's bound.
type Histogram = histogram.Snapshot

// HistogramBuckets is the number of buckets of a Histogram (1 µs to ~16 s).
const HistogramBuckets = histogram.Buckets

type counters struct {
	localHits                                            hitCounter
	localMisses, remoteHits, remoteMisses, remoteErrors  atomic.Uint64
	corrupt, typeClashes, loads, loadErrors, fillsVoided atomic.Uint64
	leaseWaits, staleHits, earlyRefreshes, refreshes     atomic.Uint64
	secondDeletes, refreshesDeferred                     atomic.Uint64
	published, received, negativeHits, tooLarge          atomic.Uint64
	resetByReason                                        [len(resetReasons)]atomic.Uint64
	lag, loadDuration                                    histogram.Recorder
}

func (c *counters) resets(reason string) *atomic.Uint64 {
	for i, r := range resetReasons {
		if r == reason {
			return &c.resetByReason[i]
		}
	}
	return &c.resetByReason[4] // "message": an unknown kind
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	s := &c.stats
	out := Stats{
		LocalHits:              s.localHits.load(),
		LocalMisses:            s.localMisses.Load(),
		RemoteHits:             s.remoteHits.Load(),
		RemoteMisses:           s.remoteMisses.Load(),
		RemoteErrors:           s.remoteErrors.Load(),
		Corrupt:                s.corrupt.Load(),
		TypeClashes:            s.typeClashes.Load(),
		Loads:                  s.loads.Load(),
		LoadErrors:             s.loadErrors.Load(),
		FillsVoided:            s.fillsVoided.Load(),
		LeaseWaits:             s.leaseWaits.Load(),
		StaleHits:              s.staleHits.Load(),
		EarlyRefresh:           s.earlyRefreshes.Load(),
		Refreshes:              s.refreshes.Load(),
		RefreshesDeferred:      s.refreshesDeferred.Load(),
		SecondDeletes:          s.secondDeletes.Load(),
		InvalidationsPublished: s.published.Load(),
		InvalidationsReceived:  s.received.Load(),
		LocalResets:            make(map[string]uint64, len(resetReasons)),
		Lag:                    s.lag.Snapshot(),
		LoadDuration:           s.loadDuration.Snapshot(),
		NegativeHits:           s.negativeHits.Load(),
		TooLarge:               s.tooLarge.Load(),
		LocalCost:              c.local.Cost(),
		Local:                  c.local.Stats(),
		Bus:                    c.bus.Stats(),
		Remote:                 c.remote.Stats(),
	}
	for i, r := range resetReasons {
		out.LocalResets[r] = s.resetByReason[i].Load()
	}
	return out
}
