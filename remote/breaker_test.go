package remote

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestBreakerOpensOnTimeoutsAndRecoversWithAProbe(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	var changes []string
	s := newStore(t, redistest.Client(t, srv), Options{
		Timeout: 500 * time.Millisecond, BreakerThreshold: 3, BreakerCooldown: time.Second,
		OnBreakerChange: func(from, to string) { mu.Lock(); changes = append(changes, from+"→"+to); mu.Unlock() },
	})
	ctx := context.Background()
	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, ErrMiss, "a miss is an answer: the breaker stays closed")

	require.NoError(t, srv.Pause())
	for range 3 {
		_, err := s.Get(ctx, "k")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	st := s.Stats()
	assert.Equal(t, "open", st.BreakerState)
	assert.Equal(t, uint64(3), st.Ops[OpGet].Timeouts)

	_, err = s.Get(ctx, "k")
	require.ErrorIs(t, err, errUnavailable, "open: not sent")
	assert.Equal(t, uint64(1), s.Stats().Ops[OpGet].Rejected, "rejected, not sent to the paused Redis")

	require.NoError(t, srv.Resume())
	require.Eventually(t, func() bool {
		_, err := s.Get(ctx, "k")
		return errors.Is(err, ErrMiss)
	}, 5*time.Second, 20*time.Millisecond, "after the cooldown a probe goes through and closes the breaker")
	assert.Equal(t, "closed", s.Stats().BreakerState)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"closed→open", "open→half-open", "half-open→closed"}, changes)
}

func TestBreakerIgnoresCallerCancellationAndErrorReplies(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{BreakerThreshold: 1})
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := s.Get(cancelled, "k")
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, c.Do(ctx, c.B().Lpush().Key(s.ValueKey("k")).Element("x").Build()).Error())
	_, err = s.Get(ctx, "k") // WRONGTYPE: Redis answered
	require.Error(t, err)
	assert.Equal(t, "closed", s.Stats().BreakerState)
}

func TestResetBreakerClosesAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	var changes []string
	s := newStore(t, redistest.Client(t, srv), Options{Timeout: 500 * time.Millisecond, BreakerThreshold: 1, BreakerCooldown: time.Hour,
		OnBreakerChange: func(from, to string) { changes = append(changes, from+"→"+to) }})
	require.NoError(t, srv.Pause())
	_, err := s.Get(context.Background(), "k")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, srv.Resume())
	_, err = s.Get(context.Background(), "k")
	require.ErrorIs(t, err, errUnavailable, "an hour's cooldown")
	s.ResetBreaker()
	_, err = s.Get(context.Background(), "k")
	require.ErrorIs(t, err, ErrMiss, "reset: Redis is called again")
	assert.Equal(t, []string{"closed→open", "open→closed"}, changes)
	s.ResetBreaker() // closed already: nothing to do
	assert.Len(t, changes, 2)
}

// While Redis answers, calls skip the breaker; a failure between
// successes must still count as one, not accumulate towards the
// threshold.
func TestBreakerCountsOnlyConsecutiveFailures(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{Timeout: 500 * time.Millisecond, BreakerThreshold: 2, BreakerCooldown: time.Hour})
	ctx := context.Background()
	fail := func() {
		t.Helper()
		require.NoError(t, srv.Pause())
		_, err := s.Get(ctx, "k")
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NoError(t, srv.Resume())
	}
	for range 3 {
		fail()
		assert.False(t, s.health.healthy(), "a failure sends the next calls through the breaker")
		_, err := s.Get(ctx, "k")
		require.ErrorIs(t, err, ErrMiss)
		assert.True(t, s.health.healthy(), "a success with the breaker closed and clean skips it again")
		assert.Equal(t, "closed", s.Stats().BreakerState, "failures apart are not consecutive")
	}
	require.NoError(t, srv.Pause())
	for range 2 {
		_, err := s.Get(ctx, "k")
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	require.NoError(t, srv.Resume())
	assert.Equal(t, "open", s.Stats().BreakerState, "two in a row trip it")
	_, err := s.Get(ctx, "k")
	require.ErrorIs(t, err, errUnavailable)
	assert.False(t, s.health.healthy())
}

// A success that looked at the breaker before a failure was told must not
// set healthy after it.
func TestHealthIgnoresASuccessOlderThanAFailure(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redistest.Client(t, srv), Options{})
	s.health.failed()
	before := s.health.v.Load()
	s.health.failed() // told while the success was under way
	s.healthyIfClosed(before)
	assert.False(t, s.health.healthy())
	s.healthyIfClosed(s.health.v.Load())
	assert.True(t, s.health.healthy(), "the breaker is closed with nothing counted")
}
