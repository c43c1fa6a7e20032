package ledger

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFloor(t *testing.T) {
	l := New()
	assert.Equal(t, int64(0), l.Floor("k", time.Now()))
	l.Completed("k", l.Bump("k"))
	mid := time.Now()
	time.Sleep(time.Millisecond)
	l.Completed("k", l.Bump("k"))
	assert.Equal(t, int64(1), l.Floor("k", mid))
	assert.Equal(t, int64(2), l.Floor("k", time.Now().Add(time.Second)))
	assert.Equal(t, int64(2), l.Read("k"))
	assert.Same(t, l.Lock("k"), l.Lock("k"))
}

func TestSpan(t *testing.T) {
	l := New()
	before := time.Now()
	v := l.Bump("k")
	_, _, ok := l.Span("k", v)
	assert.False(t, ok, "not completed yet")
	l.Completed("k", v)
	began, done, ok := l.Span("k", v)
	assert.True(t, ok)
	assert.False(t, began.Before(before))
	assert.False(t, done.Before(began))
	_, _, ok = l.Span("k", 2)
	assert.False(t, ok)
	_, _, ok = l.Span("other", 1)
	assert.False(t, ok)
}
