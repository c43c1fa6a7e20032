package coherence

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// recorder collects what a bus delivers.
type recorder struct {
	mu   sync.Mutex
	msgs []Message
	gaps []GapReason
}

func (r *recorder) onMessage(m Message) { r.mu.Lock(); r.msgs = append(r.msgs, m); r.mu.Unlock() }
func (r *recorder) onGap(g GapReason)   { r.mu.Lock(); r.gaps = append(r.gaps, g); r.mu.Unlock() }

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func (r *recorder) hasGap(g GapReason) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.gaps {
		if x == g {
			return true
		}
	}
	return false
}

func startBus(t *testing.T, srv *redisserver.Server, opts Options) (*Bus, *recorder) {
	t.Helper()
	rec := &recorder{}
	if opts.Client == nil {
		opts.Client = redistest.Client(t, srv)
	}
	if opts.Channel == "" {
		opts.Channel = "ns:inv"
	}
	if opts.Namespace == "" {
		opts.Namespace = "ns"
	}
	if opts.OnMessage == nil {
		opts.OnMessage = rec.onMessage
	}
	opts.OnGap = rec.onGap
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Subscribe(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b, rec
}

func publish(t *testing.T, c rueidis.Client, ch string, payload []byte) {
	t.Helper()
	require.NoError(t, c.Do(context.Background(), c.B().Publish().Channel(ch).Message(rueidis.BinaryString(payload)).Build()).Error())
}

func TestBusDeliversAndSkipsEchoes(t *testing.T) {
	srv := redistest.Start(t)
	b, rec := startBus(t, srv, Options{Origin: 1})
	pub := redistest.Client(t, srv)
	publish(t, pub, "ns:inv", (&Message{Origin: 1, Namespace: "ns", Kind: KindKeys, Keys: []string{"own"}}).Encode())
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "other", Kind: KindKeys, Keys: []string{"foreign"}}).Encode())
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"a", "b"}}).Encode())
	require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, []string{"a", "b"}, rec.messages()[0].Keys)
	require.Eventually(t, func() bool { return b.Stats().Echoes == 1 && b.Stats().Foreign == 1 }, 5*time.Second, time.Millisecond)
	assert.False(t, rec.hasGap(GapResubscribe))
}

// arrivals records what an OnArrival callback and a stuck applier saw:
// the applier blocks on its first call until release is closed.
type arrivals struct {
	mu               sync.Mutex
	arrived, applied []string
	release          chan struct{}
}

func newArrivals() *arrivals { return &arrivals{release: make(chan struct{})} }

func (a *arrivals) arrive(keys ...string) {
	a.mu.Lock()
	a.arrived = append(a.arrived, keys...)
	a.mu.Unlock()
}

func (a *arrivals) apply(keys ...string) {
	a.mu.Lock()
	first := len(a.applied) == 0
	a.applied = append(a.applied, keys...)
	a.mu.Unlock()
	if first {
		<-a.release // the applier is stuck on its first call
	}
}

func (a *arrivals) seen() (arrived, applied []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.arrived), slices.Clone(a.applied)
}

// check waits until want has arrived and the applier has taken the first
// of them (it is stuck there: the queue's hand-off may come after the
// arrivals on a loaded machine), checks it holds only that one, then
// releases it and waits until it has applied them all, in order.
func (a *arrivals) check(t *testing.T, want []string) {
	t.Helper()
	require.Eventually(t, func() bool {
		arrived, applied := a.seen()
		return len(arrived) == len(want) && len(applied) > 0
	}, 5*time.Second, time.Millisecond)
	arrived, applied := a.seen()
	assert.Equal(t, want, arrived, "arrivals: only what the applier will get")
	assert.Equal(t, want[:1], applied, "the rest arrived while the first was still being applied")
	close(a.release)
	require.Eventually(t, func() bool { _, got := a.seen(); return len(got) == len(want) }, 5*time.Second, time.Millisecond)
	_, applied = a.seen()
	assert.Equal(t, want, applied)
}

// OnArrival sees a message as it is read, even while OnMessage is busy
// with an earlier one, and only the messages OnMessage will get; those
// still reach OnMessage, in order, with an undecodable one as a gap.
func TestBusOnArrivalRunsAheadOfTheQueue(t *testing.T) {
	srv := redistest.Start(t)
	a := newArrivals()
	_, rec := startBus(t, srv, Options{
		Origin:    1,
		OnArrival: func(m Message) { a.arrive(m.Keys...) },
		OnMessage: func(m Message) { a.apply(m.Keys...) },
	})
	pub := redistest.Client(t, srv)
	publish(t, pub, "ns:inv", (&Message{Origin: 1, Namespace: "ns", Kind: KindKeys, Keys: []string{"own"}}).Encode())
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "other", Kind: KindKeys, Keys: []string{"foreign"}}).Encode())
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"a"}}).Encode())
	publish(t, pub, "ns:inv", []byte("garbage"))
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"b"}}).Encode())
	a.check(t, []string{"a", "b"})
	require.Eventually(t, func() bool { return rec.hasGap(GapUndecodable) }, 5*time.Second, time.Millisecond)
}

func TestBusReportsUndecodableAsGap(t *testing.T) {
	srv := redistest.Start(t)
	_, rec := startBus(t, srv, Options{Origin: 1})
	publish(t, redistest.Client(t, srv), "ns:inv", []byte("garbage"))
	require.Eventually(t, func() bool { return rec.hasGap(GapUndecodable) }, 5*time.Second, time.Millisecond)
}

func TestBusReportsResubscribeAfterKill(t *testing.T) {
	srv := redistest.Start(t)
	b, rec := startBus(t, srv, Options{Origin: 1})
	n, err := srv.KillClients("pubsub")
	require.NoError(t, err)
	require.Positive(t, n)
	require.Eventually(t, func() bool { return rec.hasGap(GapResubscribe) }, 10*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, b.Stats().Resubscribes, "one new connection, one confirmation")
	// Messages flow again after the resubscribe.
	pub := redistest.Client(t, srv)
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"after"}}).Encode())
	require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 5*time.Second, time.Millisecond)
}

// TestBusResubscribesOncePerKill: the bus's connection is its own, so
// each kill of it costs one new connection and one resubscribe, however
// many kills come in a row.
func TestBusResubscribesOncePerKill(t *testing.T) {
	srv := redistest.Start(t)
	b, _ := startBus(t, srv, Options{Origin: 1, PingInterval: -1})
	for i := range 40 {
		before := b.Stats().Subscriptions
		n, err := srv.KillClients("pubsub")
		require.NoError(t, err)
		require.Equal(t, 1, n, "kill %d: the bus's connection is the server's only subscriber", i)
		require.Eventually(t, func() bool { return b.Stats().Subscriptions > before }, 10*time.Second, 100*time.Microsecond, "kill %d", i)
	}
	s := b.Stats()
	assert.EqualValues(t, 41, s.Subscriptions)
	assert.EqualValues(t, 40, s.Resubscribes)
}

// dialCounter is a rueidis DialCtxFn that counts dials.
type dialCounter struct{ n atomic.Int64 }

func (d *dialCounter) dial(ctx context.Context, dst string, dialer *net.Dialer, _ *tls.Config) (net.Conn, error) {
	d.n.Add(1)
	return dialer.DialContext(ctx, "tcp", dst)
}

// TestBusRetriesOnItsOwnWhileRedisIsDown: while Redis is down the bus
// dials a new connection at least every maxResubscribeBackoff (100 ms),
// not on a back-off that grows to seconds, so that it resubscribes soon
// after Redis (or a Sentinel's new master) is back. A 3 s outage must see
// about 30 attempts; a back-off growing from 10 ms to 1 s would make 9.
func TestBusRetriesOnItsOwnWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	var dials dialCounter
	c := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, DialCtxFn: dials.dial})
	b, _ := startBus(t, srv, Options{Client: c, Origin: 1, PingInterval: -1})
	srv.Kill()
	before := dials.n.Load()
	time.Sleep(3 * time.Second) // the outage being simulated
	during := dials.n.Load() - before
	require.NoError(t, srv.Restart(context.Background()))
	require.Eventually(t, func() bool { return b.Stats().Resubscribes > 0 }, 10*time.Second, time.Millisecond)
	t.Logf("dials during a 3 s outage: %d", during)
	assert.GreaterOrEqual(t, during, int64(15))
}

func TestBusOverflowIsAGapAndNeverBlocksTheConnection(t *testing.T) {
	srv := redistest.Start(t)
	stuck, release := blockedHandler(t)
	var once sync.Once
	blocking := func(Message) { once.Do(stuck) }
	b, rec := startBus(t, srv, Options{Origin: 1, QueueSize: 2, OnMessage: blocking, PingInterval: -1})
	pub := redistest.Client(t, srv)
	msg := (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"k"}}).Encode()
	for range 50 {
		publish(t, pub, "ns:inv", msg)
	}
	// The subscriber's connection still answers while the handler is stuck.
	require.Eventually(t, func() bool { return b.Stats().Overflows > 0 }, 5*time.Second, time.Millisecond)
	release.open()
	require.Eventually(t, func() bool { return rec.hasGap(GapOverflow) }, 5*time.Second, time.Millisecond)
}

func TestBusPingTimeoutIsAGap(t *testing.T) {
	srv := redistest.Start(t)
	// Pings every 20 ms, each given 200 ms to come back: a healthy
	// subscription on a loaded machine (a -race run of every package at
	// once) still answers within that, and a lost one is found at once.
	b, rec := startBus(t, srv, Options{Origin: 1, PingInterval: 20 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	require.Never(t, func() bool { return rec.hasGap(GapPingTimeout) }, 500*time.Millisecond, 10*time.Millisecond,
		"pings come back while the subscription is healthy")
	// Make the subscription silently miss the pings: they now go to a
	// channel nobody listens on, as if Redis had dropped us.
	nowhere := "nobody:listens"
	b.pingTo.Store(&nowhere)
	require.Eventually(t, func() bool { return rec.hasGap(GapPingTimeout) }, 5*time.Second, 5*time.Millisecond)
}

func TestBusDoesNotReportGapsWhileRedisIsPaused(t *testing.T) {
	srv := redistest.Start(t)
	_, rec := startBus(t, srv, Options{Origin: 1, PingInterval: 20 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	require.NoError(t, srv.Pause())
	defer srv.Resume()
	assert.Never(t, func() bool { return rec.hasGap(GapPingTimeout) }, 800*time.Millisecond, 10*time.Millisecond,
		"a ping Redis never accepted is not a lost subscription")
}

func TestSubscribeHonoursCtx(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	require.NoError(t, srv.Pause())
	defer srv.Resume()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Subscribe(ctx, Options{Client: c, Channel: "c", OnMessage: func(Message) {}, OnGap: func(GapReason) {}})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestSubscribeValidates(t *testing.T) {
	_, err := Subscribe(context.Background(), Options{Channel: "c"})
	assert.ErrorIs(t, err, ErrInvalidOptions)
}

// holdCount follows a bus's OnHold calls.
type holdCount struct{ n, peak atomic.Int32 }

func (h *holdCount) onHold(on bool) {
	if !on {
		h.n.Add(-1)
		return
	}
	if n := h.n.Add(1); n > h.peak.Load() {
		h.peak.Store(n)
	}
}

// TestBusHoldsUntilTheGapAndWhatQueuedBehindItAreApplied: a gap holds the
// local tier from the moment the bus learns of it until it has been dealt
// with and the messages that queued up meanwhile are applied.
func TestBusHoldsUntilTheGapAndWhatQueuedBehindItAreApplied(t *testing.T) {
	srv := redistest.Start(t)
	var holds holdCount
	stuck, release := blockedHandler(t)
	heldAt := map[string]int32{}
	var mu sync.Mutex
	b, _ := startBus(t, srv, Options{Origin: 1, LogKey: "ns:log", OnHold: holds.onHold, OnMessage: func(m Message) {
		if m.Keys[0] == "first" {
			stuck()
		}
		mu.Lock()
		heldAt[m.Keys[0]] = holds.n.Load()
		mu.Unlock()
	}})
	c := redistest.Client(t, srv)
	send := func(key string) {
		m := Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{key}}
		publish(t, c, "ns:inv", m.Encode())
	}
	send("first")
	release.waitStuck(t) // the apply goroutine is in the handler
	b.Resync("test")
	assert.EqualValues(t, 1, holds.n.Load(), "held as soon as the gap is known")
	send("behind-1")
	send("behind-2")
	require.Eventually(t, func() bool { return len(b.queue.events) == 3 }, 5*time.Second, time.Millisecond)
	release.open()
	require.Eventually(t, func() bool { return holds.n.Load() == 0 }, 5*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.EqualValues(t, map[string]int32{"first": 1, "behind-1": 1, "behind-2": 1}, heldAt,
		"the messages queued behind the gap were applied before the hold ended")
}

// gate blocks a bus's handler until opened; a test that fails first opens
// it at cleanup, before the bus is closed, so that Close does not wait
// forever for a stuck handler.
type gate struct {
	entered chan struct{}
	opened  chan struct{}
	once    sync.Once
}

// blockedHandler returns the call a handler makes to block, and its gate.
// A blocked call also returns when the test ends, before the cleanups: a
// test that fails with the gate shut would otherwise hang in the bus's
// Close, which waits for the handler.
func blockedHandler(t *testing.T) (func(), *gate) {
	g := &gate{entered: make(chan struct{}, 1), opened: make(chan struct{})}
	t.Cleanup(g.open)
	done := t.Context().Done()
	return func() {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-g.opened:
		case <-done:
		}
	}, g
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

func (g *gate) waitStuck(t *testing.T) {
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was never entered")
	}
}

// TestBusHoldsAcrossAnOverflow: dropped messages hold the local tier until
// the overflow gap is dealt with.
func TestBusHoldsAcrossAnOverflow(t *testing.T) {
	srv := redistest.Start(t)
	var holds holdCount
	stuck, release := blockedHandler(t)
	b, rec := startBus(t, srv, Options{Origin: 1, QueueSize: 2, OnHold: holds.onHold, OnMessage: func(Message) { stuck() }})
	c := redistest.Client(t, srv)
	m := Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"k"}}
	for range 6 {
		publish(t, c, "ns:inv", m.Encode())
	}
	// The drop is counted just before its hold is taken.
	require.Eventually(t, func() bool { return b.Stats().Overflows > 0 && holds.n.Load() > 0 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, holds.n.Load(), "one hold for the drops, however many")
	release.open()
	require.Eventually(t, func() bool { return rec.hasGap(GapOverflow) && holds.n.Load() == 0 }, 5*time.Second, time.Millisecond)
}

// TestBusRepairsABurstOfGapsWithOneReplay: gaps that queue up while the bus
// is busy are all covered by the first replay that starts after them.
func TestBusRepairsABurstOfGapsWithOneReplay(t *testing.T) {
	srv := redistest.Start(t)
	stuck, release := blockedHandler(t)
	var replays atomic.Int32
	b, rec := startBus(t, srv, Options{Origin: 1, LogKey: "ns:log", PingInterval: -1,
		OnMessage: func(Message) { stuck() },
		OnRepair:  func(GapReason, int) { replays.Add(1) }})
	m := Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"k"}}
	publish(t, redistest.Client(t, srv), "ns:inv", m.Encode())
	release.waitStuck(t)
	for range 3 {
		b.Resync("test")
	}
	release.open()
	require.Eventually(t, func() bool { return b.Stats().Repairs == 3 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, replays.Load(), "one replay for the three gaps")
	assert.Empty(t, rec.gaps)
}

// TestBusHoldsWhileItsSubscriptionIsDown: from the moment the subscription
// is lost, not only once it is back, the local tier is held: a write made
// while this bus reconnects is never delivered to it, so the local tier
// must not answer until the gap it left is dealt with.
func TestBusHoldsWhileItsSubscriptionIsDown(t *testing.T) {
	srv := redistest.Start(t)
	var holds holdCount
	b, rec := startBus(t, srv, Options{Origin: 1, PingInterval: -1, OnHold: holds.onHold})
	assert.Zero(t, holds.n.Load())
	srv.Kill()
	require.Eventually(t, func() bool { return holds.n.Load() == 1 }, 5*time.Second, time.Millisecond,
		"held while Redis is down, before any resubscription")
	assert.Zero(t, b.Stats().Resubscribes)
	require.NoError(t, srv.Restart(context.Background()))
	require.Eventually(t, func() bool { return rec.hasGap(GapResubscribe) && holds.n.Load() == 0 }, 10*time.Second, time.Millisecond,
		"released once the resubscription's gap is dealt with")
}
