package tiered

import (
	"context"
	"sync"
	"time"
)

// flights runs at most one fetch per key at a time on this replica. Every
// caller waits for the shared fetch and leaves when its own ctx ends; when
// the last caller has left, the fetch's ctx is cancelled, so a load nobody
// waits for stops and gives its fleet lease to another replica. (x/sync's
// singleflight cannot tell when every caller has gone.)
type flights[V any] struct {
	mu      sync.Mutex
	calls   map[string]*flight[V]
	workers workers
}

type flight[V any] struct {
	done    chan struct{}
	val     V
	err     error
	callers int
	cancel  context.CancelFunc
}

// do runs fetch once for all concurrent callers of key. fetch gets a ctx
// that carries the first caller's values and ends when every caller left,
// or after timeout.
func (f *flights[V]) do(ctx context.Context, key string, timeout time.Duration, fetch func(context.Context) (V, error)) (V, error) {
	return f.join(ctx, key, timeout, fetch, nil)
}

// join is do, calling joined (when not nil) if the caller joins a fetch
// already running instead of starting fetch.
func (f *flights[V]) join(ctx context.Context, key string, timeout time.Duration, fetch func(context.Context) (V, error), joined func()) (V, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flight[V]{}
	}
	c, ok := f.calls[key]
	if !ok {
		// One context: the first caller's values, its own end.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		c = &flight[V]{done: make(chan struct{}), cancel: cancel}
		f.calls[key] = c
		f.workers.run(func() { f.run(fctx, key, c, fetch) })
	}
	c.callers++
	f.mu.Unlock()
	if ok && joined != nil {
		joined()
	}

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		f.mu.Lock()
		c.callers--
		if c.callers == 0 {
			c.cancel()
			if f.calls[key] == c {
				delete(f.calls, key) // later callers start afresh
			}
		}
		f.mu.Unlock()
		var zero V
		return zero, ctx.Err()
	}
}

func (f *flights[V]) run(ctx context.Context, key string, c *flight[V], fetch func(context.Context) (V, error)) {
	defer c.cancel()
	c.val, c.err = fetch(ctx)
	f.mu.Lock()
	if f.calls[key] == c {
		delete(f.calls, key)
	}
	f.mu.Unlock()
	close(c.done)
}

// close lets the parked workers go; fetches under way finish first.
func (f *flights[V]) close() { f.workers.close() }

// workers runs fetches on goroutines that ran one before and wait, parked,
// for the next. A fetch's call chain (lease, load, fill, scripts) is deep:
// a new goroutine grew its stack, copying it, on the way, which cost about
// 5 % of the CPU of a miss-heavy load. At most maxIdleWorkers wait (a few
// KiB of stack each); more run when more fetches do, and end after theirs.
type workers struct {
	mu     sync.Mutex
	idle   []chan func()
	closed bool
}

const maxIdleWorkers = 64

func (w *workers) run(fn func()) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		in := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		in <- fn // buffered: never blocks
		return
	}
	w.mu.Unlock()
	go w.loop(make(chan func(), 1), fn)
}

func (w *workers) loop(in chan func(), fn func()) {
	for fn != nil {
		fn()
		w.mu.Lock()
		if w.closed || len(w.idle) >= maxIdleWorkers {
			w.mu.Unlock()
			return
		}
		w.idle = append(w.idle, in)
		w.mu.Unlock()
		fn = <-in // nil when closed
	}
}

func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for _, in := range w.idle {
		close(in)
	}
	w.idle = nil
}
