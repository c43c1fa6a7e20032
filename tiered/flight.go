package tiered

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/tiercache/tiercache/local"
)

// flights runs at most one fetch per key at a time on this replica. Every
// caller waits for the shared fetch and leaves when its own ctx ends; when
// the last caller has left, the fetch's ctx is cancelled, so a load nobody
// waits for stops and gives its fleet lease to another replica. (x/sync's
// singleflight cannot tell when every caller has gone.)
type flights[V any] struct {
	shards  [flightShards]flightShard[V]
	workers workers
	// holds is the local tier's Holds: a caller joins a key's flight only
	// while the flight's fence holds. One that comes after the key was
	// invalidated (a peer's write, this replica's own Delete) starts a
	// flight of its own, as it would have read Redis itself: the flight
	// under way may answer with the value from before the write. (Nil:
	// every flight is joined, for tests of flights alone.)
	holds func(key string, f local.Fence) bool
}

// flightShards spreads the flights over maps with a lock each. Every miss
// takes its key's lock at least twice (to start its flight and to end it,
// once more to hand a load to a worker); with one lock for all keys, a
// replica's concurrent misses of different keys queue on it, more so the
// more cores there are. BenchmarkLeadParallel (16 goroutines, 2 cores):
// 602 → 202 ns per flight, 0.34× (medians of five interleaved runs); a
// miss Redis answers (BenchmarkMissParallel) moved within this machine's
// noise (0.96×, median of eight interleaved pairs).
const flightShards = 64

type flightShard[V any] struct {
	mu    sync.Mutex
	calls map[string]*flight[V]
	// onWorkers holds the shard's flights whose fetch runs on a worker,
	// for close to cancel: a flight may have left calls (a newer
	// flight of its key took its place) while its fetch runs on.
	onWorkers map[*flight[V]]struct{}
	// active counts the shard's flights not finished, for close to wait
	// for: a first step under way may hold a fleet lease it must give
	// back. idle, made by close, is signalled when active falls to 0.
	active int
	idle   *sync.Cond
	closed bool     // by close: no flight starts, no fetch goes to a worker
	_      [23]byte // 64 bytes apart: neighbours' locks seldom share a line
}

// flightSeed hashes keys to their flightShard.
var flightSeed = maphash.MakeSeed()

func (f *flights[V]) shard(key string) *flightShard[V] {
	return &f.shards[maphash.String(flightSeed, key)%flightShards]
}

type flight[V any] struct {
	shard *flightShard[V] // where it is found by its key
	fence local.Fence     // the leader's, taken before the flight began
	// done is made, under its shard's mu, by the first caller to wait for the
	// fetch, and closed by finish: a fetch that its leader's Redis read
	// answers has most often no one else waiting, and no channel.
	done    chan struct{}
	val     V
	err     error
	callers int
	// ctx is the fetch's, made when the leader hands it to a worker: most
	// flights end with the leader's Redis read, and a flight without it is
	// half the size to allocate and clear.
	ctx *fetchCtx
	// retry: the leader's first step ended with the leader's own ctx, which
	// answers nobody else; the others start afresh.
	retry bool
	// panicked is what the fetch on a worker panicked with (a codec's or
	// an observer's panic): each caller panics with it on its own
	// goroutine, as it would have running the fetch itself, where its
	// own recover can see it; the worker, which nobody could recover,
	// does not.
	panicked any
}

// lead runs one fetch of key for all its concurrent callers. The fetch's
// first step runs on the first caller's own goroutine, with its ctx: a
// miss's Redis read, which most often answers it, costs no hand-off to a
// worker. Callers that come meanwhile wait for it instead of making the
// same read (a burst of one replica's callers for one key makes one read,
// not one each). When first answers (next is nil), every caller gets its
// answer; otherwise next runs on a worker, with a ctx that carries the
// first caller's values and ends when every caller has left or after
// timeout, and every caller waits for it or leaves when its own ctx ends.
// If first fails because the leader's ctx ended, the others start afresh.
// fence is the caller's, taken after its local miss: a caller joins a
// flight under way only if that flight's fence still holds, else its own
// flight takes the key's place (the old one's callers keep theirs).
func (f *flights[V]) lead(ctx context.Context, key string, fence local.Fence, timeout time.Duration, first func(context.Context) (V, func(context.Context) (V, error), error)) (V, error) {
	s := f.shard(key)
	for {
		s.mu.Lock()
		if s.calls == nil {
			s.calls = map[string]*flight[V]{}
		}
		if c, ok := s.calls[key]; ok && (f.holds == nil || f.holds(key, c.fence)) {
			c.callers++
			done := c.waitOn()
			s.mu.Unlock()
			v, err, answered := f.wait(ctx, key, c, done)
			if answered && c.retry && ctx.Err() == nil {
				continue
			}
			return v, err
		}
		if s.closed {
			s.mu.Unlock()
			var zero V
			return zero, ErrClosed
		}
		c := &flight[V]{shard: s, callers: 1, fence: fence}
		s.calls[key] = c
		s.active++
		s.mu.Unlock()

		v, next, err := f.runFirst(ctx, key, c, first)
		if next == nil {
			c.val, c.err, c.retry = v, err, err != nil && ctx.Err() != nil
			f.finish(key, c)
			return v, err
		}
		// One context: the first caller's values, its own end.
		c.ctx = &fetchCtx{}
		c.ctx.init(context.WithoutCancel(ctx), timeout)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return f.abandon(key, c, next)
		}
		done := c.waitOn()
		if s.onWorkers == nil {
			s.onWorkers = map[*flight[V]]struct{}{}
		}
		s.onWorkers[c] = struct{}{}
		s.mu.Unlock()
		f.workers.run(func() { f.run(key, c, next) })
		v, err, _ = f.wait(ctx, key, c, done)
		return v, err
	}
}

// runFirst runs the leader's first step. If it panics (a codec's or an
// observer's panic), the others start afresh, as each would have run the
// step itself, and the panic goes on up the leader's stack; the flight is
// never left behind for later callers to wait on.
func (f *flights[V]) runFirst(ctx context.Context, key string, c *flight[V], first func(context.Context) (V, func(context.Context) (V, error), error)) (V, func(context.Context) (V, error), error) {
	done := false
	defer func() {
		if !done {
			c.retry = true
			f.finish(key, c)
		}
	}()
	v, next, err := first(ctx)
	done = true
	return v, next, err
}

// abandon ends a flight whose first step found the cache closing: next
// runs here with its ctx already ended, which gives back what the first
// step took (a fleet lease) and loads nothing, and the flight's callers
// get ErrClosed. Close waits for it (active), so the lease is given back
// before Close returns.
func (f *flights[V]) abandon(key string, c *flight[V], next func(context.Context) (V, error)) (V, error) {
	var zero V
	c.err = ErrClosed
	defer f.finish(key, c) // even if next panics
	c.ctx.cancel()
	next(c.ctx)
	return zero, ErrClosed
}

// waitOn returns the channel finish closes, making it if no caller has
// waited yet. Call it with c.shard.mu held, before c can finish.
func (c *flight[V]) waitOn() chan struct{} {
	if c.done == nil {
		c.done = make(chan struct{})
	}
	return c.done
}

// wait waits for c's answer (answered: done, from waitOn, is closed), or
// leaves when ctx ends; the last caller to leave cancels the fetch.
func (f *flights[V]) wait(ctx context.Context, key string, c *flight[V], done chan struct{}) (_ V, _ error, answered bool) {
	select {
	case <-done:
		if c.panicked != nil {
			panic(c.panicked)
		}
		return c.val, c.err, true
	case <-ctx.Done():
		c.shard.mu.Lock()
		c.callers--
		if c.callers == 0 {
			// The leader counts as a caller until it has handed next to a
			// worker, so the fetch's context is set by now.
			c.ctx.cancel()
			if c.shard.calls[key] == c {
				delete(c.shard.calls, key) // later callers start afresh
			}
		}
		c.shard.mu.Unlock()
		var zero V
		return zero, ctx.Err(), false
	}
}

// finish publishes c's answer to its callers. Once c has left the map no
// caller can come to wait on it, so done is final here. A fetch on a
// worker that failed after close cancelled it answers ErrClosed (with its
// own error).
func (f *flights[V]) finish(key string, c *flight[V]) {
	s := c.shard
	s.mu.Lock()
	if s.calls[key] == c {
		delete(s.calls, key)
	}
	if c.ctx != nil {
		delete(s.onWorkers, c)
		if s.closed && c.err != nil && !errors.Is(c.err, ErrClosed) {
			c.err = fmt.Errorf("%w: %w", ErrClosed, c.err)
		}
	}
	if s.active--; s.active == 0 && s.idle != nil {
		s.idle.Broadcast()
	}
	done := c.done
	s.mu.Unlock()
	if done != nil {
		close(done)
	}
}

func (f *flights[V]) run(key string, c *flight[V], fetch func(context.Context) (V, error)) {
	defer c.ctx.cancel()
	finished := false
	defer func() {
		if !finished {
			c.panicked = recover()
			if c.panicked == nil { // runtime.Goexit: no panic to pass on
				c.err = errors.New("tiered: a load's worker exited")
			}
			f.finish(key, c)
		}
	}()
	c.val, c.err = fetch(c.ctx)
	finished = true
	f.finish(key, c)
}

// close cancels the fetches running on workers, waits for every flight
// to finish, and lets the parked workers go. From then on no flight
// starts (ErrClosed), and one whose first step was under way ends with
// ErrClosed unless that step answered it. A first step is a Redis read
// (and abandon's release of the lease it took), each bounded by
// RemoteTimeout; a loader that ignores its ctx holds close until it
// returns: the alternative, returning while it runs, would leave its
// goroutine, and its fills, behind Close. (So a loader must not call
// Close: it would wait for itself.)
func (f *flights[V]) close() {
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		s.closed = true
		for c := range s.onWorkers {
			c.ctx.cancel()
		}
		s.mu.Unlock()
	}
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		if s.idle == nil {
			s.idle = sync.NewCond(&s.mu)
		}
		for s.active > 0 {
			s.idle.Wait()
		}
		s.mu.Unlock()
	}
	f.workers.close()
}

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
