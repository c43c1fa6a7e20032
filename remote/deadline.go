package remote

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Every Redis call runs under a deadline (rueidis waits for a reply as long
// as its ctx lets it). Making one per call costs a context, a timer and,
// under a cancellable ctx, a registration with it: on the miss path that
// cost more than the rest of the call's own work. So:
//
//   - a ctx that is already done, or whose deadline comes within the
//     timeout plus the slack (a tenth of the timeout), is used as it is;
//   - every other call shares one deadline context with the calls made
//     within the same slack: the deadline is between the timeout and the
//     timeout plus the slack away, never sooner, and a new one is made at
//     most every slack. The caller's values travel with it (tracing hooks
//     see them), but not the caller's cancellation: a call already sent
//     when the caller gives up ends at Redis's reply or at the timeout.
//     A caller's cancellation is seen before each call, and by every wait
//     that is not a Redis reply (a lease wait, a flight).
type deadlines struct {
	timeout, slack time.Duration
	mu             sync.Mutex
	shared         atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx context.Context
	at  time.Time
	// cancel is kept, never called: the context ends by its deadline, and
	// others may still be using it.
	cancel context.CancelFunc
}

func newDeadlines(timeout time.Duration) *deadlines {
	return &deadlines{timeout: timeout, slack: max(timeout/10, time.Millisecond)}
}

// bound returns ctx bounded by the timeout.
func (d *deadlines) bound(ctx context.Context) context.Context {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d.timeout+d.slack {
		return ctx
	}
	if ctx == context.Background() || ctx == context.TODO() {
		return d.share()
	}
	if ctx.Err() != nil {
		return ctx // rueidis refuses it at once
	}
	return &withValuesOf{Context: d.share(), values: ctx}
}

// withValuesOf is a shared deadline context carrying a caller's values.
type withValuesOf struct {
	context.Context
	values context.Context
}

func (c *withValuesOf) Value(key any) any { return c.values.Value(key) }

// share returns a shared deadline context ending between timeout and
// timeout+slack from now.
func (d *deadlines) share() context.Context {
	now := time.Now()
	if s := d.shared.Load(); s != nil && s.at.Sub(now) >= d.timeout {
		return s.ctx
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.shared.Load(); s != nil && s.at.Sub(now) >= d.timeout {
		return s.ctx
	}
	at := now.Add(d.timeout + d.slack)
	ctx, cancel := context.WithDeadline(context.Background(), at)
	d.shared.Store(&sharedDeadline{ctx: ctx, at: at, cancel: cancel})
	return ctx
}
