package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/remote"
)

// Write is one write a Flusher hands to the BatchWriter: the last value
// queued for Key among the entries of a batch.
type Write[V any] struct {
	Key   string
	Value V
	// Seq is the write's queue id; it grows in queue order (compare with
	// SeqLess). Delivery is at least once, so a source may see a write
	// again; one that keeps the highest Seq per key and ignores older ones
	// is also safe from the one reordering possible, a flusher that lost
	// its lease while its writer ignored the ctx deadline.
	Seq string
	// WrittenAt is when SetBehind ran.
	WrittenAt time.Time
	// Attempt is 1 on the first delivery by this flusher, then 2, 3…
	Attempt int
	// Coalesced counts the earlier queued writes of Key this one replaces.
	Coalesced int
}

// SeqLess reports whether queue id a comes before b.
func SeqLess(a, b string) bool { return coherence.StreamIDLess(a, b) }

// BatchWriter persists writes to the source of truth, within ctx's
// deadline. It returns nil when every write was accepted; WriteErrors to
// refuse some writes (by index) and accept the rest; any other error when
// the source is unavailable, so that none was accepted.
//
// A refused write counts an attempt and is dead-lettered after
// FlusherOptions.MaxAttempts; an unavailable source counts none and is
// retried with back-off for as long as it takes. A panic refuses the
// batch's writes; the flusher then splits the batch to find the write
// that panics and delivers the others.
type BatchWriter[V any] func(ctx context.Context, writes []Write[V]) error

// WriteErrors is the BatchWriter's refusal of some writes, by index.
type WriteErrors map[int]error

func (e WriteErrors) Error() string {
	return fmt.Sprintf("tiered: %d writes refused", len(e))
}

// FlusherOptions configures a Flusher. Zero values mean the defaults.
type FlusherOptions[V any] struct {
	// Writer persists batches. Required.
	Writer BatchWriter[V]
	// BatchSize bounds the queued writes read per batch (before writes to
	// one key are coalesced). Default 256, at most 10,000.
	BatchSize int
	// Interval is how long an idle flusher waits for new writes before it
	// looks again (a blocking read). Default 100ms; at most half the
	// cache's RemoteTimeout.
	Interval time.Duration
	// WriteTimeout is the deadline of one Writer call. Default 5s.
	WriteTimeout time.Duration
	// MaxAttempts is how often a write may be refused before it moves to
	// the dead-letter stream. Default 5.
	MaxAttempts int
	// RetryBackoff is the pause after a batch that was not wholly
	// accepted; it doubles up to MaxBackoff. Defaults 100ms and 5s.
	RetryBackoff, MaxBackoff time.Duration
	// LeaseTTL is the flusher lease: one flusher per namespace flushes
	// while the others stand by, and a standby takes over at most LeaseTTL
	// after the flusher dies. Default 3 × WriteTimeout; it must be at
	// least 2 × WriteTimeout + Interval.
	LeaseTTL time.Duration
}

func (o *FlusherOptions[V]) setDefaults(remoteTimeout time.Duration) {
	if o.BatchSize == 0 {
		o.BatchSize = 256
	}
	if o.Interval == 0 {
		o.Interval = min(100*time.Millisecond, remoteTimeout/2)
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(5*time.Second, o.RetryBackoff)
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = max(3*o.WriteTimeout, 2*o.WriteTimeout+o.Interval)
	}
}

func (o *FlusherOptions[V]) validate(remoteTimeout time.Duration) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: flusher: %s", ErrInvalidOptions, fmt.Sprintf(format, a...))
	}
	switch {
	case o.Writer == nil:
		return bad("Writer is nil")
	case o.BatchSize < 0 || o.BatchSize > 10_000:
		return bad("BatchSize %d not in 1–10000", o.BatchSize)
	case o.Interval < 0 || o.Interval > remoteTimeout/2:
		return bad("Interval %v not in (0, RemoteTimeout/2 = %v]", o.Interval, remoteTimeout/2)
	case o.WriteTimeout < 0 || o.MaxAttempts < 0 || o.RetryBackoff < 0 || o.MaxBackoff < 0:
		return bad("WriteTimeout, MaxAttempts, RetryBackoff and MaxBackoff must not be negative")
	case o.LeaseTTL < 0:
		return bad("LeaseTTL %v < 0", o.LeaseTTL)
	}
	return nil
}

// Flusher persists a namespace's write-behind queue (see SetBehind) through
// a BatchWriter, at least once. Any number of replicas may run one; they
// elect one holder of a lease in Redis, which flushes while the others
// stand by, so writes to one key reach the writer in queue order.
//
// Each round, the holder reads a batch: first the writes delivered to it
// and not yet acknowledged, then new ones. Writes to one key are coalesced
// (the last in queue order wins), the writer is called, and only what it
// accepted is acknowledged and removed from the queue. A flusher that
// takes the lease first claims (XAUTOCLAIM) what the previous holder left
// unacknowledged. Writes refused MaxAttempts times, and queue entries that
// cannot be decoded, move to the dead-letter stream (remote.DeadLetterKey).
type Flusher[V any] struct {
	cache    *Cache[V]
	opts     FlusherOptions[V]
	consumer string
	// attempts counts refusals per queue id; only the lease holder's loop
	// touches it, and it holds no more than the consumer's pending entries.
	attempts map[string]int
	stats    flusherCounters
}

// NewFlusher builds a flusher of c's namespace; Run starts it.
func NewFlusher[V any](c *Cache[V], opts FlusherOptions[V]) (*Flusher[V], error) {
	if err := opts.validate(c.opts.RemoteTimeout); err != nil {
		return nil, err
	}
	opts.setDefaults(c.opts.RemoteTimeout)
	if opts.LeaseTTL < 2*opts.WriteTimeout+opts.Interval {
		return nil, fmt.Errorf("%w: flusher: LeaseTTL %v < 2 × WriteTimeout + Interval", ErrInvalidOptions, opts.LeaseTTL)
	}
	return &Flusher[V]{
		cache:    c,
		opts:     opts,
		consumer: "flusher-" + remote.NewToken(),
		attempts: make(map[string]int),
	}, nil
}

// Run flushes until ctx ends, then gives the lease up (what it read and did
// not flush stays queued for the next holder) and returns nil. Redis
// failures are counted and retried; Run returns an error only for a closed
// cache, or at once with ErrQueueUnsafe on a Redis that may evict the queue
// (see Options.AllowQueueEviction). A queue Redis lost meanwhile is logged
// as an error and counted (Stats.Remote.Lost.Queue, FlusherStats.QueueLost),
// and flushing goes on with what is queued since.
func (f *Flusher[V]) Run(ctx context.Context) error {
	if err := f.cache.checkQueue(ctx); err != nil {
		return err
	}
	defer f.stats.leader.Store(false)
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), f.cache.opts.RemoteTimeout)
		defer cancel()
		_ = f.cache.remote.ReleaseLeader(rctx, f.consumer)
	}()
	var pause time.Duration // the current back-off
	for ctx.Err() == nil {
		if f.cache.closed.Load() {
			return ErrClosed
		}
		settled, err := f.round(ctx)
		switch {
		case errors.Is(err, remote.ErrQueueLost):
			f.stats.queueLost.Add(1)
			f.cache.log.error("queue:lost", "write-behind queue lost by Redis: the writes it held are gone", "err", err)
			continue
		case err != nil:
			if ctx.Err() == nil {
				f.stats.redisErrors.Add(1)
			}
			pause = f.backoff(pause)
		case settled:
			pause = 0
			continue
		default:
			pause = f.backoff(pause)
		}
		if !sleep(ctx, pause) {
			break
		}
	}
	return nil
}

func (f *Flusher[V]) backoff(last time.Duration) time.Duration {
	if last == 0 {
		return f.opts.RetryBackoff
	}
	return min(2*last, f.opts.MaxBackoff)
}

// round holds the lease, reads a batch and flushes it. settled is false
// when the batch was not wholly accepted; the caller then backs off. A
// standby's round is settled: it has waited its own LeaseTTL/4 already, and
// a growing back-off would delay its takeover.
func (f *Flusher[V]) round(ctx context.Context) (settled bool, err error) {
	started := time.Now()
	lead, err := f.cache.remote.HoldLeader(ctx, f.consumer, f.opts.LeaseTTL)
	if err != nil {
		return false, err
	}
	leaseEnd := started.Add(f.opts.LeaseTTL)
	switch lead {
	case remote.NotLeader:
		f.stats.leader.Store(false)
		clear(f.attempts)
		// A standby looks again well within one lease.
		sleep(ctx, f.opts.LeaseTTL/4)
		return true, nil
	case remote.NewLeader:
		f.stats.leader.Store(true)
		clear(f.attempts)
		n, err := f.cache.remote.ClaimQueue(ctx, f.consumer)
		f.stats.claimed.Add(uint64(n))
		if err != nil {
			return false, err
		}
	}
	f.refreshDepth(ctx)
	entries, err := f.cache.remote.ReadQueue(ctx, f.consumer, f.opts.BatchSize, f.opts.Interval)
	if err != nil || len(entries) == 0 {
		return err == nil, err
	}
	// The writer's deadline leaves time to acknowledge before the lease
	// could pass to another flusher.
	deadline := time.Now().Add(f.opts.WriteTimeout)
	if end := leaseEnd.Add(-f.cache.opts.RemoteTimeout); end.Before(deadline) {
		deadline = end
	}
	return f.flush(ctx, entries, deadline)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pendingWrite is one coalesced write and the queue entries it stands for.
type pendingWrite struct {
	entries []remote.QueueEntry
	last    remote.QueueEntry
}

func (p *pendingWrite) ids() []string {
	ids := make([]string, len(p.entries))
	for i, e := range p.entries {
		ids[i] = e.ID
	}
	return ids
}

// flush delivers one batch, in queue order, and reports whether all of it
// was accepted.
func (f *Flusher[V]) flush(ctx context.Context, entries []remote.QueueEntry, deadline time.Time) (bool, error) {
	byKey := make(map[string]*pendingWrite, len(entries))
	var order []*pendingWrite
	writes := make([]Write[V], 0, len(entries))
	for _, e := range entries {
		if e.Err != nil {
			if err := f.deadLetter(ctx, e, 0, e.Err); err != nil {
				return false, err
			}
			continue
		}
		p := byKey[e.Key]
		if p == nil {
			p = &pendingWrite{}
			byKey[e.Key] = p
			order = append(order, p)
		}
		p.entries = append(p.entries, e)
		p.last = e
	}
	var poison []*pendingWrite
	kept := order[:0]
	for _, p := range order {
		v, err := f.cache.decode(p.last.Envelope.Payload)
		if err != nil {
			poison = append(poison, p)
			continue
		}
		kept = append(kept, p)
		writes = append(writes, Write[V]{
			Key:       p.last.Key,
			Value:     v,
			Seq:       p.last.ID,
			WrittenAt: time.Unix(0, p.last.Envelope.WrittenAt),
			Attempt:   f.attempts[p.last.ID] + 1,
			Coalesced: len(p.entries) - 1,
		})
	}
	for _, p := range poison {
		if err := f.deadLetterAll(ctx, p, ErrCodec); err != nil {
			return false, err
		}
	}
	if len(writes) == 0 {
		return true, nil
	}

	wctx, cancel := context.WithDeadline(ctx, deadline)
	began := time.Now()
	outcome := f.deliver(wctx, writes)
	cancel()
	f.stats.flushDuration.observe(time.Since(began))
	f.stats.batches.Add(1)

	var accepted []string
	allDone := true
	for i, p := range kept {
		switch err := outcome[i]; {
		case err == nil:
			accepted = append(accepted, p.ids()...)
			f.stats.written.Add(1)
			f.stats.coalesced.Add(uint64(len(p.entries) - 1))
		case errors.Is(err, errUnavailable):
			allDone = false
			f.stats.retries.Add(1)
		default:
			allDone = false
			n := f.attempts[p.last.ID] + 1
			if n < f.opts.MaxAttempts {
				for _, e := range p.entries {
					f.attempts[e.ID] = n
				}
				f.stats.retries.Add(1)
				continue
			}
			if err := f.deadLetterAll(ctx, p, err); err != nil {
				return false, err
			}
		}
	}
	if len(accepted) > 0 {
		// If this fails the writes stay pending and are delivered again:
		// at least once.
		if err := f.cache.remote.AckQueue(ctx, accepted); err != nil {
			return false, err
		}
		for _, id := range accepted {
			delete(f.attempts, id)
		}
	}
	return allDone, nil
}

// errUnavailable marks writes the writer did not take because the source
// was unavailable (a plain error, or the deadline): no attempt is counted.
var errUnavailable = errors.New("source unavailable")

// deliver calls the writer and returns, per write, nil (accepted), an error
// wrapping errUnavailable, or the writer's refusal.
func (f *Flusher[V]) deliver(ctx context.Context, writes []Write[V]) []error {
	out := make([]error, len(writes))
	err, panicked := f.call(ctx, writes)
	var refused WriteErrors
	switch {
	case err == nil:
	case panicked && len(writes) > 1:
		// Split to find the write that panics; the others get through.
		half := len(writes) / 2
		copy(out, f.deliver(ctx, writes[:half]))
		copy(out[half:], f.deliver(ctx, writes[half:]))
	case panicked:
		out[0] = err
	case errors.As(err, &refused):
		for i, e := range refused {
			if i >= 0 && i < len(out) {
				out[i] = fmt.Errorf("%w", e)
				if e == nil {
					out[i] = errors.New("refused")
				}
			}
		}
	default:
		for i := range out {
			out[i] = fmt.Errorf("%w: %w", errUnavailable, err)
		}
	}
	return out
}

func (f *Flusher[V]) call(ctx context.Context, writes []Write[V]) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("writer panicked: %v", r), true
		}
	}()
	return f.opts.Writer(ctx, writes), false
}

func (f *Flusher[V]) deadLetterAll(ctx context.Context, p *pendingWrite, why error) error {
	n := f.attempts[p.last.ID] + 1
	for _, e := range p.entries {
		if err := f.deadLetter(ctx, e, n, why); err != nil {
			return err
		}
	}
	return nil
}

func (f *Flusher[V]) deadLetter(ctx context.Context, e remote.QueueEntry, attempts int, why error) error {
	err := f.cache.remote.MoveToDeadLetters(ctx, remote.DeadLetter{
		ID: e.ID, Key: e.Key, Raw: e.Raw, Attempts: attempts, Reason: why.Error(),
	})
	if err == nil {
		delete(f.attempts, e.ID)
		f.stats.deadLetters.Add(1)
	}
	return err
}
