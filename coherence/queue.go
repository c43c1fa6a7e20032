package coherence

import (
	"context"
	"sync/atomic"
)

// eventQueue carries events from a connection's reader, which must never
// block, to one goroutine that applies them in order. It is bounded by
// count (its size) and by the bytes its events hold (maxQueuedBytes): a
// message may carry hundreds of keys, or be anyone's PUBLISH of any size
// on the channel, so a count alone would bound nothing. A full queue
// drops the event: a lost invalidation, which the applying goroutine
// reports as a GapOverflow after the events queued before the drop, or at
// once if it was idle (a drop for bytes may find the queue empty).
type eventQueue[E any] struct {
	events    chan queued[E]
	kick      chan struct{} // buffered (1): a drop, for an idle drain
	bytes     atomic.Int64  // held by the queued events
	dropped   atomic.Bool
	overflows atomic.Uint64
	// onFirstDrop, optional, is called on the pushing goroutine when an
	// event is dropped and none was since the last onOverflow: exactly
	// once before each onOverflow call.
	onFirstDrop func()
}

type queued[E any] struct {
	e     E
	bytes int64
}

// maxQueuedBytes bounds the bytes of the events waiting to be applied:
// 4,096 messages of 512 keys of 32 bytes each.
const maxQueuedBytes = 64 << 20

func newEventQueue[E any](size int) *eventQueue[E] {
	return &eventQueue[E]{events: make(chan queued[E], size), kick: make(chan struct{}, 1)}
}

// push queues e, which holds size bytes, without blocking, and reports
// whether it did. An event of no bytes (a gap) is bounded by count alone.
func (q *eventQueue[E]) push(e E, size int) bool {
	n := int64(size)
	if n == 0 || q.bytes.Add(n) <= maxQueuedBytes {
		select {
		case q.events <- queued[E]{e, n}:
			return true
		default:
		}
	}
	q.bytes.Add(-n)
	q.overflows.Add(1)
	if !q.dropped.Swap(true) {
		if q.onFirstDrop != nil {
			q.onFirstDrop()
		}
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return false
}

// drain applies events until ctx ends, and calls onOverflow after an event
// when any was dropped since, or when a drop finds no event queued.
func (q *eventQueue[E]) drain(ctx context.Context, apply func(E), onOverflow func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
			// With events queued, the next one's turn reports the drop
			// (they came before it).
			if len(q.events) == 0 && q.dropped.Swap(false) {
				onOverflow()
			}
		case e := <-q.events:
			q.bytes.Add(-e.bytes)
			apply(e.e)
			if q.dropped.Swap(false) {
				onOverflow()
			}
		}
	}
}
