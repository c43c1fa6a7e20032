package remote

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestClusterQueueStepWaitsForReplicas: on a Cluster a write-behind write
// is queued and then written in two steps, on two nodes. With
// WaitReplicas, the queue's step was sent without WAIT, so SetQueued could
// return with the queued write confirmed nowhere but its primary. Both
// steps now WAIT on their nodes (this cluster has no replicas, so the
// write is reported unconfirmed, and still written).
func TestClusterQueueStepWaitsForReplicas(t *testing.T) {
	cl := redistest.StartCluster(t)
	st, err := New(Options{Client: cl.Client(t), Namespace: "cwait", TTL: time.Minute, WaitReplicas: 1, WaitTimeout: 20 * time.Millisecond})
	require.NoError(t, err)
	ctx := context.Background()
	id, err := st.SetQueued(ctx, "a", &Envelope{Payload: []byte("1")}, Publication{Channel: "cwait"}, 100)
	assert.ErrorIs(t, err, ErrNotReplicated)
	assert.NotEmpty(t, id, "the write's queue id, though unconfirmed")
	count := func(stats, cmd string) string {
		m := regexp.MustCompile(`cmdstat_` + cmd + `:calls=(\d+)`).FindStringSubmatch(stats)
		if m == nil {
			return "0"
		}
		return m[1]
	}
	queueNodes := 0
	for _, n := range cl.Nodes {
		nc := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{n.Addr()}, ForceSingleClient: true, DisableCache: true})
		stats, err := nc.Do(ctx, nc.B().Info().Section("commandstats").Build()).ToString()
		require.NoError(t, err)
		if count(stats, "xadd") != "0" {
			queueNodes++
			assert.NotEqual(t, "0", count(stats, "wait"), "the queue's node %s was asked to WAIT", n.Addr())
		}
	}
	assert.Equal(t, 1, queueNodes)
	// The value was written all the same.
	e, err := st.Get(ctx, "a")
	require.NoError(t, err)
	assert.Equal(t, []byte("1"), e.Payload)
}
