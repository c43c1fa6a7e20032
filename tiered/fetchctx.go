package tiered

import (
	"context"
	"sync"
	"time"
)

// fetchCtx is a flight's fetch context: the first caller's values, ended
// by cancel when every caller has left or the fetch returned, and by its
// deadline. context.WithTimeout made a timer and three allocations on
// every loaded miss, most often for nothing: a loader that never looks at
// its ctx, and Redis calls, which bound it by its deadline (Deadline, Err)
// without asking for Done. So the timer starts only when Done or
// AfterFunc is asked for; Err reads the clock until then. It is allocated
// only when a flight's leader hands the fetch to a worker.
//
// AfterFunc makes it what the context package calls an afterFuncer: a
// context derived from it (WithCancel, WithTimeout, AfterFunc) registers
// here instead of starting a goroutine to watch Done.
type fetchCtx struct {
	values   context.Context // context.WithoutCancel of the first caller's
	deadline time.Time

	mu    sync.Mutex
	done  chan struct{} // made by Done or AfterFunc
	err   error
	timer *time.Timer
	after map[*func()]struct{}
}

func (c *fetchCtx) init(values context.Context, timeout time.Duration) {
	c.values, c.deadline = values, time.Now().Add(timeout)
}

func (c *fetchCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *fetchCtx) Value(key any) any { return c.values.Value(key) }

func (c *fetchCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchLocked()
	return c.done
}

func (c *fetchCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !time.Now().Before(c.deadline) {
		c.endLocked(context.DeadlineExceeded)
	}
	return c.err
}

// AfterFunc runs f on a goroutine of its own once the context ends, unless
// stop is called first (stop reports whether it was).
func (c *fetchCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watchLocked()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	if c.after == nil {
		c.after = map[*func()]struct{}{}
	}
	c.after[&f] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.after[&f]
		delete(c.after, &f)
		return ok
	}
}

// watchLocked makes the done channel and, unless the context has ended,
// the timer that ends it at the deadline.
func (c *fetchCtx) watchLocked() {
	if c.done != nil {
		return
	}
	c.done = make(chan struct{})
	if c.err != nil {
		close(c.done)
		return
	}
	c.timer = time.AfterFunc(time.Until(c.deadline), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.endLocked(context.DeadlineExceeded)
	})
}

// cancel ends the context (Canceled) if it has not ended.
func (c *fetchCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(context.Canceled)
}

func (c *fetchCtx) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	for f := range c.after {
		go (*f)()
	}
	c.after = nil
}

// ended is ctx's error, or DeadlineExceeded once its deadline has passed:
// rueidis times a call out by ctx's deadline with a timer of its own,
// which may fire a moment before ctx's Err reports it, and a call that
// failed so failed for its caller's end, not Redis's.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
