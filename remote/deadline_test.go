package remote

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDeadlines(t *testing.T) {
	d := newDeadlines(500 * time.Millisecond)

	// Background: a shared deadline, between the timeout and the timeout
	// plus the slack away, the same context for calls close together.
	before := time.Now()
	a, cancel := d.bound(context.Background())
	assert.Nil(t, cancel)
	b, _ := d.bound(context.TODO())
	assert.Equal(t, a, b, "shared")
	dl, ok := a.Deadline()
	require.True(t, ok)
	assert.GreaterOrEqual(t, dl.Sub(before), 500*time.Millisecond)
	assert.LessOrEqual(t, dl.Sub(before), 550*time.Millisecond+10*time.Millisecond)

	// A ctx ending sooner is used as it is.
	soon, cancelSoon := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelSoon()
	got, cancel := d.bound(soon)
	assert.Nil(t, cancel)
	assert.Equal(t, soon, got)

	// A ctx that can be cancelled, or carries values, gets its own bound,
	// which ends with it.
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	own, cancel := d.bound(parent)
	require.NotNil(t, cancel)
	defer cancel()
	assert.Equal(t, "v", own.Value(ctxKey{}))
	dl, ok = own.Deadline()
	require.True(t, ok)
	assert.LessOrEqual(t, time.Until(dl), 500*time.Millisecond)
	cancelParent()
	<-own.Done()
}

type ctxKey struct{}
