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
// reports as a GapOverflow before it next goes idle.
type eventQueue[E any] struct {
	events    chan queued[E]
	bytes     atomic.Int64 // held by the queued events
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
	return &eventQueue[E]{events: make(chan queued[E], size)}
}

// push queues e, which holds size bytes, without blocking, and reports
// whether it did.
func (q *eventQueue[E]) push(e E, size int) bool {
	n := int64(size)
	if q.bytes.Add(n) <= maxQueuedBytes {
		select {
		case q.events <- queued[E]{e, n}:
			return true
		default:
		}
	}
	q.bytes.Add(-n)
	q.overflows.Add(1)
	if !q.dropped.Swap(true) && q.onFirstDrop != nil {
		q.onFirstDrop()
	}
	return false
}

// drain applies events until ctx ends, and calls onOverflow after an event
// when any was dropped since.
func (q *eventQueue[E]) drain(ctx context.Context, apply func(E), onOverflow func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-q.events:
			q.bytes.Add(-e.bytes)
			apply(e.e)
			if q.dropped.Swap(false) {
				onOverflow()
			}
		}
	}
}
