package coherence

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestPingWatch: a ping's time to come back runs from Redis's acceptance;
// its echo (or a later one) forgets it; one no subscriber received is
// overdue at once unless a ping came back within the timeout before it.
func TestPingWatch(t *testing.T) {
	const timeout = 100 * time.Millisecond
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }

	t.Run("from-acceptance", func(t *testing.T) {
		var w pingWatch
		w.accept(ms(1000), ms(1080), 1, timeout) // a PUBLISH answered 80 ms late
		assert.False(t, w.overdue(ms(1150), 0, timeout), "150 ms after the send, 70 after the acceptance: not yet")
		assert.True(t, w.overdue(ms(1181), 0, timeout), "101 ms after the acceptance")
		assert.False(t, w.overdue(ms(5000), 0, timeout), "reported once; nothing is out any more")
	})
	t.Run("echo", func(t *testing.T) {
		var w pingWatch
		w.accept(ms(1000), ms(1001), 1, timeout)
		assert.False(t, w.overdue(ms(2000), ms(1000), timeout), "its echo came back")
		w.accept(ms(3000), ms(3001), 1, timeout)
		assert.True(t, w.overdue(ms(3200), ms(2999), timeout), "an older echo does not answer it")
	})
	t.Run("one-out-at-a-time", func(t *testing.T) {
		var w pingWatch
		w.accept(ms(1000), ms(1001), 1, timeout)
		w.accept(ms(1050), ms(1051), 1, timeout) // the older one is still out
		assert.True(t, w.overdue(ms(1102), 0, timeout), "timed from the older one's acceptance")
	})
	t.Run("no-receiver", func(t *testing.T) {
		var w pingWatch
		w.accept(ms(1000), ms(1001), 0, timeout)
		assert.False(t, w.overdue(ms(1020), ms(950), timeout), "a ping came back 50 ms before it")
		w.accept(ms(1100), ms(1101), 0, timeout)
		assert.True(t, w.overdue(ms(1120), ms(950), timeout), "the last came back 150 ms before it: gone")
	})
}

// TestForeignPingsAreNotOwn: anything may publish on a bus's ping channel.
// A ping stating this bus's origin and a time later than any it sent
// (which would move a Cluster's slot-log checkpoint past unread messages,
// and hide ping timeouts), or another origin's at a time it did send one,
// is not taken for an echo.
func TestForeignPingsAreNotOwn(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv)
	b, rec := startBus(t, srv, Options{Origin: 7, PingInterval: time.Hour})
	sent := time.Now().UnixNano()
	b.lastPingSent.Store(sent) // as if the bus had just sent a ping
	publish(t, admin, b.pingChan, (&Message{Origin: 7, Namespace: "ns", Kind: kindPing, PublishedAt: sent + int64(time.Hour)}).Encode())
	publish(t, admin, b.pingChan, (&Message{Origin: 8, Namespace: "ns", Kind: kindPing, PublishedAt: sent}).Encode())
	// Delivered after the pings (one connection, in order): once it is
	// here, the pings were read.
	publish(t, admin, "ns:inv", (&Message{Origin: 3, Namespace: "ns", Kind: KindKeys, Keys: []string{"after"}}).Encode())
	require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 5*time.Second, time.Millisecond)
	assert.Zero(t, b.lastPingEcho.Load(), "no ping taken for an echo")
	assert.Zero(t, b.Stats().Pings)

	// Its own ping, back: an echo.
	publish(t, admin, b.pingChan, (&Message{Origin: 7, Namespace: "ns", Kind: kindPing, PublishedAt: sent}).Encode())
	require.Eventually(t, func() bool { return b.lastPingEcho.Load() == sent }, 5*time.Second, time.Millisecond)
}
