package coherence

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/wait"
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
	// Client is the caller's rueidis client. Required. The bus subscribes
	// on a connection of its own, which Dedicate takes from the client's
	// pool and the bus closes when done (see owned.go): any client
	// options work, and buses sharing a client never share a subscription.
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
	// OnArrival, optional, sees each message OnMessage will get (this
	// namespace's, from another instance) as soon as it is read off the
	// connection, before it waits its turn in the queue; OnMessage still
	// gets it, in order. It runs on the connection's reading goroutine,
	// concurrently with OnMessage, so it must be quick and never block: it
	// is for what makes stale copies stop being served sooner (the
	// queue's hand-off is a goroutine switch, on a busy machine a
	// scheduling delay), not for the invalidation itself.
	OnArrival func(Message)
	// OnGap is told that invalidations may have been lost. Required. It
	// runs on the Bus's goroutine, ordered with OnMessage.
	OnGap func(GapReason)
	// QueueSize bounds the messages received but not yet applied (their
	// bytes are bounded too: maxQueuedBytes). Default 4096.
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
	// OnHold, optional, is told true as soon as the bus learns of a gap
	// (from the moment its subscription is lost, not only once it is
	// back), and false once it has dealt with it (replay or OnGap) and applied the
	// messages that queued up meanwhile: a local tier should not be read in
	// between. Calls come in pairs, possibly overlapping and from different
	// goroutines: keep a count.
	OnHold func(held bool)
	// OnRefused, optional, is told when Redis refuses a command the bus
	// needs after it started (a SUBSCRIBE or a ping's PUBLISH that the ACL
	// user may not run): a configuration error, wrapping errRefused and
	// Redis's reply. It is called once per episode, not per retry, from
	// the bus's goroutines; it must not block.
	OnRefused func(error)
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
	Refusals      uint64 // commands Redis refused (see errRefused), every retry counted
	Pings         uint64 // probes answered: own pings back (Bus), PINGs (Tracker)
}

type event struct {
	payload    string    // a raw message, or empty for a gap
	msg        *Message  // payload decoded, when OnArrival has seen it
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
	ready    chan struct{} // closed at the first confirmation
	failed   chan error    // a refusal before it
	closed   sync.Once
	refusals refusals
	lastErr  lastError

	lastPingEcho atomic.Int64 // PublishedAt of the newest own ping received
	lastPingSent atomic.Int64 // PublishedAt of the newest ping published
	// down: the subscription was lost and is not back; the local tier is
	// held meanwhile (receive takes the hold, the next confirmation
	// hands it over to the gap it queues).
	down atomic.Bool
	// pingTo is where pings are published: pingChan, except in a test that
	// simulates a subscription which silently stopped receiving.
	pingTo atomic.Pointer[string]

	received, echoes, foreign, undecodable, resubscribes, pingTimeouts, subscriptions, pings atomic.Uint64
	repairs, replayed, unrepaired                                                            atomic.Uint64

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

// Subscribe starts a Bus and returns once the subscription is confirmed;
// with an error wrapping errRefused and Redis's reply, at once, if Redis
// refuses the SUBSCRIBE; or with ctx's error (and the last attempt's) if
// it is not confirmed first.
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
		failed:   make(chan error, 1),
		refusals: refusals{on: opts.OnRefused},
	}
	b.pingTo.Store(&b.pingChan)
	b.queue.onFirstDrop = func() { b.hold(true) }
	b.wg.Add(1)
	go b.receive(runCtx)
	select {
	case <-b.ready:
	case err := <-b.failed:
		b.Close()
		return nil, err
	case <-ctx.Done():
		// Not waited for: an attempt in flight may be a dial, which only
		// the client's dial timeout ends; it closes what it opened.
		go b.Close()
		return nil, fmt.Errorf("coherence: subscribe to %q: %w", opts.Channel, b.lastErr.wrap(ctx.Err()))
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
		b.up()
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
		Refusals:      b.refusals.count.Load(),
		Pings:         b.pings.Load(),
	}
}

// receive keeps the bus subscribed until ctx ends, on a connection of its
// own (owned.go): SUBSCRIBE goes through Do, messages and confirmations
// arrive through the connection's pub/sub hooks, on its reader goroutine.
// A lost connection is replaced at once; a failed attempt is retried after
// a back-off of at most maxResubscribeBackoff, on a Cluster on the next
// node. A refused SUBSCRIBE (an ACL without @pubsub or the channel) is
// Subscribe's error before the first confirmation, and is reported to
// OnRefused and retried every refusedRetry after it.
func (b *Bus) receive(ctx context.Context) {
	defer b.wg.Done()
	backoff := 10 * time.Millisecond
	node := rand.IntN(1 << 16) // where a Cluster's node list is entered
	for ctx.Err() == nil {
		subscribed, err := b.session(ctx, node)
		if ctx.Err() != nil {
			return
		}
		if b.started() && !b.down.Swap(true) {
			// Nothing published from now until a new confirmation
			// arrives: a write meanwhile would leave this replica
			// serving the old value from its local tier for as long as
			// reconnecting takes, beyond one delivery. Reads go to
			// Redis until then.
			b.hold(true)
		}
		switch {
		case subscribed:
			backoff = 10 * time.Millisecond // it worked: resubscribe at once
			continue
		}
		if ref := refusal(err); ref != nil {
			if !b.started() {
				b.failed <- ref
				return
			}
			b.refusals.refused("subscribe", ref)
			if !wait.Sleep(ctx, refusedRetry) {
				return
			}
			continue
		}
		b.lastErr.store(err)
		node++
		if !backOff(ctx, &backoff) {
			return
		}
	}
}

// session subscribes on a new connection and keeps it until the connection
// is lost or ctx ends; closing it unsubscribes everything it had. It
// reports whether the subscription was confirmed, or why not.
func (b *Bus) session(ctx context.Context, node int) (subscribed bool, err error) {
	d := dedicate(b.opts.Client, node)
	defer d.Close()
	lost := d.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage, OnSubscription: b.onSubscription})
	sctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout)
	err = d.Do(sctx, d.B().Subscribe().Channel(b.opts.Channel, b.pingChan).Build()).Error()
	cancel()
	if err != nil {
		return false, fmt.Errorf("SUBSCRIBE %s %s: %w", b.opts.Channel, b.pingChan, err)
	}
	b.refusals.accepted("subscribe")
	select {
	case <-ctx.Done():
	case <-lost:
	}
	return true, nil
}

// started reports whether the first subscription was confirmed.
func (b *Bus) started() bool {
	select {
	case <-b.ready:
		return true
	default:
		return false
	}
}

// backOff waits *d, or reports false if ctx ends first, and doubles *d up
// to maxResubscribeBackoff: 100 ms, because a subscription (or tracking
// connection) that is down is a window of possibly stale local reads, after
// a Sentinel failover until the retry finds the new master, and a retry is
// only a dial.
func backOff(ctx context.Context, d *time.Duration) bool {
	if !wait.Sleep(ctx, *d) {
		return false
	}
	*d = min(2**d, maxResubscribeBackoff)
	return true
}

// onSubscription runs on the connection's reader goroutine: no blocking.
// A confirmation after the first is a new connection's: what was published
// while none was subscribed is lost. The gap is queued here, before any
// message of the new subscription, so that a resumable bus replays from
// the position it had.
func (b *Bus) onSubscription(s rueidis.PubSubSubscription) {
	if s.Kind != "subscribe" || s.Channel != b.opts.Channel {
		return
	}
	if b.subscriptions.Add(1) == 1 {
		close(b.ready)
		return
	}
	b.resubscribes.Add(1)
	b.enqueueGap(GapResubscribe)
	b.up() // the gap's own hold covers the tier from here
}

// ownPing reports whether msg, read on the ping channel, may be one of
// this bus's pings: its origin, and a time no later than the newest ping
// the bus published. Anything may publish on the channel; a ping from
// ahead of time would hide ping timeouts and move the slot logs'
// checkpoint past messages not read yet, so that a replay found nothing to
// apply.
func (b *Bus) ownPing(msg Message) bool {
	return msg.Origin == b.opts.Origin && msg.PublishedAt > 0 && msg.PublishedAt <= b.lastPingSent.Load()
}

// up ends the hold taken when the subscription was lost, if any.
func (b *Bus) up() {
	if b.down.Swap(false) {
		b.hold(false)
	}
}

func (b *Bus) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == b.pingChan {
		if msg, err := decodeMessage(m.Message); err == nil && msg.Kind == kindPing && b.ownPing(msg) {
			b.pings.Add(1)
			b.lastPingEcho.Store(msg.PublishedAt)
			if b.opts.SlotLogKey != nil {
				b.enqueue(event{checkpoint: msg.PublishedAt}, 0)
			}
		}
		return
	}
	size := len(m.Message) // what the event holds, decoded or not
	if b.opts.OnArrival == nil {
		b.enqueue(event{payload: m.Message}, size)
		return
	}
	msg, err := decodeMessage(m.Message)
	if err != nil {
		b.enqueue(event{payload: m.Message}, size) // undecodable: a gap, in turn
		return
	}
	if msg.Origin != b.opts.Origin && msg.Namespace == b.opts.Namespace {
		b.opts.OnArrival(msg)
	}
	b.enqueue(event{msg: &msg}, size)
}

func (b *Bus) enqueue(e event, size int) { b.queue.push(e, size) }

// enqueueGap queues a gap, holding the local tier until it is dealt with.
// A gap the queue drops is held, and dealt with, as the overflow.
func (b *Bus) enqueueGap(reason GapReason) {
	b.hold(true)
	if !b.queue.push(event{gap: reason, at: time.Now()}, 0) {
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
	if e.msg != nil {
		b.handleMessage(*e.msg)
		return
	}
	m, err := decodeMessage(e.payload)
	if err != nil {
		b.undecodable.Add(1)
		b.hold(true)
		b.gap(GapUndecodable, time.Now())
		b.releaseLater()
		return
	}
	b.handleMessage(m)
}

// handleMessage notes m's place in the log, if any, and delivers it.
func (b *Bus) handleMessage(m Message) {
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
