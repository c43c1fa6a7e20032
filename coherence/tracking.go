package coherence

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/wait"
)

// GapTrackingFlush: Redis told a tracking connection that every key may
// have changed (FLUSHALL, FLUSHDB, or the connection was lost).
const GapTrackingFlush GapReason = "tracking-flush"

// TrackingOptions configures a Tracker. Zero values mean the defaults.
type TrackingOptions struct {
	// Client is the caller's rueidis client (RESP3, Redis 6+). Required.
	// Its default options work: client-side caching opens every
	// connection with CLIENT TRACKING ON OPTIN, and the tracker turns that
	// off on its own connections before it turns broadcast mode on. A
	// ClientOption.OnInvalidations hook, if set, also sees the tracker's
	// pushes (rueidis calls it for every connection).
	Client rueidis.Client
	// Prefix is the key prefix tracked (CLIENT TRACKING … BCAST PREFIX).
	// Required.
	Prefix string
	// OnKeys is told of Redis keys under Prefix that changed, expired or
	// were evicted, by anyone. Required. It runs on the Tracker's
	// goroutine, in order with OnGap.
	OnKeys func(redisKeys []string)
	// OnArrival, optional, as Options.OnArrival: sees each push's keys as
	// it is read off the connection, ahead of OnKeys (which still gets
	// them, in order); it runs on the connection's reading goroutine and
	// must not block.
	OnArrival func(redisKeys []string)
	// OnGap is told that changes may have been missed. Required.
	OnGap func(GapReason)
	// OnHold, optional, as Options.OnHold: told true when a tracking
	// connection is lost and false once its successor is set up and the
	// gap reported, so a local tier is not refilled from Redis while no
	// push can arrive; and, likewise, from a dropped push (the queue was
	// full) until its overflow gap is reported. Calls come in pairs, one
	// pair per node and one for the drops at most.
	OnHold func(held bool)
	// QueueSize bounds the pushes received but not yet applied (their
	// keys' bytes are bounded too: maxQueuedBytes). Default 4096.
	QueueSize int
	// PingInterval is how often the tracking connection is checked with a
	// PING; one not answered within PingTimeout is closed and replaced.
	// An error reply is an answer: the connection is alive (a refused PING
	// goes to OnRefused). Defaults 1s and 2s; a negative PingInterval
	// disables the check.
	PingInterval, PingTimeout time.Duration
	// OnRefused, optional, is told when Redis refuses a command the
	// tracker needs after it started (CLIENT TRACKING, PING): a
	// configuration error wrapping errRefused and Redis's reply, reported
	// once per episode. It must not block.
	OnRefused func(error)
}

func (o *TrackingOptions) validate() error {
	switch {
	case o.Client == nil:
		return fmt.Errorf("%w: Client is nil", ErrInvalidOptions)
	case o.Prefix == "":
		return fmt.Errorf("%w: Prefix is empty", ErrInvalidOptions)
	case o.OnKeys == nil || o.OnGap == nil:
		return fmt.Errorf("%w: OnKeys and OnGap are required", ErrInvalidOptions)
	case o.QueueSize < 0 || o.PingTimeout < 0:
		return fmt.Errorf("%w: QueueSize and PingTimeout must not be negative", ErrInvalidOptions)
	}
	return nil
}

// Tracker is the tracking transport: Redis server-assisted invalidation in
// broadcast mode on one dedicated connection per Redis node (one on a
// single Redis or Sentinel; one per node of a Cluster, whose nodes each push
// only the changes of their own keys). Redis pushes the name of every key
// under the prefix that is written, deleted, expired or evicted, whoever
// changed it, so writes by programs that do not use tiercache invalidate
// too. Losing a connection loses pushes: it is reported to OnGap (the cache
// flushes) and a new connection is set up. On a Cluster the node list is
// checked every PingInterval; a node that appears (slots moved to it) is
// tracked, and reported as a gap, since it took writes untracked.
type Tracker struct {
	opts   TrackingOptions
	queue  *eventQueue[trackingEvent]
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	// nodes cancels each node's tracking; only Track and watchNodes use it.
	nodes    map[string]context.CancelFunc
	refusals refusals
	lastErr  lastError

	received, resubscribes, subscriptions, pingTimeouts, pings atomic.Uint64
}

type trackingEvent struct {
	keys []string
	gap  GapReason
	// release ends a hold taken when the connection was lost, once
	// the gap is reported.
	release bool
}

// Track sets tracking up and returns once Redis has accepted it; with an
// error wrapping errRefused and Redis's reply, at once, if Redis refuses
// CLIENT TRACKING or PING; or with ctx's error (and the last attempt's) if
// it has not been set up first.
func Track(ctx context.Context, opts TrackingOptions) (*Tracker, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = 4096
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = time.Second
	}
	if opts.PingTimeout == 0 {
		opts.PingTimeout = 2 * time.Second
	}
	runCtx, cancel := context.WithCancel(context.Background())
	t := &Tracker{opts: opts, queue: newEventQueue[trackingEvent](opts.QueueSize), cancel: cancel,
		nodes: map[string]context.CancelFunc{}, refusals: refusals{on: opts.OnRefused}}
	// Dropped pushes hold the local tier until their overflow gap is
	// reported, as a Bus's do: the dropped keys' copies are not served
	// meanwhile.
	t.queue.onFirstDrop = func() { t.hold(true) }
	t.wg.Add(1)
	go t.apply(runCtx)
	nodes := t.nodeClients()
	ready := make(chan error, len(nodes))
	for addr, c := range nodes {
		t.startNode(runCtx, addr, c, ready, false)
	}
	for range nodes {
		select {
		case err := <-ready:
			if err != nil {
				t.Close()
				return nil, err
			}
		case <-ctx.Done():
			go t.Close() // not waited for: an attempt may be in a dial (see Subscribe)
			return nil, fmt.Errorf("coherence: tracking %q: %w", opts.Prefix, t.lastErr.wrap(ctx.Err()))
		}
	}
	if opts.Client.Mode() == rueidis.ClientModeCluster && opts.PingInterval > 0 {
		t.wg.Add(1)
		go t.watchNodes(runCtx)
	}
	return t, nil
}

// nodeClients are the clients to track through: the caller's, or on a
// Cluster one per node.
func (t *Tracker) nodeClients() map[string]rueidis.Client {
	if t.opts.Client.Mode() != rueidis.ClientModeCluster {
		return map[string]rueidis.Client{"": t.opts.Client}
	}
	return t.opts.Client.Nodes()
}

// startNode tracks through c until ctx ends or the node is dropped.
func (t *Tracker) startNode(ctx context.Context, addr string, c rueidis.Client, ready chan<- error, gapFirst bool) {
	nctx, stop := context.WithCancel(ctx)
	t.nodes[addr] = stop
	t.wg.Add(1)
	go t.run(nctx, c, ready, gapFirst)
}

// watchNodes follows a Cluster's node list.
func (t *Tracker) watchNodes(ctx context.Context) {
	defer t.wg.Done()
	tick := time.NewTicker(t.opts.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := t.nodeClients()
		for addr, stop := range t.nodes {
			if _, ok := now[addr]; !ok {
				stop()
				delete(t.nodes, addr)
			}
		}
		for addr, c := range now {
			if _, ok := t.nodes[addr]; !ok {
				t.startNode(ctx, addr, c, nil, true)
			}
		}
	}
}

// Close closes the tracking connections and waits for the Tracker's
// goroutines. A connection is closed, never returned to the client's pool
// still tracking. Idempotent.
func (t *Tracker) Close() {
	t.closed.Do(func() {
		t.cancel()
		t.wg.Wait()
	})
}

// Resync reports a gap to OnGap, in order with the pushes: the tracking
// transport has no log to replay.
func (t *Tracker) Resync(reason GapReason) { t.enqueue(trackingEvent{gap: reason}) }

// Stats returns the counters, in the Bus's terms: Received counts pushes,
// Subscriptions and Resubscribes the times tracking was set up.
func (t *Tracker) Stats() Stats {
	return Stats{
		Received:      t.received.Load(),
		Overflows:     t.queue.overflows.Load(),
		Resubscribes:  t.resubscribes.Load(),
		Subscriptions: t.subscriptions.Load(),
		PingTimeouts:  t.pingTimeouts.Load(),
		Refusals:      t.refusals.count.Load(),
		Pings:         t.pings.Load(),
	}
}

// run keeps one tracking connection through c alive until ctx ends. The
// first setup's result goes to ready when it is not nil: success, or a
// refusal (a connection error is retried until Track's ctx gives up);
// gapFirst reports a gap once that first setup is done.
func (t *Tracker) run(ctx context.Context, c rueidis.Client, ready chan<- error, gapFirst bool) {
	defer t.wg.Done()
	backoff := 10 * time.Millisecond
	first := true
	held := false // this node's connection was lost and is not back
	defer func() {
		if held {
			t.hold(false)
		}
	}()
	for ctx.Err() == nil {
		lost, err := t.session(ctx, c, first, ready, gapFirst, &held)
		if ctx.Err() != nil {
			return
		}
		if (lost || !first) && !held {
			// No push can arrive until a new connection is set up.
			held = true
			t.hold(true)
		}
		if lost {
			first = false
			backoff = 10 * time.Millisecond
			continue
		}
		if ref := refusal(err); ref != nil {
			if first && ready != nil {
				ready <- ref
				return
			}
			t.refusals.refused("tracking", ref)
			if !wait.Sleep(ctx, refusedRetry) {
				return
			}
			continue
		}
		t.lastErr.store(err)
		if !backOff(ctx, &backoff) {
			return
		}
	}
}

// session sets tracking up on a connection of its own and keeps it until
// the connection is lost (lost true) or ctx ends. The connection is closed
// when the session ends, so it never goes back to the client's pool
// tracking.
func (t *Tracker) session(ctx context.Context, c rueidis.Client, first bool, ready chan<- error, gapFirst bool, held *bool) (lost bool, err error) {
	d, _ := c.Dedicate() // Close releases it
	defer d.Close()
	gone := d.SetOnInvalidations(func(keys []rueidis.RedisMessage) {
		if keys == nil {
			t.enqueue(trackingEvent{gap: GapTrackingFlush})
			return
		}
		names := make([]string, 0, len(keys))
		for _, k := range keys {
			if s, err := k.ToString(); err == nil {
				names = append(names, s)
			}
		}
		if t.opts.OnArrival != nil {
			t.opts.OnArrival(names)
		}
		t.enqueue(trackingEvent{keys: names})
	})
	// rueidis's client-side caching (on by default) opened the connection
	// with CLIENT TRACKING ON OPTIN, and Redis cannot switch a tracking
	// connection to BCAST: turn it off first. rueidis keeps no state about
	// a connection's tracking mode beyond that opening (its own cache on
	// this connection is never used: a dedicated client has no DoCache),
	// and the connection is closed, never pooled, afterwards. The PING
	// proves at start that the check below is allowed.
	setup, cancel := context.WithTimeout(ctx, t.opts.PingTimeout)
	res := d.DoMulti(setup,
		d.B().ClientTracking().Off().Build(),
		d.B().ClientTracking().On().Prefix().Prefix(t.opts.Prefix).Bcast().Build(),
		d.B().Ping().Build())
	cancel()
	for i, name := range []string{"CLIENT TRACKING OFF", "CLIENT TRACKING ON BCAST PREFIX " + t.opts.Prefix, "PING"} {
		if err := res[i].Error(); err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
	}
	t.refusals.accepted("tracking")
	t.subscriptions.Add(1)
	if first && ready != nil {
		ready <- nil
	}
	if !first || gapFirst {
		// Pushes were lost between the old connection and this one.
		t.resubscribes.Add(1)
		if !t.queue.push(trackingEvent{gap: GapResubscribe, release: *held}, 0) && *held {
			t.hold(false) // dropped: the overflow's gap follows
		}
		*held = false
	}
	var tick <-chan time.Time
	if t.opts.PingInterval > 0 {
		ticker := time.NewTicker(t.opts.PingInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			// Closing the connection would report a flush to OnGap.
			d.SetPubSubHooks(rueidis.PubSubHooks{})
			return false, nil
		case <-gone:
			return true, nil
		case <-tick:
			pctx, cancel := context.WithTimeout(ctx, t.opts.PingTimeout)
			err := d.Do(pctx, d.B().Ping().Build()).Error()
			cancel()
			switch {
			case err == nil:
				t.pings.Add(1)
				t.refusals.accepted("ping")
			case ctx.Err() != nil:
			case isReply(err):
				// The connection answered: it is alive, whatever it said.
				if ref := refusal(err); ref != nil {
					t.refusals.refused("ping", fmt.Errorf("PING: %w", ref))
				}
			default:
				// A connection that does not answer may not push either.
				t.pingTimeouts.Add(1)
				return true, nil
			}
		}
	}
}

func (t *Tracker) enqueue(e trackingEvent) {
	size := 0
	for _, k := range e.keys {
		size += len(k)
	}
	t.queue.push(e, size)
}

func (t *Tracker) hold(on bool) {
	if t.opts.OnHold != nil {
		t.opts.OnHold(on)
	}
}

func (t *Tracker) apply(ctx context.Context) {
	defer t.wg.Done()
	t.queue.drain(ctx, func(e trackingEvent) {
		if e.gap != "" {
			t.opts.OnGap(e.gap)
			if e.release {
				t.hold(false)
			}
			return
		}
		t.received.Add(1)
		t.opts.OnKeys(e.keys)
	}, func() {
		t.opts.OnGap(GapOverflow)
		t.hold(false)
	})
}
