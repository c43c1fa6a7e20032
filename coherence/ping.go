package coherence

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"
)

// ping publishes a probe to the bus's own ping channel every interval and
// reports a gap when one that Redis accepted did not come back in time.
func (b *Bus) ping(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.PingInterval)
	defer t.Stop()
	c := b.opts.Client
	var w pingWatch
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		if w.overdue(now, b.lastPingEcho.Load(), b.opts.PingTimeout) {
			b.pingTimeouts.Add(1)
			b.enqueueGap(GapPingTimeout)
		}
		msg := Message{Origin: b.opts.Origin, Namespace: b.opts.Namespace, Kind: kindPing, PublishedAt: now}
		b.lastPingSent.Store(now) // before it can come back
		pctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout)
		to := *b.pingTo.Load()
		receivers, err := c.Do(pctx, c.B().Publish().Channel(to).Message(rueidis.BinaryString(msg.Encode())).Build()).AsInt64()
		cancel()
		if ref := refusal(err); ref != nil {
			// Not a gap: Redis did not accept the ping. A configuration
			// error, reported once; the subscription is probed no more
			// until it is fixed.
			b.refusals.refused("publish", fmt.Errorf("PUBLISH %s: %w", to, ref))
		} else if err == nil {
			b.refusals.accepted("publish")
			w.accept(now, time.Now().UnixNano(), receivers, b.opts.PingTimeout)
		}
	}
}

// pingWatch is the oldest ping Redis accepted that has not come back yet.
// Its time to come back runs from the acceptance, not from the PUBLISH: a
// PUBLISH slow to be answered (a busy machine, a slow Redis) had been
// delivered to the subscribers by then, and is no sign that the
// subscription lost it. Times are Unix ns.
type pingWatch struct {
	sent     int64 // its PublishedAt, which its echo carries; 0: none
	accepted int64 // when Redis's acceptance was seen
}

// accept records a ping sent at sent and accepted at at, unless an older
// one is still out. A ping that reached no receiver means the subscription
// is gone already: it is overdue from the start, and times out at the next
// look unless a ping came back within timeout before it.
func (w *pingWatch) accept(sent, at, receivers int64, timeout time.Duration) {
	if w.sent != 0 {
		return
	}
	w.sent, w.accepted = sent, at
	if receivers == 0 {
		w.sent = sent - timeout.Nanoseconds() - 1
		w.accepted = w.sent
	}
}

// overdue reports whether, at now, the ping out has not come back (no echo
// of it or a later one: lastEcho) within timeout of its acceptance; it
// then forgets it, to probe again from scratch. An echo forgets it too.
func (w *pingWatch) overdue(now, lastEcho int64, timeout time.Duration) bool {
	if w.sent != 0 && lastEcho >= w.sent {
		w.sent = 0
	}
	if w.sent == 0 || now-w.accepted <= timeout.Nanoseconds() {
		return false
	}
	w.sent = 0
	return true
}
