package remote

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestClusterSlotLogs: on a Redis Cluster a write's invalidation is logged
// in its own slot's log, which expires when idle, is trimmed by age, and
// records a trim by count as its max-deleted-entry-id.
func TestClusterSlotLogs(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := cl.Client(t)
	ctx := context.Background()
	pub := Publication{Channel: "inv", Message: []byte("m1")}
	logOf := func(s *Store, key string) string { return s.SlotLogKey(keySlot(s.ValueKey(key))) }
	length := func(log string) int64 {
		n, err := c.Do(ctx, c.B().Xlen().Key(log).Build()).AsInt64()
		require.NoError(t, err)
		return n
	}

	t.Run("count", func(t *testing.T) {
		s := newStore(t, c, Options{Namespace: "cnt", InvalidationLog: 5})
		require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v")}, pub))
		log := logOf(s, "k")
		require.EqualValues(t, 1, length(log), "logged in the key's slot")
		ttl, err := c.Do(ctx, c.B().Pttl().Key(log).Build()).AsInt64()
		require.NoError(t, err)
		assert.InDelta(t, 30_000, ttl, 1_000, "the log expires when idle for InvalidationLogAge")
		info, err := c.Do(ctx, c.B().XinfoStream().Key(log).Build()).AsMap()
		require.NoError(t, err)
		field := info["max-deleted-entry-id"]
		deleted, _ := field.ToString()
		assert.Equal(t, "0-0", deleted, "nothing trimmed yet")

		for i := range 300 {
			require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte(fmt.Sprint(i))}, pub))
		}
		assert.Less(t, length(log), int64(300), "capped")
		info, err = c.Do(ctx, c.B().XinfoStream().Key(log).Build()).AsMap()
		require.NoError(t, err)
		field = info["max-deleted-entry-id"]
		deleted, _ = field.ToString()
		first, err := c.Do(ctx, c.B().Xrange().Key(log).Start("-").End("+").Count(1).Build()).AsXRange()
		require.NoError(t, err)
		assert.Equal(t, first[0].ID, deleted, "a trim by count is recorded up to the first entry left")
	})

	t.Run("age", func(t *testing.T) {
		// Half a second: long enough for two writes and a read on a
		// loaded machine, short enough to wait out.
		s := newStore(t, c, Options{Namespace: "age", InvalidationLog: 1000, InvalidationLogAge: 500 * time.Millisecond})
		require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v")}, pub))
		require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v")}, pub))
		log := logOf(s, "k")
		require.EqualValues(t, 2, length(log))
		time.Sleep(700 * time.Millisecond) // the two entries grow older than the age
		require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v")}, pub))
		assert.EqualValues(t, 1, length(log), "entries older than the age are trimmed")
		require.Eventually(t, func() bool { return length(log) == 0 }, 5*time.Second, 10*time.Millisecond,
			"an idle log expires")
	})
}
