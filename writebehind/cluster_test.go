package writebehind

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/cachetest"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestClusterWriteBehind runs write-behind through a rueidis client of a
// real 3-master Redis Cluster: the queue and its dead letters share a slot,
// the keys written are on every node.
func TestClusterWriteBehind(t *testing.T) {
	cl := redistest.StartCluster(t)
	var rs []*replica[int]
	for range 3 {
		o := cachetest.Options[int]("cwb")
		o.Client = cl.Client(t)
		rs = append(rs, newCache[int](t, nil, o))
	}
	testClusterWriteBehind(t, rs)
}

// testClusterWriteBehind: three replicas write behind to keys on every
// node, a poison write among them; one flusher delivers every key's last
// write and dead-letters the poison (the dead-letter stream shares the
// queue's slot).
func testClusterWriteBehind(t *testing.T, rs []*replica[int]) {
	ctx := context.Background()
	src := newFakeSource()
	src.setRefuse(refuseKey("poison", errors.New("rejected")))
	opts := fastFlusher(src)
	opts.MaxAttempts = 2
	f, err := newFlusher(rs[0], opts)
	require.NoError(t, err)
	runFlusher(t, f)
	require.NoError(t, rs[1].SetBehind(ctx, "poison", -1))
	const keys, rounds = 30, 5
	for round := 1; round <= rounds; round++ {
		for r := range rs {
			for k := range keys {
				require.NoError(t, rs[r].SetBehind(ctx, fmt.Sprintf("r%d-k%d", r, k), round))
			}
		}
	}
	waitDrained(t, rs[0])
	for r := range rs {
		for k := range keys {
			key := fmt.Sprintf("r%d-k%d", r, k)
			v, ok := src.get(key)
			require.True(t, ok, key)
			assert.Equal(t, rounds, v, key)
			got, err := rs[(r+1)%len(rs)].Get(ctx, key)
			require.NoError(t, err)
			assert.Equal(t, rounds, got, "the cache holds the last write too")
		}
	}
	assert.EqualValues(t, 1, f.Stats().DeadLetters)
}
