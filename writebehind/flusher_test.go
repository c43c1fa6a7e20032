package writebehind

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
	"github.com/tiercache/tiercache/tiered"
)

// fakeSource is a source of truth in memory that records every delivery.
type fakeSource struct {
	mu        sync.Mutex
	state     map[string]int
	delivered map[string]map[int]int // key → value → deliveries
	calls     int
	// refuse, when set, decides a batch's fate before it is applied.
	refuse func(writes []Write[int]) error
}

func newFakeSource() *fakeSource {
	return &fakeSource{state: map[string]int{}, delivered: map[string]map[int]int{}}
}

func (s *fakeSource) write(_ context.Context, writes []Write[int]) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	var refused WriteErrors
	if s.refuse != nil {
		if err := s.refuse(writes); err != nil && !errors.As(err, &refused) {
			return err
		}
	}
	for i, w := range writes {
		if _, no := refused[i]; no {
			continue
		}
		s.state[w.Key] = w.Value
		if s.delivered[w.Key] == nil {
			s.delivered[w.Key] = map[int]int{}
		}
		s.delivered[w.Key][w.Value]++
	}
	if refused != nil {
		return refused
	}
	return nil
}

func (s *fakeSource) get(key string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.state[key]
	return v, ok
}

func (s *fakeSource) setRefuse(f func([]Write[int]) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = f
}

// refuseKey makes a source refuse every write of key, and accept the rest.
func refuseKey(key string, why error) func([]Write[int]) error {
	return func(ws []Write[int]) error {
		refused := WriteErrors{}
		for i, w := range ws {
			if w.Key == key {
				refused[i] = why
			}
		}
		if len(refused) == 0 {
			return nil
		}
		return refused
	}
}

// runFlusher runs f until the test ends and checks Run returned nil.
func runFlusher[V any](t *testing.T, f *Flusher[V]) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

func fastFlusher(src *fakeSource) Options[int] {
	return Options[int]{
		Writer:       src.write,
		Interval:     20 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
		RetryBackoff: 10 * time.Millisecond,
		MaxBackoff:   40 * time.Millisecond,
		LeaseTTL:     time.Second,
	}
}

// waitDrained waits until the queue is empty and nothing is pending.
func waitDrained(t *testing.T, c *replica[int]) {
	t.Helper()
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		q, _, err := queueDepth(c, context.Background())
		assert.NoError(ct, err)
		assert.Zero(ct, q, "queued writes")
	}, 20*time.Second, 5*time.Millisecond)
}

// waitDeadLetters waits until the flusher has counted n dead letters,
// and fails if it counts more: it counts one once Redis has confirmed the
// move, which may come after the queue is seen empty.
func waitDeadLetters(t *testing.T, f *Flusher[int], n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return f.Stats().DeadLetters >= n }, 10*time.Second, time.Millisecond)
	assert.Equal(t, n, f.Stats().DeadLetters)
}

func TestSetBehindWritesBothTiersAndFlushesInOrder(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[int](t, srv, 2, cachetest.Options[int]("behind"))
	ctx := context.Background()
	require.Equal(t, 1, mustGetOrLoad(t, rs[1], "a", 1)) // B caches a=1

	for i := 1; i <= 5; i++ {
		require.NoError(t, rs[0].SetBehind(ctx, "a", 100+i))
	}
	require.NoError(t, rs[0].SetBehind(ctx, "b", 7))
	// Both tiers and the peer see the write before any flusher ran.
	require.Eventually(t, func() bool { v, err := rs[1].Get(ctx, "a"); return err == nil && v == 105 },
		5*time.Second, time.Millisecond)
	q, _, err := queueDepth(rs[0], ctx)
	require.NoError(t, err)
	require.EqualValues(t, 6, q)

	src := newFakeSource()
	f, err := newFlusher(rs[1], fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)
	waitDrained(t, rs[0])
	v, _ := src.get("a")
	assert.Equal(t, 105, v, "the last write wins")
	v, _ = src.get("b")
	assert.Equal(t, 7, v)
	st := f.Stats()
	assert.EqualValues(t, 2, st.Written)
	assert.EqualValues(t, 4, st.Coalesced, "five writes of a, one delivered")
	assert.Zero(t, st.DeadLetters)
	assert.True(t, st.Leader)
}

func mustGetOrLoad(t *testing.T, c *replica[int], key string, v int) int {
	t.Helper()
	got, err := c.GetOrLoad(context.Background(), key, func(context.Context) (int, error) { return v, nil })
	require.NoError(t, err)
	_, err = c.GetMany(context.Background(), []string{key}) // returns once it is in the local tier
	require.NoError(t, err)
	return got
}

func TestSetBehindFullQueueIsAClearErrorAndChangesNothing(t *testing.T) {
	srv := redistest.Start(t)
	opts := cachetest.Options[int]("full")
	opts.WriteBehindLimit = 3
	c := newCache[int](t, srv, opts)
	ctx := context.Background()
	for i := range 3 {
		require.NoError(t, c.SetBehind(ctx, fmt.Sprint("k", i), i))
	}
	err := c.SetBehind(ctx, "k0", 99)
	require.ErrorIs(t, err, tiered.ErrQueueFull)
	v, err := c.Get(ctx, "k0")
	require.NoError(t, err)
	assert.Equal(t, 0, v, "a refused write leaves the value as it was")
	q, _, err := queueDepth(c, ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 3, q)

	// Once flushed, the queue takes writes again.
	src := newFakeSource()
	f, err := newFlusher(c, fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)
	waitDrained(t, c)
	require.NoError(t, c.SetBehind(ctx, "k0", 99))
}

func TestFlusherRetriesAnUnavailableSourceAndLosesNothing(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("outage"))
	ctx := context.Background()
	src := newFakeSource()
	down := make(chan struct{})
	src.setRefuse(func([]Write[int]) error {
		select {
		case <-down:
			return nil
		default:
			return errors.New("database unavailable")
		}
	})
	f, err := newFlusher(c, fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)
	for i := range 200 {
		require.NoError(t, c.SetBehind(ctx, fmt.Sprint("k", i%50), i))
	}
	// Fail long enough for many more rounds than MaxAttempts.
	require.Eventually(t, func() bool { return f.Stats().Retries >= 3*50 }, 10*time.Second, time.Millisecond)
	close(down)
	waitDrained(t, c)
	for k := range 50 {
		v, ok := src.get(fmt.Sprint("k", k))
		require.True(t, ok)
		assert.Equal(t, 150+k, v, "key k%d holds its last write", k)
	}
	st := f.Stats()
	assert.Zero(t, st.DeadLetters, "an unavailable source is not a poison write")
	_, dead, err := queueDepth(c, ctx)
	require.NoError(t, err)
	assert.Zero(t, dead)
}

func TestPoisonWriteIsDeadLetteredOthersFlushed(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("poison"))
	ctx := context.Background()
	src := newFakeSource()
	src.setRefuse(refuseKey("poison", errors.New("constraint violated")))
	opts := fastFlusher(src)
	opts.MaxAttempts = 3
	f, err := newFlusher(c, opts)
	require.NoError(t, err)
	runFlusher(t, f)
	require.NoError(t, c.SetBehind(ctx, "poison", -1))
	for i := range 20 {
		require.NoError(t, c.SetBehind(ctx, fmt.Sprint("k", i), i))
	}
	waitDrained(t, c)
	for i := range 20 {
		v, ok := src.get(fmt.Sprint("k", i))
		require.True(t, ok)
		require.Equal(t, i, v)
	}
	_, seen := src.get("poison")
	assert.False(t, seen)
	waitDeadLetters(t, f, 1)

	dead, err := c.client.Do(ctx, c.client.B().Xrange().Key(remote.QueueKey(c.ns)+":dead").Start("-").End("+").Build()).AsXRange()
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "poison", dead[0].FieldValues["k"])
	assert.Equal(t, "3", dead[0].FieldValues["attempts"])
	assert.Contains(t, dead[0].FieldValues["err"], "constraint violated")
	assert.NotEmpty(t, dead[0].FieldValues["e"], "the value is kept for replay")
}

func TestWriterPanicIsIsolatedToItsWrite(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("panic"))
	ctx := context.Background()
	src := newFakeSource()
	src.setRefuse(func(ws []Write[int]) error {
		for _, w := range ws {
			if w.Key == "boom" {
				panic("writer bug")
			}
		}
		return nil
	})
	opts := fastFlusher(src)
	opts.MaxAttempts = 2
	// Queue first, so that boom shares a batch with the others.
	for i := range 10 {
		require.NoError(t, c.SetBehind(ctx, fmt.Sprint("k", i), i))
	}
	require.NoError(t, c.SetBehind(ctx, "boom", 1))
	f, err := newFlusher(c, opts)
	require.NoError(t, err)
	runFlusher(t, f)
	waitDrained(t, c)
	for i := range 10 {
		_, ok := src.get(fmt.Sprint("k", i))
		require.True(t, ok, "k%d was delivered despite the panic", i)
	}
	waitDeadLetters(t, f, 1)
}

func TestUndecodableQueueEntryIsDeadLettered(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("garbage"))
	ctx := context.Background()
	_, err := srv.Command("XADD", remote.QueueKey(c.ns), "*", "k", "x", "e", "not an envelope")
	require.NoError(t, err)
	_, err = srv.Command("XADD", remote.QueueKey(c.ns), "*", "nofields", "1")
	require.NoError(t, err)
	require.NoError(t, c.SetBehind(ctx, "ok", 1))
	src := newFakeSource()
	f, err := newFlusher(c, fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)
	waitDrained(t, c)
	v, ok := src.get("ok")
	require.True(t, ok)
	assert.Equal(t, 1, v)
	assert.EqualValues(t, 2, f.Stats().DeadLetters)
}

// panicsOn is a codec that panics on one value's bytes (a buggy
// UnmarshalJSON, bytes another program queued).
type panicsOn struct {
	remote.JSON
	bad string
}

func (p panicsOn) Unmarshal(data []byte, v any) error {
	if string(data) == p.bad {
		var none []int
		_ = none[len(data)] // index out of range
	}
	return p.JSON.Unmarshal(data, v)
}

// TestACodecPanicIsDeadLettered: a codec's panic on one queued value ends
// neither the flusher nor its process: the entry is dead-lettered for
// ErrCodec, and the writes beside it are delivered.
func TestACodecPanicIsDeadLettered(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("codecpanic"))
	ctx := context.Background()
	for i, k := range []string{"a", "poison", "b"} {
		require.NoError(t, c.SetBehind(ctx, k, 40+i))
	}
	src := newFakeSource()
	o := fastFlusher(src)
	o.Codec = panicsOn{bad: "41"}
	f, err := newFlusher(c, o)
	require.NoError(t, err)
	runFlusher(t, f)
	waitDrained(t, c)
	for k, want := range map[string]int{"a": 40, "b": 42} {
		v, ok := src.get(k)
		require.True(t, ok, k)
		assert.Equal(t, want, v, k)
	}
	_, ok := src.get("poison")
	assert.False(t, ok)
	assert.EqualValues(t, 1, f.Stats().DeadLetters)
}

// TestAFlusherRunsOnceAtATime: a second Run of a running Flusher would
// share its attempts map (a fatal concurrent map write) and consumer name.
func TestAFlusherRunsOnceAtATime(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("runonce"))
	f, err := newFlusher(c, fastFlusher(newFakeSource()))
	require.NoError(t, err)
	stop := runFlusher(t, f)
	require.Eventually(t, func() bool { return f.Stats().Leader }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a second Run, were it let in, ends
	defer cancel()
	assert.ErrorIs(t, f.Run(ctx), ErrRunning)
	stop()
	require.Eventually(t, func() bool { return !f.running.Load() }, 5*time.Second, time.Millisecond)
	runFlusher(t, f) // once the first has returned, it runs again
}

// TestWritesTakenAsRunEndsAreAcknowledged: Run's ctx ending just as the
// writer took a batch cut the acknowledgement short, and the next holder
// delivered the batch again.
func TestWritesTakenAsRunEndsAreAcknowledged(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("ackatend"))
	ctx := context.Background()
	require.NoError(t, c.SetBehind(ctx, "k", 1))
	src := newFakeSource()
	runCtx, cancel := context.WithCancel(ctx)
	o := fastFlusher(src)
	o.Writer = func(wctx context.Context, ws []Write[int]) error {
		err := src.write(wctx, ws)
		cancel() // Run ends as the writer returns
		return err
	}
	f, err := newFlusher(c, o)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end")
	}
	q, _, err := queueDepth(c, ctx)
	require.NoError(t, err)
	assert.Zero(t, q, "the write taken was acknowledged")
}

func TestOnlyOneFlusherHoldsTheLease(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[int](t, srv, 2, cachetest.Options[int]("lease"))
	src := newFakeSource()
	var fs []*Flusher[int]
	for _, c := range rs {
		f, err := newFlusher(c, fastFlusher(src))
		require.NoError(t, err)
		fs = append(fs, f)
	}
	stop0 := runFlusher(t, fs[0])
	require.Eventually(t, func() bool { return fs[0].Stats().Leader }, 5*time.Second, time.Millisecond)
	runFlusher(t, fs[1])
	require.NoError(t, rs[0].SetBehind(context.Background(), "a", 1))
	waitDrained(t, rs[0])
	assert.False(t, fs[1].Stats().Leader)
	// A flusher that stops gives the lease up: the standby takes over
	// without waiting for it to expire.
	stop0()
	require.Eventually(t, func() bool { return fs[1].Stats().Leader }, 5*time.Second, time.Millisecond)
	require.NoError(t, rs[0].SetBehind(context.Background(), "a", 2))
	waitDrained(t, rs[0])
	v, _ := src.get("a")
	assert.Equal(t, 2, v)
}

// TestALeaderLeaseWithoutTTLEnds: a flusher lease left with no TTL (a
// PERSIST, a DUMP and RESTORE at TTL 0, another program) kept every
// flusher on standby for good, and the queue filled up. A standby gives it
// a lease's life, and takes over when it ends.
func TestALeaderLeaseWithoutTTLEnds(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[int](t, srv, 1, cachetest.Options[int]("endless"))
	admin := redistest.Client(t, srv)
	ctx := context.Background()
	require.NoError(t, admin.Do(ctx, admin.B().Set().Key("endless:v1:wb:leader").Value("someone else").Build()).Error())
	src := newFakeSource()
	f, err := newFlusher(rs[0], fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, f)
	require.NoError(t, rs[0].SetBehind(ctx, "a", 1))
	require.Eventually(t, func() bool { return f.Stats().Leader }, 10*time.Second, time.Millisecond, "the endless lease ended")
	waitDrained(t, rs[0])
	v, _ := src.get("a")
	assert.Equal(t, 1, v)
}

// TestStandbyRoundDoesNotBackOff: a standby's round counts as settled, so
// its pause does not grow towards MaxBackoff while it waits, which would
// delay its takeover by up to MaxBackoff.
func TestStandbyRoundDoesNotBackOff(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[int](t, srv, 2, cachetest.Options[int]("standby"))
	src := newFakeSource()
	leader, err := newFlusher(rs[0], fastFlusher(src))
	require.NoError(t, err)
	runFlusher(t, leader)
	require.Eventually(t, func() bool { return leader.Stats().Leader }, 5*time.Second, time.Millisecond)
	standby, err := newFlusher(rs[1], fastFlusher(src))
	require.NoError(t, err)
	for range 3 {
		settled, err := standby.round(context.Background())
		require.NoError(t, err)
		assert.True(t, settled, "a standby round must not make Run back off")
		assert.False(t, standby.Stats().Leader)
	}
}

func TestFlusherOptionsAreValidated(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("fopts"))
	ok := func(context.Context, []Write[int]) error { return nil }
	for _, o := range []Options[int]{
		{},
		{Writer: ok, BatchSize: -1},
		{Writer: ok, BatchSize: 20_000},
		{Writer: ok, Interval: time.Hour},
		{Writer: ok, MaxAttempts: -1},
		{Writer: ok, WriteTimeout: time.Second, LeaseTTL: time.Second},
		// The writer's deadline (the lease's end less RemoteTimeout) would
		// come before WriteTimeout, or have passed when it is called.
		{Writer: ok, WriteTimeout: 200 * time.Millisecond, RemoteTimeout: time.Second, LeaseTTL: time.Second},
	} {
		_, err := newFlusher(c, o)
		assert.ErrorIs(t, err, ErrInvalidOptions, "%+v", o)
	}
}

func TestSeqLess(t *testing.T) {
	assert.True(t, SeqLess("1-0", "1-1"))
	assert.True(t, SeqLess("9-5", "10-0"))
	assert.False(t, SeqLess("10-0", "9-5"))
	assert.False(t, SeqLess("3-3", "3-3"))
}

// TestDefaultLeaseLeavesTheWriterItsTimeout: with a RemoteTimeout long
// against WriteTimeout, the default lease was 3 × WriteTimeout, shorter
// than RemoteTimeout, so the writer's deadline (the lease's end less
// RemoteTimeout) had passed before every call: a writer that honours its
// ctx never delivered, retried without end. The default now leaves it
// WriteTimeout.
func TestDefaultLeaseLeavesTheWriterItsTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("leasedefault"))
	src := newFakeSource()
	var expired atomic.Int64
	f, err := newFlusher(c, Options[int]{
		Writer: func(ctx context.Context, ws []Write[int]) error {
			if err := ctx.Err(); err != nil {
				expired.Add(1)
				return err
			}
			return src.write(ctx, ws)
		},
		RemoteTimeout: time.Second, WriteTimeout: 200 * time.Millisecond,
		RetryBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
	})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, f.opts.LeaseTTL, f.opts.WriteTimeout+f.opts.Interval+f.opts.RemoteTimeout)
	runFlusher(t, f)
	require.NoError(t, c.SetBehind(context.Background(), "k", 1))
	require.Eventually(t, func() bool { _, ok := src.get("k"); return ok }, 10*time.Second, time.Millisecond, "the write reached the source")
	assert.Zero(t, expired.Load(), "writer calls with an expired ctx")
}

// TestEntriesReadAfterALostLeaseAreNotStranded: a flusher frozen past its
// lease (a long pause) that then reads the queue takes entries into its own
// pending list after its successor claimed its others. They waited for the
// next takeover, which may never come; the lease holder now claims them
// once they have been idle a lease long, and delivers them.
func TestEntriesReadAfterALostLeaseAreNotStranded(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	c := newCache[int](t, srv, cachetest.Options[int]("stranded"))
	src := newFakeSource()
	inWriter, release := make(chan struct{}, 1), make(chan struct{})
	opts := fastFlusher(src)
	opts.Writer = func(ctx context.Context, ws []Write[int]) error {
		for _, w := range ws {
			if w.Key == "hold" {
				inWriter <- struct{}{}
				<-release
			}
		}
		return src.write(ctx, ws)
	}
	a, err := newFlusher(c, opts)
	require.NoError(t, err)
	b, err := newFlusher(c, opts)
	require.NoError(t, err)
	// A takes the lease, then freezes; B takes over once the lease ends.
	lead, err := a.queue.holdLeader(ctx, a.consumer, a.opts.LeaseTTL)
	require.NoError(t, err)
	require.Equal(t, newLeader, lead)
	runFlusher(t, b)
	require.Eventually(t, func() bool { return b.Stats().Leader }, 10*time.Second, time.Millisecond)
	// While B is busy in its writer, A wakes and reads: it takes k.
	require.NoError(t, c.SetBehind(ctx, "hold", 1))
	<-inWriter
	require.NoError(t, c.SetBehind(ctx, "k", 2))
	entries, err := a.queue.read(ctx, a.consumer, a.opts.BatchSize, a.opts.Interval)
	require.NoError(t, err)
	require.Len(t, entries, 1, "A read k into its own pending list")
	close(release)
	// A stays frozen (it never acknowledges, nor takes over again).
	require.Eventually(t, func() bool { q, _, err := queueDepth(c, ctx); return err == nil && q == 0 }, 10*time.Second, time.Millisecond,
		"the entry A read is delivered, not left pending under A")
	v, ok := src.get("k")
	assert.True(t, ok)
	assert.Equal(t, 2, v)
	assert.Positive(t, b.Stats().Claimed)
	// A, left with nothing pending, is removed from the group (in one
	// script with the look at its pending count).
	infos, err := c.client.Do(ctx, c.client.B().XinfoConsumers().Key(a.queue.key).Group(queueGroup).Build()).ToArray()
	require.NoError(t, err)
	var names []string
	for _, info := range infos {
		m, err := info.AsMap()
		require.NoError(t, err)
		msg := m["name"]
		name, _ := msg.ToString()
		names = append(names, name)
	}
	assert.Equal(t, []string{b.consumer}, names)
}
