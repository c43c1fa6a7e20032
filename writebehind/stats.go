package writebehind

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/histogram"
)

// Histogram is a distribution of durations in power-of-two microsecond
// buckets (the same type as tiered.Histogram).
type Histogram = histogram.Snapshot

// Stats is a snapshot of what a Flusher did since New.
type Stats struct {
	Leader      bool   // it holds the flusher lease now
	Batches     uint64 // writer calls (a panic's splits count once)
	Written     uint64 // coalesced writes the writer accepted
	Coalesced   uint64 // queued writes replaced by a later one to the same key
	Retries     uint64 // writes not accepted and kept for another attempt
	DeadLetters uint64 // queue entries moved to the dead-letter stream
	Claimed     uint64 // entries claimed from a previous lease holder
	RedisErrors uint64 // rounds cut short by a Redis failure
	QueueLost   uint64 // times Redis lost the queue (evicted, restarted empty)
	// FlushDuration is the distribution of writer call durations.
	FlushDuration Histogram
	// QueueDepth and DeadLetterDepth are the lengths of the queue (writes
	// not yet flushed) and of the dead-letter stream, as last read, at
	// most a second ago while this flusher holds the lease.
	QueueDepth, DeadLetterDepth int64
}

type flusherCounters struct {
	leader                               atomic.Bool
	batches, written, coalesced, retries atomic.Uint64
	deadLetters, claimed, redisErrors    atomic.Uint64
	queueLost                            atomic.Uint64
	flushDuration                        histogram.Recorder
	depth, deadDepth, depthAt            atomic.Int64
}

// Stats returns a snapshot of the flusher's counters; it does no I/O.
func (f *Flusher[V]) Stats() Stats {
	s := &f.stats
	return Stats{
		Leader:          s.leader.Load(),
		Batches:         s.batches.Load(),
		Written:         s.written.Load(),
		Coalesced:       s.coalesced.Load(),
		Retries:         s.retries.Load(),
		DeadLetters:     s.deadLetters.Load(),
		Claimed:         s.claimed.Load(),
		RedisErrors:     s.redisErrors.Load(),
		QueueLost:       s.queueLost.Load(),
		FlushDuration:   s.flushDuration.Snapshot(),
		QueueDepth:      s.depth.Load(),
		DeadLetterDepth: s.deadDepth.Load(),
	}
}

// QueueDepth reads the lengths of the queue and the dead-letter stream.
func (f *Flusher[V]) QueueDepth(ctx context.Context) (queued, dead int64, err error) {
	return f.queue.depth(ctx)
}

// refreshDepth rereads the depths once a second at most.
func (f *Flusher[V]) refreshDepth(ctx context.Context) {
	now := time.Now().UnixNano()
	if now-f.stats.depthAt.Load() < int64(time.Second) {
		return
	}
	f.stats.depthAt.Store(now)
	if q, d, err := f.queue.depth(ctx); err == nil {
		f.stats.depth.Store(q)
		f.stats.deadDepth.Store(d)
	}
}
