package tiered

import (
	"context"
	"sync"
	"time"
)

// laterDeletes queues the second deletes of double deletes
// (Options.DoubleDeleteDelay) for one goroutine, runLaterDeletes. A
// goroutine and a timer per Delete cost a few KiB each for the whole
// delay: 10,000 Deletes a second with a 1 s delay held 10,000 goroutines.
// Deletes that come within an eighth of the delay of one another share a
// batch, deleted in one round: each key waits between the delay and an
// eighth more. The queue holds the keys of the last delay's Deletes.
type laterDeletes struct {
	mu      sync.Mutex
	pending []laterDelete // by due time: each Delete joins the last batch or follows it
	wake    chan struct{} // buffered (1): a batch was queued
}

type laterDelete struct {
	due  time.Time
	keys []string
}

func newLaterDeletes() *laterDeletes { return &laterDeletes{wake: make(chan struct{}, 1)} }

// add queues keys (copied) to be deleted again after delay.
func (q *laterDeletes) add(keys []string, delay time.Duration) {
	due := time.Now().Add(delay)
	q.mu.Lock()
	if n := len(q.pending); n > 0 && !q.pending[n-1].due.Before(due) && len(q.pending[n-1].keys)+len(keys) <= maxKeysPerMessage {
		q.pending[n-1].keys = append(q.pending[n-1].keys, keys...)
	} else {
		q.pending = append(q.pending, laterDelete{due: due.Add(delay / 8), keys: append([]string(nil), keys...)})
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next waits for the first batch to come due and takes it; ok is false
// when done ends first.
func (q *laterDeletes) next(done <-chan struct{}) (keys []string, ok bool) {
	for {
		q.mu.Lock()
		var due time.Time
		if len(q.pending) > 0 {
			due = q.pending[0].due
		}
		q.mu.Unlock()
		if due.IsZero() {
			select {
			case <-q.wake:
				continue
			case <-done:
				return nil, false
			}
		}
		if wait := time.Until(due); wait > 0 {
			// Only this goroutine takes batches, and add only appends:
			// the first batch is the same one when the timer fires.
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-done:
				t.Stop()
				return nil, false
			}
		}
		select {
		case <-done: // a batch overdue at Close is dropped, not tried
			return nil, false
		default:
		}
		q.mu.Lock()
		keys = q.pending[0].keys
		q.pending[0] = laterDelete{}
		q.pending = q.pending[1:]
		q.mu.Unlock()
		return keys, true
	}
}

// runLaterDeletes does the second deletes as they come due, until Close
// (those still queued then are dropped with the cache's local tier; the
// keys' own TTLs bound what they would have caught).
func (c *Cache[V]) runLaterDeletes() {
	defer c.background.Done()
	for {
		keys, ok := c.later.next(c.life.Done())
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(c.life, c.opts.RemoteTimeout)
		if c.delete(ctx, keys) == nil {
			c.stats.secondDeletes.Add(1)
		}
		cancel()
	}
}
