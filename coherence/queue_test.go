package coherence

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEventQueueIsBoundedByBytes: a few large messages fill the queue's
// bytes long before its count; the one over is dropped and reported as an
// overflow, and the bytes applied are given back.
func TestEventQueueIsBoundedByBytes(t *testing.T) {
	q := newEventQueue[int](4096)
	drops := 0
	q.onFirstDrop = func() { drops++ }
	big := maxQueuedBytes / 3
	for i := range 3 {
		require.True(t, q.push(i, big), "message %d fits", i)
	}
	assert.False(t, q.push(3, big), "a fourth would pass the byte bound")
	assert.True(t, q.push(4, 0), "an event holding no bytes (a gap) is bounded by count alone")
	assert.EqualValues(t, 1, q.overflows.Load())
	assert.Equal(t, 1, drops)

	ctx, cancel := context.WithCancel(context.Background())
	var applied []int
	overflowed := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.drain(ctx, func(e int) {
			applied = append(applied, e)
			if len(applied) == 4 {
				cancel()
			}
		}, func() { overflowed++ })
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not apply the queued events")
	}
	assert.Equal(t, []int{0, 1, 2, 4}, applied)
	assert.Equal(t, 1, overflowed, "the drop is reported once, after an event")
	assert.Zero(t, q.bytes.Load(), "applied events give their bytes back")
	assert.True(t, q.push(5, big), "room again")
}

// TestEventQueueReportsADropWhileIdle: a drop for bytes can find the
// queue empty (one message over the bound); with no event to follow it,
// the drop is still reported, at once.
func TestEventQueueReportsADropWhileIdle(t *testing.T) {
	q := newEventQueue[int](16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	overflowed := make(chan struct{}, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.drain(ctx, func(int) {}, func() { overflowed <- struct{}{} })
	}()
	assert.False(t, q.push(1, maxQueuedBytes+1), "one message over the bound")
	select {
	case <-overflowed:
	case <-time.After(10 * time.Second):
		t.Fatal("the drop was never reported")
	}
	assert.True(t, q.push(2, 1), "room again")
	cancel()
	<-done
}
