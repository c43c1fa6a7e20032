package remote

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// subscribe returns a channel of the messages published on ch.
func subscribe(t *testing.T, c rueidis.Client, ch string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan string, 16)
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Receive(rueidis.WithOnSubscriptionHook(ctx, func(rueidis.PubSubSubscription) { close(ready) }),
			c.B().Subscribe().Channel(ch).Build(), func(m rueidis.PubSubMessage) { out <- m.Message })
	}()
	<-ready
	t.Cleanup(func() { cancel(); <-done })
	return out
}

func TestWaitersAreWokenByTheFill(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{LeaseTTL: 2 * time.Second})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()
	pub := Publication{Channel: "inv", Message: []byte("filled")}

	// Without waiters, a fill publishes nothing.
	r, err := s.getOrLease(ctx, "a", "t1")
	require.NoError(t, err)
	require.True(t, r.Leased)
	ok, err := s.Fill(ctx, "a", "t1", &Envelope{Payload: []byte("A")}, FillOptions{Publication: pub})
	require.NoError(t, err)
	require.True(t, ok)

	// With one, it does.
	r, err = s.getOrLease(ctx, "b", "holder")
	require.NoError(t, err)
	require.True(t, r.Leased)
	r, err = s.getOrLease(ctx, "b", "waiter")
	require.NoError(t, err)
	assert.False(t, r.Leased)
	assertALeaseLeft(t, r.HeldFor.Milliseconds())
	ok, err = s.Fill(ctx, "b", "holder", &Envelope{Payload: []byte("B")}, FillOptions{Publication: pub})
	require.NoError(t, err)
	require.True(t, ok)
	expectMessages(t, msgs, "filled") // and none from the fill without waiters
}

// A fill given no publication builds its waiters' wake-up with
// Options.WakeMessage, and only when a waiter's marker was there.
func TestFillBuildsTheWakeOnlyForWaiters(t *testing.T) {
	srv := redistest.Start(t)
	var built atomic.Int32
	s := newStore(t, redistest.Client(t, srv), Options{LeaseTTL: 2 * time.Second, WakeMessage: func(key string) Publication {
		built.Add(1)
		return Publication{Channel: "inv", Message: []byte("wake " + key)}
	}})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()

	r, err := s.getOrLease(ctx, "a", "t1")
	require.NoError(t, err)
	require.True(t, r.Leased)
	ok, err := s.Fill(ctx, "a", "t1", &Envelope{Payload: []byte("A")}, FillOptions{})
	require.NoError(t, err)
	require.True(t, ok)
	assert.Zero(t, built.Load(), "no waiter: no wake-up built")

	_, err = s.getOrLease(ctx, "b", "holder")
	require.NoError(t, err)
	r, err = s.getOrLease(ctx, "b", "waiter")
	require.NoError(t, err)
	require.False(t, r.Leased)
	ok, err = s.Fill(ctx, "b", "holder", &Envelope{Payload: []byte("B")}, FillOptions{})
	require.NoError(t, err)
	require.True(t, ok)
	expectMessages(t, msgs, "wake b")
	assert.EqualValues(t, 1, built.Load())

	// A fill that always publishes (a refresh's) given no Publication
	// publishes the WakeMessage too, in Fill and in FillMany.
	leased, err := s.Lease(ctx, "b", "refresh")
	require.NoError(t, err)
	require.True(t, leased)
	ok, err = s.Fill(ctx, "b", "refresh", &Envelope{Payload: []byte("B2")}, FillOptions{Always: true})
	require.NoError(t, err)
	require.True(t, ok)
	expectMessages(t, msgs, "wake b")
	leased, err = s.Lease(ctx, "a", "refresh")
	require.NoError(t, err)
	require.True(t, leased)
	stored, errs := s.FillMany(ctx, "refresh", []FillItem{{Key: "a", Envelope: &Envelope{Payload: []byte("A2")}, Options: FillOptions{Always: true}}})
	require.NoError(t, errs[0])
	require.True(t, stored[0])
	expectMessages(t, msgs, "wake a")
	assert.EqualValues(t, 3, built.Load())
}

// assertALeaseLeft checks that ms, a lease's time left read just after it
// was taken, is about the 2 s lease: at most that, and more than half of
// it (a loaded machine may take a while between the two round trips).
func assertALeaseLeft(t *testing.T, ms int64, msgAndArgs ...any) {
	t.Helper()
	assert.LessOrEqual(t, ms, int64(2000), msgAndArgs...)
	assert.Greater(t, ms, int64(1000), msgAndArgs...)
}

func TestReleaseWithHoldKeepsTheLeaseForTheBackOff(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 5 * time.Second})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()
	pub := Publication{Channel: "inv", Message: []byte("released")}

	_, err := s.getOrLease(ctx, "k", "holder")
	require.NoError(t, err)
	_, err = s.getOrLease(ctx, "k", "waiter") // marks a waiter
	require.NoError(t, err)
	s.Release(ctx, "k", "holder", time.Second, pub)
	assert.Equal(t, "released", <-msgs)
	r, err := s.getOrLease(ctx, "k", "waiter")
	require.NoError(t, err)
	assert.False(t, r.Leased, "the lease is held for the back-off")
	assert.LessOrEqual(t, r.HeldFor, time.Second)
	require.Eventually(t, func() bool {
		r, err := s.getOrLease(ctx, "k", "waiter")
		return err == nil && r.Leased
	}, 5*time.Second, 10*time.Millisecond, "after the back-off a waiter takes over")

	// A release by a token that no longer holds the lease changes nothing.
	s.Release(ctx, "k", "holder", 0, pub)
	ok, err := s.Fill(ctx, "k", "waiter", &Envelope{Payload: []byte("v")}, FillOptions{})
	require.NoError(t, err)
	assert.True(t, ok)
}

func TestFillWithTTLAndAlways(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()
	ok, err := s.Lease(ctx, "k", "t")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.Fill(ctx, "k", "t", &Envelope{Negative: true}, FillOptions{TTL: 2 * time.Second, Always: true, Publication: Publication{Channel: "inv", Message: []byte("refreshed")}})
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "refreshed", <-msgs)
	pttl, err := c.Do(ctx, c.B().Pttl().Key(s.ValueKey("k")).Build()).AsInt64()
	require.NoError(t, err)
	assert.LessOrEqual(t, pttl, int64(2000))
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.True(t, e.Negative)
}

func TestLeaseOrRead(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 2 * time.Second})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()
	pub := Publication{Channel: "inv", Message: []byte("filled")}

	holder := LeaseToken(40 * time.Millisecond)
	r, err := s.LeaseOrRead(ctx, "k", holder)
	require.NoError(t, err)
	assert.True(t, r.Leased, "missing: the lease is ours")

	r, err = s.LeaseOrRead(ctx, "k", LeaseToken(0))
	require.NoError(t, err)
	assert.False(t, r.Leased)
	assert.False(t, r.Found, "a lease marker is no value")
	assertALeaseLeft(t, r.HeldFor.Milliseconds())
	assert.Equal(t, 40*time.Millisecond, r.HolderExpects, "the holder's expected load time travels in its token")
	assert.Equal(t, holder, r.Holder)
	n, err := c.Do(ctx, c.B().Exists().Key(s.ValueKey("k")+":wait").Build()).AsInt64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "a waiter marks that it waits")

	ok, err := s.Fill(ctx, "k", holder, &Envelope{Payload: []byte("v")}, FillOptions{Publication: pub})
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "filled", <-msgs, "the fill woke the waiter")

	// Present: found, and nothing written.
	r, err = s.LeaseOrRead(ctx, "k", LeaseToken(0))
	require.NoError(t, err)
	assert.True(t, r.Found)
	assert.Equal(t, "v", string(r.Envelope.Payload))

	// Corrupt: neither found nor leased (the value is there); reported.
	require.NoError(t, c.Do(ctx, c.B().Set().Key(s.ValueKey("junk")).Value("junk").Build()).Error())
	r, err = s.LeaseOrRead(ctx, "junk", LeaseToken(0))
	require.NoError(t, err)
	assert.ErrorIs(t, r.Corrupt, ErrCorrupt)
	assert.False(t, r.Leased)
	assert.False(t, r.Found)
}

// GetOrLease is one command: the value when Redis has one (nothing
// written), the lease in the value key when it has none, the holder's
// token when another holds it. Readers see the lease marker as no value.
func TestGetOrLease(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 2 * time.Second})
	ctx := context.Background()

	holder := LeaseToken(30 * time.Millisecond)
	r, err := s.GetOrLease(ctx, "k", holder)
	require.NoError(t, err)
	assert.True(t, r.Leased)
	pttl, err := c.Do(ctx, c.B().Pttl().Key(s.ValueKey("k")).Build()).AsInt64()
	require.NoError(t, err)
	assertALeaseLeft(t, pttl, "the marker lives a lease")

	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrMiss, "a plain read sees no value")
	found, err := s.GetMany(ctx, []string{"k"})
	require.NoError(t, err)
	assert.ErrorIs(t, found[0].Err, ErrMiss)

	r, err = s.GetOrLease(ctx, "k", LeaseToken(0))
	require.NoError(t, err)
	assert.False(t, r.Leased)
	assert.False(t, r.Found)
	assert.Equal(t, 30*time.Millisecond, r.HolderExpects)

	// A write voids the lease: the holder's fill is refused.
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("written")}, Publication{}))
	ok, err := s.Fill(ctx, "k", holder, &Envelope{Payload: []byte("loaded")}, FillOptions{})
	require.NoError(t, err)
	assert.False(t, ok)

	calls := func() int64 { return redistest.InfoField(t, c, "stats", "total_commands_processed") }
	before := calls()
	r, err = s.GetOrLease(ctx, "k", LeaseToken(0))
	require.NoError(t, err)
	assert.True(t, r.Found)
	assert.Equal(t, "written", string(r.Envelope.Payload))
	assert.Equal(t, int64(2), calls()-before, "one command (and the INFO that counts it)")
}

// A lease whose value key is evicted or expires is lost, as a lease key's
// would be: the fill is refused, and the next reader takes the lease.
func TestLeaseMarkerLost(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 2 * time.Second})
	ctx := context.Background()
	r, err := s.GetOrLease(ctx, "k", "first")
	require.NoError(t, err)
	require.True(t, r.Leased)
	require.NoError(t, c.Do(ctx, c.B().Del().Key(s.ValueKey("k")).Build()).Error()) // as an eviction
	r, err = s.GetOrLease(ctx, "k", "second")
	require.NoError(t, err)
	assert.True(t, r.Leased)
	ok, err := s.Fill(ctx, "k", "first", &Envelope{Payload: []byte("old")}, FillOptions{})
	require.NoError(t, err)
	assert.False(t, ok, "the lost lease's fill is refused")
	ok, err = s.Fill(ctx, "k", "second", &Envelope{Payload: []byte("new")}, FillOptions{})
	require.NoError(t, err)
	assert.True(t, ok)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "new", string(e.Payload))
}

// A value of an invalidated tag is no value: the read that would take the
// lease removes it and takes the lease, as for any miss; a value rewritten
// in between is kept and read.
func TestGetOrLeaseOverAnInvalidatedTag(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{LeaseTTL: 2 * time.Second})
	ctx := context.Background()
	tags, err := s.TagVersions(ctx, []string{"t"}, time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("old"), Tags: tags}, Publication{}))
	require.NoError(t, s.InvalidateTags(ctx, []string{"t"}, Publication{}))

	r, err := s.GetOrLease(ctx, "k", "holder")
	require.NoError(t, err)
	assert.True(t, r.Leased, "the stale value is gone and the lease ours")
	ok, err := s.Fill(ctx, "k", "holder", &Envelope{Payload: []byte("new")}, FillOptions{})
	require.NoError(t, err)
	assert.True(t, ok)

	// The same for a waiter's round.
	require.NoError(t, s.Set(ctx, "w", &Envelope{Payload: []byte("old"), Tags: tags}, Publication{}))
	r, err = s.LeaseOrRead(ctx, "w", "waiter")
	require.NoError(t, err)
	assert.True(t, r.Leased)
}

// The fill is fenced by its lease, not by the generation key: after an
// empty restart the lease is gone with everything else and the fill writes
// nothing; when the generation key alone was lost, the fill lands over its
// own lease, in the generation the store still uses (consistency.md).
func TestFillIsFencedByItsLease(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{})
	ctx := context.Background()
	_, err := s.Settle(ctx)
	require.NoError(t, err)

	r, err := s.GetOrLease(ctx, "k", "before")
	require.NoError(t, err)
	require.True(t, r.Leased)
	vk := s.ValueKey("k")
	require.NoError(t, c.Do(ctx, c.B().Flushall().Build()).Error()) // an empty restart
	ok, err := s.Fill(ctx, "k", "before", &Envelope{Payload: []byte("v")}, FillOptions{})
	require.NoError(t, err)
	assert.False(t, ok, "the lease went with the restart")
	n, err := c.Do(ctx, c.B().Exists().Key(vk).Build()).AsInt64()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing written")

	_, err = s.Settle(ctx)
	require.NoError(t, err)
	r, err = s.GetOrLease(ctx, "k", "own")
	require.NoError(t, err)
	require.True(t, r.Leased)
	require.NoError(t, c.Do(ctx, c.B().Del().Key(s.GenerationKey()).Build()).Error()) // evicted alone
	ok, err = s.Fill(ctx, "k", "own", &Envelope{Payload: []byte("v")}, FillOptions{})
	require.NoError(t, err)
	assert.True(t, ok, "over its own lease")
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(e.Payload))
}

// expectMessages reads n messages from msgs, then makes sure no more came
// (a publication is sent at once, before the call that publishes returns).
func expectMessages(t *testing.T, msgs <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case m := <-msgs:
			assert.Contains(t, m, w)
		case <-time.After(5 * time.Second):
			t.Fatalf("no message %q: a waiter was not woken", w)
		}
	}
	// Publications reach the subscriber in order, and the ones wanted are
	// in: one more already sent is most likely here too.
	select {
	case m := <-msgs:
		t.Fatalf("unexpected message %q", m)
	default:
	}
}

// leaseWithWaiter takes key's lease as "holder" and leaves a waiter's
// marker on it, as another replica's LeaseOrRead does.
func leaseWithWaiter(t *testing.T, s *Store, key string) {
	t.Helper()
	ctx := context.Background()
	r, err := s.GetOrLease(ctx, key, "holder")
	require.NoError(t, err)
	require.True(t, r.Leased)
	r, err = s.LeaseOrRead(ctx, key, "waiter")
	require.NoError(t, err)
	require.False(t, r.Leased)
	require.Positive(t, r.HeldFor, "the waiter left its marker")
}

// A fill whose lease is gone (a write came, or Redis evicted the marker)
// is refused, and still wakes the replicas that wait, so that they look
// again at once rather than at their own deadline.
func TestRefusedFillWakesWaiters(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 2 * time.Second})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()

	leaseWithWaiter(t, s, "k")
	require.NoError(t, c.Do(ctx, c.B().Del().Key(s.ValueKey("k")).Build()).Error()) // the marker evicted
	ok, err := s.Fill(ctx, "k", "holder", &Envelope{Payload: []byte("v")}, FillOptions{Publication: Publication{Channel: "inv", Message: []byte("woken")}})
	require.NoError(t, err)
	assert.False(t, ok, "refused: the lease is gone")
	expectMessages(t, msgs, "woken")
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrMiss, "nothing written")
}

// FillMany fills each key under its lease and wakes the waiters of those
// that have some, once each; a refresh in the batch (Always) publishes
// whether or not anyone waits.
func TestFillManyWakesWaiters(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{LeaseTTL: 2 * time.Second})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()
	pub := func(m string) FillOptions {
		return FillOptions{Publication: Publication{Channel: "inv", Message: []byte(m)}}
	}

	leases, err := s.GetOrLeaseMany(ctx, []string{"a", "b", "c"}, "holder")
	require.NoError(t, err)
	for _, l := range leases {
		require.True(t, l.Leased)
	}
	r, err := s.LeaseOrRead(ctx, "b", "waiter")
	require.NoError(t, err)
	require.Positive(t, r.HeldFor)
	refresh := pub("c refreshed")
	refresh.Always = true
	fillsBefore := s.Stats().Ops[OpFill].Calls
	stored, errs := s.FillMany(ctx, "holder", []FillItem{
		{Key: "a", Envelope: &Envelope{Payload: []byte("A")}, Options: pub("a filled")},
		{Key: "b", Envelope: &Envelope{Payload: []byte("B")}, Options: pub("b filled")},
		{Key: "c", Envelope: &Envelope{Payload: []byte("C")}, Options: refresh},
	})
	assert.Equal(t, []bool{true, true, true}, stored)
	assert.Equal(t, []error{nil, nil, nil}, errs)
	assert.EqualValues(t, 1, s.Stats().Ops[OpFill].Calls-fillsBefore, "the batch, its refresh included, is one fill call")
	expectMessages(t, msgs, "b filled", "c refreshed")
	for k, want := range map[string]string{"a": "A", "b": "B", "c": "C"} {
		e, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, want, string(e.Payload))
	}
}

// With the invalidation log on, a fill's wake-up is logged like any
// publication, so a replica that resumes its subscription replays it.
func TestFillWakeUpIsLogged(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 2 * time.Second, InvalidationLog: 100})
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	ctx := context.Background()

	leaseWithWaiter(t, s, "k")
	ok, err := s.Fill(ctx, "k", "holder", &Envelope{Payload: []byte("v")}, FillOptions{Publication: Publication{Channel: "inv", Message: []byte("m-woken")}})
	require.NoError(t, err)
	require.True(t, ok)
	expectMessages(t, msgs, "woken")
	n, err := c.Do(ctx, c.B().Xlen().Key(s.InvalidationLogKey()).Build()).AsInt64()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "the wake-up is in the log")
}

// A lease marker is read back from Redis, where anything may have written
// it: the figures a waiter paces itself by stay within maxLeaseWait
// however absurd the marker's token or TTL, and a marker without a TTL is
// given a lease's life.
func TestALeaseReadBackIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 2 * time.Second})
	ctx := context.Background()
	for name, tc := range map[string]struct {
		token      string
		px         int64 // 0: no TTL
		held, load time.Duration
	}{
		"absurd":      {token: "x.y:9223372036854", px: 1 << 40, held: maxLeaseWait, load: maxLeaseWait},
		"overflowing": {token: "x.y:99999999999999999", px: 1 << 40, held: maxLeaseWait, load: maxLeaseWait},
		"negative":    {token: "x.y:-5", px: 1 << 40, held: maxLeaseWait, load: 0},
		"no TTL":      {token: "x.y:40", held: 2 * time.Second, load: 40 * time.Millisecond},
	} {
		set := c.B().Set().Key(s.ValueKey(name)).Value(leaseMarker(tc.token))
		if tc.px > 0 {
			require.NoError(t, c.Do(ctx, set.PxMilliseconds(tc.px).Build()).Error())
		} else {
			require.NoError(t, c.Do(ctx, set.Build()).Error())
		}
		r, err := s.LeaseOrRead(ctx, name, LeaseToken(0))
		require.NoError(t, err, name)
		require.False(t, r.Leased || r.Found, name)
		assert.Equal(t, tc.token, r.Holder, name)
		assert.InDelta(t, tc.held, r.HeldFor, float64(time.Second), name)
		assert.LessOrEqual(t, r.HeldFor, tc.held, name)
		assert.Equal(t, tc.load, r.HolderExpects, name)
	}
	left, err := c.Do(ctx, c.B().Pttl().Key(s.ValueKey("no TTL")).Build()).AsInt64()
	require.NoError(t, err)
	assert.Positive(t, left, "the marker without a TTL now ends")
}

// A refresh's lease key left without a TTL would keep every refresh (and
// the repair of a corrupt value) out for good: Lease gives it a lease's
// life.
func TestALeaseKeyWithoutTTLEnds(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{LeaseTTL: 200 * time.Millisecond})
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, c.B().Set().Key(s.leaseKey("k")).Value("someone else").Build()).Error())
	ok, err := s.Lease(ctx, "k", NewToken())
	require.NoError(t, err)
	assert.False(t, ok, "held by another")
	require.Eventually(t, func() bool {
		ok, err := s.Lease(ctx, "k", NewToken())
		return err == nil && ok
	}, 5*time.Second, 10*time.Millisecond, "the endless lease ended, and is taken")
}

func FuzzHolderExpects(f *testing.F) {
	for _, d := range []time.Duration{0, time.Millisecond, 90 * time.Second, maxLeaseWait, 3 * maxLeaseWait} {
		f.Add(LeaseToken(d))
	}
	f.Add("x.y:99999999999999999999")
	f.Add("x.y:-1")
	f.Add("no colon")
	f.Fuzz(func(t *testing.T, token string) {
		d := holderExpects(token)
		if d < 0 || d > maxLeaseWait || d%time.Millisecond != 0 {
			t.Fatalf("holderExpects(%q) = %v: not whole milliseconds within [0, %v]", token, d, maxLeaseWait)
		}
	})
}

func TestHolderExpectsReadsWhatLeaseTokenStates(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 1500 * time.Microsecond, 90 * time.Second, maxLeaseWait} {
		assert.Equal(t, d.Truncate(time.Millisecond), holderExpects(LeaseToken(d)), d)
	}
	assert.Equal(t, maxLeaseWait, holderExpects(LeaseToken(100*maxLeaseWait)), "at most maxLeaseWait")
}

// A waiter that cannot read the lease's time left (an ACL without PTTL)
// assumes a whole lease, rather than none, which had it look again every
// millisecond while the holder loaded.
func TestAWaiterWithoutPTTLAssumesAWholeLease(t *testing.T) {
	srv := redistest.Start(t)
	_, err := srv.Command("ACL", "SETUSER", "nopttl", "on", ">pw", "~*", "&*", "+@all", "-pttl")
	require.NoError(t, err)
	c := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "nopttl", Password: "pw", DisableCache: true})
	s := newStore(t, c, Options{LeaseTTL: 3 * time.Second})
	ctx := context.Background()
	r, err := s.LeaseOrRead(ctx, "k", LeaseToken(0))
	require.NoError(t, err)
	require.True(t, r.Leased)
	r, err = s.LeaseOrRead(ctx, "k", LeaseToken(0))
	require.NoError(t, err)
	require.False(t, r.Leased || r.Found)
	assert.Equal(t, 3*time.Second, r.HeldFor)
}
