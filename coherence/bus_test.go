package coherence

import (
	"context"
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
	// The retry's confirmation, then the restarted Receive's (a restart to
	// reset rueidis's retry delay is itself a gap): one or two per kill.
	assert.GreaterOrEqual(t, b.Stats().Resubscribes, uint64(1))
	assert.LessOrEqual(t, b.Stats().Resubscribes, uint64(2))
	// Messages flow again after the resubscribe.
	pub := redistest.Client(t, srv)
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"after"}}).Encode())
	require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 5*time.Second, time.Millisecond)
}

// TestBusResubscribesQuicklyAfterManyKills: rueidis's retry delay grows
// with every retry within one Receive call (to 1 s after ~20); the bus
// restarts Receive after each resubscribe, so the 40th kill is followed by
// a resubscribe as quick as the first.
func TestBusResubscribesQuicklyAfterManyKills(t *testing.T) {
	srv := redistest.Start(t)
	b, _ := startBus(t, srv, Options{Origin: 1, PingInterval: -1})
	var slowest time.Duration
	for i := range 40 {
		before := b.Stats().Subscriptions
		t0 := time.Now()
		_, err := srv.KillClients("pubsub")
		require.NoError(t, err)
		require.Eventually(t, func() bool { return b.Stats().Subscriptions > before }, 10*time.Second, 100*time.Microsecond, "kill %d", i)
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("slowest resubscribe over 40 kills: %v", slowest)
	assert.Less(t, slowest, 500*time.Millisecond, "resubscribes do not slow down with the number of disconnects (rueidis alone: ~1 s after 20)")
}

func TestBusOverflowIsAGapAndNeverBlocksTheConnection(t *testing.T) {
	srv := redistest.Start(t)
	release := make(chan struct{})
	var once sync.Once
	blocking := func(Message) { once.Do(func() { <-release }) }
	b, rec := startBus(t, srv, Options{Origin: 1, QueueSize: 2, OnMessage: blocking, PingInterval: -1})
	pub := redistest.Client(t, srv)
	msg := (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"k"}}).Encode()
	for range 50 {
		publish(t, pub, "ns:inv", msg)
	}
	// The subscriber's connection still answers while the handler is stuck.
	require.Eventually(t, func() bool { return b.Stats().Overflows > 0 }, 5*time.Second, time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return rec.hasGap(GapOverflow) }, 5*time.Second, time.Millisecond)
}

func TestBusPingTimeoutIsAGap(t *testing.T) {
	srv := redistest.Start(t)
	b, rec := startBus(t, srv, Options{Origin: 1, PingInterval: 20 * time.Millisecond, PingTimeout: 40 * time.Millisecond})
	require.Never(t, func() bool { return rec.hasGap(GapPingTimeout) }, 300*time.Millisecond, 10*time.Millisecond,
		"pings come back while the subscription is healthy")
	// Make the subscription silently miss the pings: they now go to a
	// channel nobody listens on, as if Redis had dropped us.
	nowhere := "nobody:listens"
	b.pingTo.Store(&nowhere)
	require.Eventually(t, func() bool { return rec.hasGap(GapPingTimeout) }, 5*time.Second, 5*time.Millisecond)
}

func TestBusDoesNotReportGapsWhileRedisIsPaused(t *testing.T) {
	srv := redistest.Start(t)
	_, rec := startBus(t, srv, Options{Origin: 1, PingInterval: 20 * time.Millisecond, PingTimeout: 40 * time.Millisecond})
	require.NoError(t, srv.Pause())
	defer srv.Resume()
	assert.Never(t, func() bool { return rec.hasGap(GapPingTimeout) }, 300*time.Millisecond, 10*time.Millisecond,
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
	release := make(chan struct{})
	heldAt := map[string]int32{}
	var mu sync.Mutex
	b, _ := startBus(t, srv, Options{Origin: 1, LogKey: "ns:log", OnHold: holds.onHold, OnMessage: func(m Message) {
		if m.Keys[0] == "first" {
			<-release
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
	send("first") // the apply goroutine is stuck in it
	require.Eventually(t, func() bool { return len(b.queue.events) == 0 }, 5*time.Second, time.Millisecond)
	b.Resync("test")
	assert.EqualValues(t, 1, holds.n.Load(), "held as soon as the gap is known")
	send("behind-1")
	send("behind-2")
	require.Eventually(t, func() bool { return len(b.queue.events) == 3 }, 5*time.Second, time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return holds.n.Load() == 0 }, 5*time.Second, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.EqualValues(t, map[string]int32{"first": 1, "behind-1": 1, "behind-2": 1}, heldAt,
		"the messages queued behind the gap were applied before the hold ended")
}

// TestBusHoldsAcrossAnOverflow: dropped messages hold the local tier until
// the overflow gap is dealt with.
func TestBusHoldsAcrossAnOverflow(t *testing.T) {
	srv := redistest.Start(t)
	var holds holdCount
	release := make(chan struct{})
	b, rec := startBus(t, srv, Options{Origin: 1, QueueSize: 2, OnHold: holds.onHold, OnMessage: func(Message) { <-release }})
	c := redistest.Client(t, srv)
	m := Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"k"}}
	for range 6 {
		publish(t, c, "ns:inv", m.Encode())
	}
	require.Eventually(t, func() bool { return b.Stats().Overflows > 0 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, holds.n.Load(), "one hold for the drops, however many")
	close(release)
	require.Eventually(t, func() bool { return rec.hasGap(GapOverflow) && holds.n.Load() == 0 }, 5*time.Second, time.Millisecond)
}
