package tiered

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

func newFetchCtx(timeout time.Duration) *fetchCtx {
	caller, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "caller's"))
	cancel() // the first caller's end is not the fetch's
	c := &fetchCtx{}
	c.init(context.WithoutCancel(caller), timeout)
	return c
}

func TestFetchCtxCarriesValuesNotTheCallersEnd(t *testing.T) {
	c := newFetchCtx(time.Minute)
	assert.Equal(t, "caller's", c.Value(ctxKey{}))
	require.NoError(t, c.Err())
	dl, ok := c.Deadline()
	assert.True(t, ok)
	assert.WithinDuration(t, time.Now().Add(time.Minute), dl, 5*time.Second)
	assert.Nil(t, context.Cause(c), "the first caller's cause does not leak through")
}

// Without Done, no timer runs: Err reads the clock.
func TestFetchCtxEndsByItsDeadlineWithoutATimer(t *testing.T) {
	c := newFetchCtx(20 * time.Millisecond)
	require.Eventually(t, func() bool { return c.Err() != nil }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	assert.Nil(t, c.timer)
	select {
	case <-c.Done():
	default:
		t.Fatal("Done asked after the end is closed")
	}
}

func TestFetchCtxDoneClosesAtTheDeadline(t *testing.T) {
	c := newFetchCtx(20 * time.Millisecond)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done never closed")
	}
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
}

func TestFetchCtxCancel(t *testing.T) {
	c := newFetchCtx(time.Minute)
	done := c.Done()
	c.cancel()
	<-done
	assert.ErrorIs(t, c.Err(), context.Canceled)
	c.cancel() // twice: nothing more
	assert.False(t, c.timer.Stop(), "the timer was stopped")
}

// Contexts derived from it register with it (no watching goroutine) and
// end with it; a stopped AfterFunc does not run.
func TestFetchCtxDerivedContextsEndWithIt(t *testing.T) {
	c := newFetchCtx(time.Minute)
	child, cancelChild := context.WithTimeout(c, time.Hour)
	defer cancelChild()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	stopped := context.AfterFunc(c, func() { t.Error("a stopped AfterFunc ran") })
	c.mu.Lock()
	registered := len(c.after)
	c.mu.Unlock()
	assert.Equal(t, 3, registered, "WithTimeout and two AfterFuncs registered here")
	assert.True(t, stopped())
	assert.Equal(t, "caller's", child.Value(ctxKey{}))

	c.cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the derived context did not end")
	}
	assert.ErrorIs(t, child.Err(), context.Canceled)
	<-ran
	late := make(chan struct{})
	context.AfterFunc(c, func() { close(late) })
	<-late // registered after the end: runs at once
}
