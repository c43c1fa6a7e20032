package remote

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Every Redis call runs under a deadline (rueidis waits for a reply as long
// as its ctx lets it). Making one per call costs a context and a timer,
// which on the miss path cost more than the rest of the call's own work. So:
//
//   - a ctx whose deadline comes within the timeout is used as it is;
//   - context.Background and context.TODO (which can never end and carry
//     no values) share one deadline context with every such call made within the same slack, a
//     tenth of the timeout: the deadline is between the timeout and the
//     timeout plus the slack away, never sooner, and a new one is made at
//     most every slack;
//   - any other ctx gets its own, as before.
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

// bound returns ctx bounded by the timeout, and a cancel func when it made
// a context of its own (nil otherwise).
func (d *deadlines) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d.timeout {
		return ctx, nil
	}
	if ctx != context.Background() && ctx != context.TODO() {
		return context.WithTimeout(ctx, d.timeout)
	}
	return d.share(), nil
}

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
