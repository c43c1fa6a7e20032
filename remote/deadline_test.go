package remote

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDeadlines(t *testing.T) {
	// A 5 s timeout: its slack (a tenth) leaves calls half a second to
	// share a deadline, room enough on a loaded machine.
	d := newDeadlines(5 * time.Second)

	// Background: a shared deadline, between the timeout and the timeout
	// plus the slack away, the same context for calls close together.
	before := time.Now()
	a := d.bound(context.Background())
	after := time.Now()
	b := d.bound(context.TODO())
	assert.Equal(t, a, b, "shared")
	dl, ok := a.Deadline()
	require.True(t, ok)
	assert.GreaterOrEqual(t, dl.Sub(before), 5*time.Second)
	assert.LessOrEqual(t, dl.Sub(after), 5500*time.Millisecond)

	// A ctx ending within the timeout plus the slack is used as it is.
	soon, cancelSoon := context.WithTimeout(context.Background(), 5400*time.Millisecond)
	defer cancelSoon()
	assert.Equal(t, soon, d.bound(soon))

	// A ctx that ends later, or can be cancelled, or carries values, gets
	// the shared deadline with its values.
	parent, cancelParent := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "v"), time.Minute)
	defer cancelParent()
	own := d.bound(parent)
	assert.Equal(t, "v", own.Value(ctxKey{}))
	dl, ok = own.Deadline()
	require.True(t, ok)
	assert.LessOrEqual(t, time.Until(dl), 5500*time.Millisecond)
	assert.Equal(t, a.Done(), own.Done(), "the shared deadline's")

	// A ctx already done is used as it is: the call is refused at once.
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	assert.Equal(t, done, d.bound(done))
}

// The shared deadline really ends the call: a wait under a bound ctx ends
// by the timeout plus the slack even when the caller's ctx never ends.
func TestDeadlinesEnd(t *testing.T) {
	d := newDeadlines(20 * time.Millisecond)
	ctx := d.bound(context.WithValue(context.Background(), ctxKey{}, "v"))
	select {
	case <-ctx.Done():
		assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("the bound never ended")
	}
}

type ctxKey struct{}
