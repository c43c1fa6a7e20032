package writebehind

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/ratelog"
	"github.com/tiercache/tiercache/internal/streamid"
	"github.com/tiercache/tiercache/internal/wait"
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
func SeqLess(a, b string) bool { return streamid.Less(a, b) }

// BatchWriter persists writes to the source of truth, within ctx's
// deadline. It returns nil when every write was accepted; WriteErrors to
// refuse some writes (by index) and accept the rest; any other error when
// the source is unavailable, so that none was accepted.
//
// A refused write counts an attempt and is dead-lettered after
// Options.MaxAttempts; an unavailable source counts none and is
// retried with back-off for as long as it takes. A panic refuses the
// batch's writes; the flusher then splits the batch to find the write
// that panics and delivers the others.
type BatchWriter[V any] func(ctx context.Context, writes []Write[V]) error

// WriteErrors is the BatchWriter's refusal of some writes, by index.
type WriteErrors map[int]error

func (e WriteErrors) Error() string {
	return fmt.Sprintf("writebehind: %d writes refused", len(e))
}

// Flusher persists a namespace's write-behind queue (tiered.Cache.SetBehind) through
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
// cannot be decoded, move to the dead-letter stream (<ns>:v1:wb:{<ns>}:dead).
type Flusher[V any] struct {
	opts     Options[V]
	queue    *queue
	log      *ratelog.Logger
	consumer string
	// attempts counts refusals per queue id; only the lease holder's loop
	// touches it, and it holds no more than the consumer's pending entries.
	attempts map[string]int
	// claimedAt is when this flusher last claimed others' pending entries.
	claimedAt time.Time
	stats     flusherCounters
	// running: a Run has not returned. A second one would share the
	// attempts map and the consumer name with it.
	running atomic.Bool
}

// New builds a flusher of a namespace's queue from a client, namespace and
// codec: a worker that only flushes needs no cache. Run starts it.
func New[V any](opts Options[V]) (*Flusher[V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Flusher[V]{
		opts:     opts,
		queue:    newQueue(opts.Client, opts.Namespace, opts.RemoteTimeout, opts.MaxValueBytes),
		log:      ratelog.New(opts.Logger, opts.LogEvery, "cache", opts.Namespace),
		consumer: "flusher-" + remote.NewToken(),
		attempts: make(map[string]int),
	}, nil
}

// Run flushes until ctx ends, then gives the lease up (what it read and did
// not flush stays queued for the next holder) and returns nil. Redis
// failures are counted and retried; Run returns an error only with
// ErrQueueUnsafe, on a Redis that may evict the queue (see
// Options.AllowQueueEviction): at once, or as soon as a Redis that could
// not be asked at first (down, loading, busy) answers. A queue Redis lost
// meanwhile is logged as an error and counted (Stats.QueueLost), and
// flushing goes on with what is queued since.
//
// A Flusher runs once at a time: Run while another Run of it has not
// returned is ErrRunning.
func (f *Flusher[V]) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer f.running.Store(false)
	judged, err := f.checkDurability(ctx)
	if err != nil {
		return err
	}
	defer f.stats.leader.Store(false)
	defer func() {
		_ = f.queue.releaseLeader(context.Background(), f.consumer)
	}()
	var pause time.Duration // the current back-off
	for ctx.Err() == nil {
		if !judged {
			if judged, err = f.checkDurability(ctx); err != nil {
				return err
			}
		}
		settled, err := f.round(ctx)
		switch {
		case errors.Is(err, errQueueLost):
			f.stats.queueLost.Add(1)
			f.log.Error("queue:lost", "write-behind queue lost by Redis: the writes it held are gone", "err", err)
			clear(f.attempts) // of entries gone with it
			// Flushing goes on with what is queued since, after a pause: a
			// queue that keeps vanishing is not to be spun on.
			pause = f.backoff(pause)
		case err != nil:
			if ctx.Err() == nil {
				f.stats.redisErrors.Add(1)
				// Rate-limited: a refusal that lasts (NOPERM, WRONGTYPE)
				// must not look like an idle flusher.
				f.log.Error("round", "write-behind round failed; retrying", "err", err)
			}
			pause = f.backoff(pause)
		case settled:
			pause = 0
			continue
		default:
			pause = f.backoff(pause)
		}
		if !wait.Sleep(ctx, pause) {
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
	lead, err := f.queue.holdLeader(ctx, f.consumer, f.opts.LeaseTTL)
	if err != nil {
		return false, err
	}
	leaseEnd := started.Add(f.opts.LeaseTTL)
	switch lead {
	case notLeader:
		f.stats.leader.Store(false)
		clear(f.attempts)
		// A standby notes that the queue's group exists, so that if
		// Redis loses it before this flusher takes over, the loss is
		// said, not passed off as a first start. (Errors: the next look.)
		f.queue.noteGroup(ctx)
		// A standby looks again well within one lease.
		wait.Sleep(ctx, f.opts.LeaseTTL/4)
		return true, nil
	case newLeader:
		f.stats.leader.Store(true)
		clear(f.attempts)
		n, err := f.queue.claim(ctx, f.consumer, 0)
		f.stats.claimed.Add(uint64(n))
		if err != nil {
			return false, err
		}
		f.claimedAt = started
	default:
		// A flusher that stalled past its lease (a long pause) may still
		// read entries into its own pending list after this one claimed
		// its others: once idle a lease long, they are claimed here too,
		// or they would wait for the next takeover.
		if started.Sub(f.claimedAt) >= f.opts.LeaseTTL {
			n, err := f.queue.claim(ctx, f.consumer, f.opts.LeaseTTL)
			f.stats.claimed.Add(uint64(n))
			if err != nil {
				return false, err
			}
			f.claimedAt = started
		}
	}
	f.refreshDepth(ctx)
	entries, err := f.queue.read(ctx, f.consumer, f.opts.BatchSize, f.opts.Interval)
	if err != nil || len(entries) == 0 {
		return err == nil, err
	}
	// The writer's deadline leaves time to acknowledge before the lease
	// could pass to another flusher.
	deadline := time.Now().Add(f.opts.WriteTimeout)
	if end := leaseEnd.Add(-f.opts.RemoteTimeout); end.Before(deadline) {
		deadline = end
	}
	return f.flush(ctx, entries, deadline)
}

// pendingWrite is one coalesced write and the queue entries it stands for.
type pendingWrite struct {
	entries []entry
	last    entry
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
func (f *Flusher[V]) flush(ctx context.Context, entries []entry, deadline time.Time) (bool, error) {
	byKey := make(map[string]*pendingWrite, len(entries))
	var order []*pendingWrite
	writes := make([]Write[V], 0, len(entries))
	// Entries that cannot be delivered go to the dead letters last, after
	// the writes taken are acknowledged: a move that fails (the dead
	// letters' key holding another type, Redis gone) must not hold the
	// others back.
	var broken []entry // unreadable
	var refused []*pendingWrite
	var reasons []error
	for _, e := range entries {
		if e.Err != nil {
			broken = append(broken, e)
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
	kept := order[:0]
	for _, p := range order {
		v, err := f.decode(p.last.Envelope.Payload)
		if err != nil {
			refused, reasons = append(refused, p), append(reasons, ErrCodec)
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
	if len(writes) == 0 {
		if err := f.deadLetterRest(ctx, broken, refused, reasons); err != nil {
			return false, err
		}
		return true, nil
	}

	wctx, cancel := context.WithDeadline(ctx, deadline)
	began := time.Now()
	outcome := f.deliver(wctx, writes)
	cancel()
	f.stats.flushDuration.Observe(time.Since(began))
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
			refused, reasons = append(refused, p), append(reasons, err)
		}
	}
	if len(accepted) > 0 {
		// If this fails the writes stay pending and are delivered again:
		// at least once. Not cut short by Run's end: the source has taken
		// them, and the next holder would deliver them again.
		if err := f.queue.ack(context.WithoutCancel(ctx), accepted); err != nil {
			return false, err
		}
		for _, id := range accepted {
			delete(f.attempts, id)
		}
	}
	if err := f.deadLetterRest(ctx, broken, refused, reasons); err != nil {
		return false, err
	}
	return allDone, nil
}

// deadLetterRest moves a round's undeliverable entries to the dead
// letters: the unreadable ones, then the writes refused for good (or not
// decodable), each for its reason.
func (f *Flusher[V]) deadLetterRest(ctx context.Context, broken []entry, refused []*pendingWrite, reasons []error) error {
	for _, e := range broken {
		if err := f.deadLetter(ctx, e, 0, e.Err); err != nil {
			return err
		}
	}
	for i, p := range refused {
		if err := f.deadLetterAll(ctx, p, reasons[i]); err != nil {
			return err
		}
	}
	return nil
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

func (f *Flusher[V]) deadLetter(ctx context.Context, e entry, attempts int, why error) error {
	moved, err := f.queue.moveToDeadLetters(ctx, f.consumer, deadLetter{
		ID: e.ID, Key: e.Key, Raw: e.Raw, Attempts: attempts, Reason: why.Error(),
	})
	if err == nil {
		delete(f.attempts, e.ID)
		if moved {
			f.stats.deadLetters.Add(1)
		}
	}
	return err
}

// decode decodes a queued value with the codec. A codec that panics on
// the bytes (a buggy UnmarshalJSON, a value another program queued) fails
// that entry, which is dead-lettered: its panic on Run's goroutine would
// end the process, and then every replica's that took the queue over.
func (f *Flusher[V]) decode(payload []byte) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the codec panicked: %v", ErrCodec, r)
		}
	}()
	if err := f.opts.Codec.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("%w: %w", ErrCodec, err)
	}
	return v, nil
}
