package coherence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// maxResubscribeBackoff caps the pause between failed subscription attempts.
const maxResubscribeBackoff = 100 * time.Millisecond

// ErrInvalidOptions is returned by Subscribe for options that cannot work.
var ErrInvalidOptions = errors.New("coherence: invalid options")

// GapReason says why invalidations may have been lost.
type GapReason string

// Gap reasons; see the package documentation.
const (
	GapResubscribe GapReason = "resubscribe"
	GapOverflow    GapReason = "overflow"
	GapUndecodable GapReason = "undecodable"
	GapPingTimeout GapReason = "ping-timeout"
)

// Options configures a Bus. Zero values mean the documented defaults.
type Options struct {
	// Client is the caller's rueidis client. Required.
	Client rueidis.Client
	// Channel is the invalidation channel. Required.
	Channel string
	// Namespace is checked against every message's; others are ignored.
	Namespace string
	// Origin identifies this instance; its own messages are skipped.
	Origin uint64
	// OnMessage applies one message. Required. It runs on the Bus's
	// goroutine, in arrival order.
	OnMessage func(Message)
	// OnGap is told that invalidations may have been lost. Required. It
	// runs on the Bus's goroutine, ordered with OnMessage.
	OnGap func(GapReason)
	// QueueSize bounds the messages received but not yet applied.
	// Default 4096.
	QueueSize int
	// PingInterval is how often the bus probes its own subscription.
	// Default 1s; negative disables.
	PingInterval time.Duration
	// PingTimeout is how long an accepted ping may take to come back.
	// Default 2s. It also bounds a replay of the invalidation log.
	PingTimeout time.Duration
	// LogKey, when set, makes the bus resumable: publishers log every
	// message in this capped stream (remote.Options.InvalidationLog), and
	// after a gap the bus replays what it missed instead of reporting it;
	// OnGap is called only when the log no longer reaches back far enough
	// or cannot be read. See resume.go.
	LogKey string
	// SlotLogKey, instead of LogKey on a Redis Cluster, names the log of
	// each hash slot, where publishers keep messages for LogAge (see
	// slotlogs.go). Repairs then rely on the bus's pings: PingInterval
	// must be positive, and well under LogAge.
	SlotLogKey func(slot uint16) string
	LogAge     time.Duration
	// OnRepair, optional, is told of each gap the log repaired and how many
	// messages the replay applied.
	OnRepair func(reason GapReason, replayed int)
	// OnHold, optional, is told true as soon as the bus learns of a gap,
	// and false once it has dealt with it (replay or OnGap) and applied the
	// messages that queued up meanwhile: a local tier should not be read in
	// between. Calls come in pairs, possibly overlapping and from different
	// goroutines: keep a count.
	OnHold func(held bool)
}

func (o *Options) validate() error {
	switch {
	case o.Client == nil:
		return fmt.Errorf("%w: Client is nil", ErrInvalidOptions)
	case o.Channel == "":
		return fmt.Errorf("%w: Channel is empty", ErrInvalidOptions)
	case o.OnMessage == nil || o.OnGap == nil:
		return fmt.Errorf("%w: OnMessage and OnGap are required", ErrInvalidOptions)
	case o.QueueSize < 0:
		return fmt.Errorf("%w: QueueSize %d < 0", ErrInvalidOptions, o.QueueSize)
	case o.PingTimeout < 0:
		return fmt.Errorf("%w: PingTimeout %v < 0", ErrInvalidOptions, o.PingTimeout)
	case o.LogKey != "" && o.SlotLogKey != nil:
		return fmt.Errorf("%w: LogKey and SlotLogKey are exclusive", ErrInvalidOptions)
	case o.SlotLogKey != nil && o.PingInterval < 0:
		return fmt.Errorf("%w: the per-slot logs of a Redis Cluster (SlotLogKey) need pings (PingInterval ≥ 0)", ErrInvalidOptions)
	case o.SlotLogKey != nil && o.LogAge <= 2*slotLogSkew+pingInterval(o.PingInterval):
		return fmt.Errorf("%w: log age %v leaves no gap repairable: it must exceed %v plus PingInterval", ErrInvalidOptions, o.LogAge, 2*slotLogSkew)
	}
	return nil
}

// pingInterval is the interval a PingInterval option means.
func pingInterval(d time.Duration) time.Duration {
	if d == 0 {
		return time.Second
	}
	return d
}

func (o *Options) setDefaults() {
	if o.QueueSize == 0 {
		o.QueueSize = 4096
	}
	o.PingInterval = pingInterval(o.PingInterval)
	if o.PingTimeout == 0 {
		o.PingTimeout = 2 * time.Second
	}
}

// Stats counts what the bus did since Subscribe.
type Stats struct {
	Received      uint64 // messages applied (echoes and pings excluded)
	Echoes        uint64 // own messages skipped
	Foreign       uint64 // messages of another namespace, ignored
	Undecodable   uint64
	Overflows     uint64 // messages dropped because the queue was full
	Resubscribes  uint64
	PingTimeouts  uint64
	Subscriptions uint64 // subscription confirmations, the first included
	Repairs       uint64 // gaps repaired from the invalidation log
	Replayed      uint64 // messages applied by those repairs
	Unrepaired    uint64 // gaps the log could not repair (reported to OnGap)
}

type event struct {
	payload    string    // a raw message, or empty for a gap
	gap        GapReason // set for a gap
	at         time.Time // for a gap: when the bus learnt of it
	checkpoint int64     // set for an own ping back: when it was published
}

// Bus receives one namespace's invalidations. Close it when done.
type Bus struct {
	opts     Options
	pingChan string
	queue    *eventQueue[event]
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ready    chan struct{}
	closed   sync.Once

	lastPingEcho atomic.Int64 // PublishedAt of the newest own ping received
	// pingTo is where pings are published: pingChan, except in a test that
	// simulates a subscription which silently stopped receiving.
	pingTo atomic.Pointer[string]

	received, echoes, foreign, undecodable, resubscribes, pingTimeouts, subscriptions atomic.Uint64
	repairs, replayed, unrepaired                                                     atomic.Uint64

	// The apply goroutine's own state, once Subscribe has returned:
	//   - log is the invalidation log (resumable mode), else nil;
	//   - covered: every gap the bus learnt of before it has been dealt
	//     with (a replay that started later reads what it lost);
	//   - handled counts the events applied, and releases are the counts
	//     at which the holds of gaps dealt with end (see OnHold).
	log      resumeLog
	covered  time.Time
	handled  uint64
	releases []uint64
}

// Subscribe starts a Bus and returns once the subscription is confirmed, or
// with ctx's error if it is not confirmed first.
func Subscribe(ctx context.Context, opts Options) (*Bus, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	runCtx, cancel := context.WithCancel(context.Background())
	b := &Bus{
		opts:     opts,
		pingChan: opts.Channel + ":ping:" + strconv.FormatUint(opts.Origin, 36),
		queue:    newEventQueue[event](opts.QueueSize),
		cancel:   cancel,
		ready:    make(chan struct{}),
	}
	b.pingTo.Store(&b.pingChan)
	b.queue.onFirstDrop = func() { b.hold(true) }
	b.wg.Add(1)
	go b.receive(runCtx)
	select {
	case <-b.ready:
	case <-ctx.Done():
		b.Close()
		return nil, fmt.Errorf("coherence: subscribe to %q: %w", opts.Channel, ctx.Err())
	}
	switch {
	case opts.LogKey != "":
		b.log = &streamLog{c: opts.Client, key: opts.LogKey}
	case opts.SlotLogKey != nil:
		b.log = newSlotLogs(opts.Client, opts.SlotLogKey, opts.LogAge)
	}
	if b.log != nil {
		// The position is taken once subscribed, and before messages are
		// applied (they wait in the queue): what was published before it
		// predates this bus, what after it is delivered or in the log.
		if err := b.log.start(ctx); err != nil {
			b.Close()
			return nil, fmt.Errorf("coherence: invalidation log: %w", err)
		}
	}
	b.wg.Add(1)
	go b.apply(runCtx)
	if opts.PingInterval > 0 {
		b.wg.Add(1)
		go b.ping(runCtx)
	}
	return b, nil
}

// Close stops the bus and waits for its goroutines. Idempotent.
func (b *Bus) Close() {
	b.closed.Do(func() {
		b.cancel()
		b.wg.Wait()
	})
}

// Stats returns the counters.
func (b *Bus) Stats() Stats {
	return Stats{
		Received:      b.received.Load(),
		Echoes:        b.echoes.Load(),
		Foreign:       b.foreign.Load(),
		Undecodable:   b.undecodable.Load(),
		Overflows:     b.queue.overflows.Load(),
		Resubscribes:  b.resubscribes.Load(),
		PingTimeouts:  b.pingTimeouts.Load(),
		Subscriptions: b.subscriptions.Load(),
		Repairs:       b.repairs.Load(),
		Replayed:      b.replayed.Load(),
		Unrepaired:    b.unrepaired.Load(),
	}
}

// receive keeps a subscription open until ctx ends. rueidis resubscribes
// by itself after a disconnect, but its retry delay grows with every
// attempt within one Receive call (2^n µs, up to 1 s): after a few dozen
// disconnects over a long life, or a second of failed attempts (Redis
// restarting, a Sentinel failover), each attempt would wait a second, with
// invalidations lost all the while. So the Receive call is restarted when
// its subscription breaks, when a retry within it confirms, and when it has
// confirmed nothing for maxResubscribeBackoff; each restart starts
// rueidis's count again.
func (b *Bus) receive(ctx context.Context) {
	defer b.wg.Done()
	c := b.opts.Client
	sub := c.B().Subscribe().Channel(b.opts.Channel, b.pingChan).Build().Pin()
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		callCtx, restart := context.WithCancel(ctx)
		var confirmed atomic.Int64
		hookCtx := rueidis.WithOnSubscriptionHook(callCtx, func(s rueidis.PubSubSubscription) {
			if b.onSubscription(s) && confirmed.Add(1) > 1 {
				restart() // a retry within this call: start rueidis's count again
			}
		})
		hookCtx = rueidis.WithOnReceiveReturnHook(hookCtx, func(err error, conn rueidis.CommandClient) error {
			switch {
			case ctx.Err() != nil:
				b.unsubscribe(conn)
			case err != nil && callCtx.Err() == nil:
				restart() // the subscription broke: retry from this loop
			}
			return err
		})
		watchdog := time.AfterFunc(maxResubscribeBackoff, func() {
			if confirmed.Load() == 0 {
				restart() // nothing confirmed yet: attempt afresh
			}
		})
		start := time.Now()
		err := c.Receive(hookCtx, sub, b.onMessage)
		watchdog.Stop()
		restart()
		switch {
		case ctx.Err() != nil || errors.Is(err, rueidis.ErrClosing):
			return
		case confirmed.Load() > 0:
			backoff = 10 * time.Millisecond // it worked: resubscribe at once
		case time.Since(start) >= maxResubscribeBackoff:
			// The watchdog ended the call: it was the pause.
		case !backOff(ctx, &backoff):
			return
		}
	}
}

// backOff waits *d, or reports false if ctx ends first, and doubles *d up
// to maxResubscribeBackoff: 100 ms, because a subscription (or tracking
// connection) that is down is a window of possibly stale local reads, after
// a Sentinel failover until the retry finds the new master, and a retry is
// only a dial.
func backOff(ctx context.Context, d *time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*d):
	}
	*d = min(2**d, maxResubscribeBackoff)
	return true
}

// unsubscribe leaves the channels on the connection Receive used. rueidis
// does not when Receive's ctx ends, and the connection is the caller's: it
// outlives the bus, and would otherwise keep receiving (and dropping) the
// namespace's messages.
func (b *Bus) unsubscribe(conn rueidis.CommandClient) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Do(ctx, conn.B().Unsubscribe().Channel(b.opts.Channel, b.pingChan).Build())
}

// onSubscription runs on the connection's reader goroutine: no blocking.
// It reports whether s confirmed the invalidation channel's subscription.
func (b *Bus) onSubscription(s rueidis.PubSubSubscription) bool {
	if s.Kind != "subscribe" || s.Channel != b.opts.Channel {
		return false
	}
	if b.subscriptions.Add(1) == 1 {
		close(b.ready)
		return true
	}
	b.resubscribes.Add(1)
	b.enqueueGap(GapResubscribe)
	return true
}

func (b *Bus) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == b.pingChan {
		if msg, err := Decode([]byte(m.Message)); err == nil && msg.Kind == kindPing {
			b.lastPingEcho.Store(msg.PublishedAt)
			if b.opts.SlotLogKey != nil {
				b.enqueue(event{checkpoint: msg.PublishedAt})
			}
		}
		return
	}
	b.enqueue(event{payload: m.Message})
}

func (b *Bus) enqueue(e event) { b.queue.push(e) }

// enqueueGap queues a gap, holding the local tier until it is dealt with.
// A gap the queue drops is held, and dealt with, as the overflow.
func (b *Bus) enqueueGap(reason GapReason) {
	b.hold(true)
	if !b.queue.push(event{gap: reason, at: time.Now()}) {
		b.hold(false)
	}
}

func (b *Bus) hold(on bool) {
	if b.opts.OnHold != nil {
		b.opts.OnHold(on)
	}
}

func (b *Bus) apply(ctx context.Context) {
	defer b.wg.Done()
	b.queue.drain(ctx, func(e event) {
		b.handled++
		b.handle(e)
		b.releaseHolds()
	}, func() {
		b.gap(GapOverflow, time.Now())
		b.releaseLater()
	})
}

// releaseLater ends the hold of a gap just dealt with once the events
// queued meanwhile are applied too.
func (b *Bus) releaseLater() {
	b.releases = append(b.releases, b.handled+uint64(len(b.queue.events)))
	b.releaseHolds()
}

func (b *Bus) releaseHolds() {
	for len(b.releases) > 0 && b.releases[0] <= b.handled {
		b.releases = b.releases[1:]
		b.hold(false)
	}
}

func (b *Bus) handle(e event) {
	if e.gap != "" {
		b.gap(e.gap, e.at)
		b.releaseLater()
		return
	}
	if e.checkpoint != 0 {
		b.log.checkpoint(time.Unix(0, e.checkpoint))
		return
	}
	m, err := Decode([]byte(e.payload))
	if err != nil {
		b.undecodable.Add(1)
		b.hold(true)
		b.gap(GapUndecodable, time.Now())
		b.releaseLater()
		return
	}
	if b.log != nil {
		b.log.seen(m.LogID)
	}
	b.deliver(m)
}

// deliver applies m unless it is this instance's own or another
// namespace's, and reports whether it did.
func (b *Bus) deliver(m Message) bool {
	switch {
	case m.Origin == b.opts.Origin:
		b.echoes.Add(1)
	case m.Namespace != b.opts.Namespace:
		b.foreign.Add(1)
	default:
		b.received.Add(1)
		b.opts.OnMessage(m)
		return true
	}
	return false
}

// Resync asks the bus to treat the time since the last message as a gap:
// a replay in resumable mode, else OnGap(reason). It does not block; the
// gap is handled in order with the messages.
func (b *Bus) Resync(reason GapReason) { b.enqueueGap(reason) }

// ping publishes a probe to the bus's own ping channel every interval and
// reports a gap when one that Redis accepted did not come back in time.
func (b *Bus) ping(ctx context.Context) {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.PingInterval)
	defer t.Stop()
	c := b.opts.Client
	var pending int64 // PublishedAt of the oldest accepted, unanswered ping
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		if pending != 0 && b.lastPingEcho.Load() >= pending {
			pending = 0
		}
		if pending != 0 && now-pending > b.opts.PingTimeout.Nanoseconds() {
			b.pingTimeouts.Add(1)
			b.enqueueGap(GapPingTimeout)
			pending = 0 // probe again from scratch
		}
		msg := Message{Origin: b.opts.Origin, Namespace: b.opts.Namespace, Kind: kindPing, PublishedAt: now}
		pctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout)
		receivers, err := c.Do(pctx, c.B().Publish().Channel(*b.pingTo.Load()).Message(rueidis.BinaryString(msg.Encode())).Build()).AsInt64()
		cancel()
		// A ping Redis accepted with no receiver means our subscription is
		// gone already; treat it like one that never came back.
		if err == nil && pending == 0 {
			pending = now
			if receivers == 0 {
				pending = now - b.opts.PingTimeout.Nanoseconds() - 1
			}
		}
	}
}
