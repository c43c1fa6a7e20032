package writebehind

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestADeadLetterMoveIsItsOwners: a flusher whose lease ran out while it
// worked through a round must not copy to the dead letters an entry the
// next holder has claimed (and may have delivered since).
func TestADeadLetterMoveIsItsOwners(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	q := newQueue(rc, "dlowner", DefaultRemoteTimeout, DefaultMaxValueBytes)
	id, err := rc.Do(ctx, rc.B().Xadd().Key(q.key).Id("*").FieldValue().FieldValue("k", "k").FieldValue("e", "x").Build()).ToString()
	require.NoError(t, err)
	got, err := q.read(ctx, "old", 10, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.NoError(t, rc.Do(ctx, rc.B().Xclaim().Key(q.key).Group(queueGroup).Consumer("new").MinIdleTime("0").Id(id).Build()).Error())
	d := deadLetter{ID: id, Key: "k", Raw: []byte("x"), Attempts: 5, Reason: "refused"}

	moved, err := q.moveToDeadLetters(ctx, "old", d)
	require.NoError(t, err)
	assert.False(t, moved, "claimed by the new holder: not the old one's to move")
	queued, dead, err := q.depth(ctx)
	require.NoError(t, err)
	assert.Equal(t, [2]int64{1, 0}, [2]int64{queued, dead})

	moved, err = q.moveToDeadLetters(ctx, "new", d)
	require.NoError(t, err)
	assert.True(t, moved)
	queued, dead, err = q.depth(ctx)
	require.NoError(t, err)
	assert.Equal(t, [2]int64{0, 1}, [2]int64{queued, dead})
}
