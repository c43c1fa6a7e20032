package coherence

import (
	"context"
	"sync/atomic"
)

// eventQueue carries events from a connection's reader, which must never
// block, to one goroutine that applies them in order. A full queue drops
// the event: a lost invalidation, which the applying goroutine reports as
// a GapOverflow before it next goes idle.
type eventQueue[E any] struct {
	events    chan E
	dropped   atomic.Bool
	overflows atomic.Uint64
	// onFirstDrop, optional, is called on the pushing goroutine when an
	// event is dropped and none was since the last onOverflow: exactly
	// once before each onOverflow call.
	onFirstDrop func()
}

func newEventQueue[E any](size int) *eventQueue[E] {
	return &eventQueue[E]{events: make(chan E, size)}
}

// push queues e without blocking, and reports whether it did.
func (q *eventQueue[E]) push(e E) bool {
	select {
	case q.events <- e:
		return true
	default:
		q.overflows.Add(1)
		if !q.dropped.Swap(true) && q.onFirstDrop != nil {
			q.onFirstDrop()
		}
		return false
	}
}

// drain applies events until ctx ends, and calls onOverflow after an event
// when any was dropped since.
func (q *eventQueue[E]) drain(ctx context.Context, apply func(E), onOverflow func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-q.events:
			apply(e)
			if q.dropped.Swap(false) {
				onOverflow()
			}
		}
	}
}
