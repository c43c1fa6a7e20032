package remote

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func newStore(t *testing.T, c rueidis.Client, opts Options) *Store {
	t.Helper()
	opts.Client = c
	if opts.Namespace == "" {
		opts.Namespace = "test"
	}
	if opts.TTL == 0 {
		opts.TTL = time.Minute
	}
	s, err := New(opts)
	require.NoError(t, err)
	_, err = s.Settle(context.Background()) // as the cache does at start
	require.NoError(t, err)
	return s
}

func TestOptionsValidate(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	for _, o := range []Options{
		{Namespace: "n", TTL: time.Second},
		{Client: c, TTL: time.Second},
		{Client: c, Namespace: "n"},
		{Client: c, Namespace: "n", TTL: -time.Second},
		{Client: c, Namespace: "n", TTL: time.Second, MaxValueBytes: -1},
	} {
		_, err := New(o)
		assert.ErrorIs(t, err, ErrInvalidOptions)
	}
}

func TestSetGetDelete(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{TTL: time.Minute})
	ctx := context.Background()

	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, ErrMiss)

	big := strings.Repeat("compress me ", 500)
	require.NoError(t, s.Set(ctx, "k", &Envelope{WrittenAt: 5, Payload: []byte(big)}, Publication{Channel: "ch", Message: []byte("m")}))
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, big, string(e.Payload))
	assert.Equal(t, int64(5), e.WrittenAt)

	raw, err := c.Do(ctx, c.B().Strlen().Key(s.ValueKey("k")).Build()).AsInt64()
	require.NoError(t, err)
	assert.Less(t, raw, int64(len(big)/2), "large payloads are stored compressed")
	pttl, err := c.Do(ctx, c.B().Pttl().Key(s.ValueKey("k")).Build()).AsInt64()
	require.NoError(t, err)
	assert.InDelta(t, 59_000, pttl, 1_500, "an envelope without expiry lives the store's TTL")

	now := time.Now().UnixNano()
	stamped := &Envelope{WrittenAt: now, ExpiresAt: now + int64(20*time.Second), Payload: []byte("v")}
	require.NoError(t, s.Set(ctx, "k", stamped, Publication{Channel: "ch", Message: []byte("m")}))
	pttl, err = c.Do(ctx, c.B().Pttl().Key(s.ValueKey("k")).Build()).AsInt64()
	require.NoError(t, err)
	assert.InDelta(t, 19_500, pttl, 1_000, "an envelope lives as long as it was stamped to")

	require.NoError(t, s.Delete(ctx, []string{"k", "absent"}, Publication{Channel: "ch", Message: []byte("m")}))
	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, ErrMiss)
}

func TestWritePublishesInTheSameRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	writer := redistest.Client(t, srv)
	sub := redistest.Client(t, srv)
	s := newStore(t, writer, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// When the subscriber receives the message, the new value must
	// already be readable.
	type seen struct {
		msg   string
		value string
	}
	got := make(chan seen, 10)
	subscribed := make(chan struct{}, 1)
	go sub.Receive(rueidis.WithOnSubscriptionHook(ctx, func(rueidis.PubSubSubscription) { subscribed <- struct{}{} }),
		sub.B().Subscribe().Channel("inv").Build(), func(m rueidis.PubSubMessage) {
			e, err := s.Get(ctx, "k")
			v := ""
			if err == nil {
				v = string(e.Payload)
			}
			got <- seen{m.Message, v}
		})
	<-subscribed
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v1")}, Publication{Channel: "inv", Message: []byte("set")}))
	assert.Equal(t, seen{"set", "v1"}, <-got)
	require.NoError(t, s.Delete(ctx, []string{"k"}, Publication{Channel: "inv", Message: []byte("del")}))
	assert.Equal(t, seen{"del", ""}, <-got)
}

func TestLeaseFencesFills(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{})
	ctx := context.Background()
	pub := Publication{Channel: "ch", Message: []byte("m")}

	// A miss takes the lease; a second reader does not get it.
	r, err := s.getOrLease(ctx, "k", "t1")
	require.NoError(t, err)
	assert.Equal(t, LeaseResult{Leased: true}, r)
	r, err = s.getOrLease(ctx, "k", "t2")
	require.NoError(t, err)
	assert.False(t, r.Leased || r.Found)
	assert.Positive(t, r.HeldFor, "the second reader learns how long the lease still runs")

	// The holder's fill lands and releases the lease.
	ok, err := s.Fill(ctx, "k", "t1", &Envelope{Payload: []byte("loaded")}, FillOptions{})
	require.NoError(t, err)
	assert.True(t, ok)
	r, err = s.getOrLease(ctx, "k", "t3")
	require.NoError(t, err)
	assert.True(t, r.Found)
	assert.Equal(t, "loaded", string(r.Envelope.Payload))

	// A load that started before a Set must not overwrite it.
	require.NoError(t, s.Delete(ctx, []string{"k"}, pub))
	r, err = s.getOrLease(ctx, "k", "t4")
	require.NoError(t, err)
	require.True(t, r.Leased)
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("written")}, pub))
	ok, err = s.Fill(ctx, "k", "t4", &Envelope{Payload: []byte("old load")}, FillOptions{})
	require.NoError(t, err)
	assert.False(t, ok)
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "written", string(e.Payload))

	// …nor a Delete.
	require.NoError(t, s.Delete(ctx, []string{"k"}, pub))
	r, err = s.getOrLease(ctx, "k", "t5")
	require.NoError(t, err)
	require.True(t, r.Leased)
	require.NoError(t, s.Delete(ctx, []string{"k"}, pub))
	ok, err = s.Fill(ctx, "k", "t5", &Envelope{Payload: []byte("old load")}, FillOptions{})
	require.NoError(t, err)
	assert.False(t, ok)
	_, err = s.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrMiss)
}

func TestForeignValueIsCorruptNotPanic(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{})
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, c.B().Set().Key(s.ValueKey("k")).Value("plain string").Build()).Error())
	_, err := s.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrCorrupt)
	r, err := s.getOrLease(ctx, "k", "t")
	require.NoError(t, err)
	assert.ErrorIs(t, r.Corrupt, ErrCorrupt)
	assert.False(t, r.Leased)
	ok, err := s.Lease(ctx, "k", "t")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = s.Lease(ctx, "k", "t2")
	require.NoError(t, err)
	assert.False(t, ok)
	ok, err = s.Fill(ctx, "k", "t", &Envelope{Payload: []byte("good")}, FillOptions{})
	require.NoError(t, err)
	assert.True(t, ok, "a lease taken over a corrupt value lets the fill replace it")
}

func TestValueSizeLimit(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{MaxValueBytes: 10})
	err := s.Set(context.Background(), "k", &Envelope{Payload: make([]byte, 11)}, Publication{Channel: "c"})
	assert.ErrorIs(t, err, ErrTooLarge)
	_, err = s.Get(context.Background(), "k")
	assert.ErrorIs(t, err, ErrMiss, "nothing was written")
}

func TestGetMany(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{})
	ctx := context.Background()
	pub := Publication{Channel: "c", Message: []byte("m")}
	require.NoError(t, s.Set(ctx, "a", &Envelope{Payload: []byte("A")}, pub))
	require.NoError(t, s.Set(ctx, "c", &Envelope{Payload: []byte("C")}, pub))
	require.NoError(t, c.Do(ctx, c.B().Set().Key(s.ValueKey("d")).Value("junk").Build()).Error())
	got, err := s.GetMany(ctx, []string{"a", "b", "c", "d"})
	require.NoError(t, err)
	require.Len(t, got, 4)
	assert.Equal(t, "A", string(got[0].Envelope.Payload))
	assert.ErrorIs(t, got[1].Err, ErrMiss)
	assert.Equal(t, "C", string(got[2].Envelope.Payload))
	assert.ErrorIs(t, got[3].Err, ErrCorrupt)

	// Replies are read by position: a repeated key gets its value twice.
	got, err = s.GetMany(ctx, []string{"c", "b", "c"})
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, "C", string(got[0].Envelope.Payload))
	assert.ErrorIs(t, got[1].Err, ErrMiss)
	assert.Equal(t, "C", string(got[2].Envelope.Payload))
	got, err = s.GetMany(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}

// A value read from Redis is immutable: a string decoded from it by the
// JSON or Bytes codec shares its memory, and is what the codec decodes.
func TestReadStringsShareTheReply(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{CompressAbove: -1})
	ctx := context.Background()
	pub := Publication{Channel: "c"}
	require.NoError(t, s.Set(ctx, "json", &Envelope{Payload: []byte(`"plain text"`)}, pub))
	require.NoError(t, s.Set(ctx, "escaped", &Envelope{Payload: []byte(`"a\nb"`)}, pub))
	require.NoError(t, s.Set(ctx, "bytes", &Envelope{Payload: []byte("raw")}, pub))
	shares := func(v string, e *Envelope) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(v)))
		start := uintptr(unsafe.Pointer(unsafe.SliceData(e.Payload)))
		return p >= start && p < start+uintptr(len(e.Payload))
	}
	read := func(key string, c Codec) (string, *Envelope) {
		found, err := s.GetMany(ctx, []string{key})
		require.NoError(t, err)
		require.NoError(t, found[0].Err)
		var v string
		require.NoError(t, found[0].Envelope.Unmarshal(c, &v))
		return v, &found[0].Envelope
	}
	v, e := read("json", JSON{})
	assert.Equal(t, "plain text", v)
	assert.True(t, shares(v, e))
	v, e = read("escaped", JSON{})
	assert.Equal(t, "a\nb", v)
	assert.False(t, shares(v, e), "an unescaped string is new")
	v, e = read("bytes", Bytes{})
	assert.Equal(t, "raw", v)
	assert.True(t, shares(v, e))

	// An envelope the caller built may change: nothing is shared.
	own := &Envelope{Payload: []byte(`"mine"`)}
	require.NoError(t, own.Unmarshal(JSON{}, &v))
	assert.Equal(t, "mine", v)
	assert.False(t, shares(v, own))
	own.Payload[1] = 'M'
	assert.Equal(t, "mine", v)
}

func TestCallsHaveADeadlineWhenRedisIsPaused(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{Timeout: 100 * time.Millisecond})
	require.NoError(t, srv.Pause())
	defer srv.Resume()
	done := make(chan error, 1)
	go func() {
		_, err := s.Get(context.Background(), "k") // no deadline on the caller's ctx
		done <- err
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("Get without a caller deadline blocked while Redis was paused")
	}
}

// Redis must keep a value at least until the expiry its envelope states:
// the local tiers expire their copies by it.
func TestTTLMillisRoundsUp(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{TTL: time.Minute})
	assert.Equal(t, "800", s.ttlMillis(800*time.Millisecond-time.Microsecond))
	assert.Equal(t, "800", s.ttlMillis(800*time.Millisecond))
	assert.Equal(t, "1", s.ttlMillis(time.Microsecond))
	assert.Equal(t, "60000", s.ttlMillis(0), "the store's TTL")
}

// A GET written to a connection a network cut has closed never reached
// Redis: once the network is back, the read dials anew and succeeds rather
// than failing with the dead connection's error.
func TestGetAfterACutConnection(t *testing.T) {
	srv := redistest.Start(t)
	cut := redistest.NewPartition()
	s := newStore(t, redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true, DialCtxFn: cut.Dial}), Options{})
	ctx := context.Background()
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v")}, Publication{Channel: "c"}))
	for range 200 {
		cut.Cut(0)
		e, err := s.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "v", string(e.Payload))
	}
}

// A GET right after Redis restarted (every connection the client held
// closed by the old server) finds Redis's answer, not a dead connection's
// error: a connection the server closed reads EOF, as one a cut closed is
// found closed, and the read tries the next.
func TestGetRightAfterARestart(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{})
	other := redistest.Client(t, srv)
	ctx := context.Background()
	for i := range 30 {
		// Every pooled connection in use: the restart closes them all.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() { s.Get(ctx, "warm") })
		}
		wg.Wait()
		require.NoError(t, srv.Restart(ctx))
		require.Eventually(t, func() bool { return other.Do(ctx, other.B().Ping().Build()).Error() == nil }, 10*time.Second, time.Millisecond)
		_, err := s.Get(ctx, "k")
		require.ErrorIs(t, err, ErrMiss, "round %d: the restarted Redis answers", i)
	}
}

func TestEscapeGlobQuotesBytes(t *testing.T) {
	assert.Equal(t, "plain:v1:g1:", escapeGlob("plain:v1:g1:"))
	assert.Equal(t, `a\*b\?\[c\]\\`+"\xff", escapeGlob(`a*b?[c]\`+"\xff"), "each special byte quoted, invalid UTF-8 kept as it is")
}
