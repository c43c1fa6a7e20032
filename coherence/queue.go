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
}

func newEventQueue[E any](size int) *eventQueue[E] {
	return &eventQueue[E]{events: make(chan E, size)}
}

// push queues e without blocking.
func (q *eventQueue[E]) push(e E) {
	select {
	case q.events <- e:
	default:
		q.overflows.Add(1)
		q.dropped.Store(true)
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
