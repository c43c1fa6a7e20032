package remote

import (
	"context"
	"testing"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestReadDurability(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "allkeys-lru")
	c := redistest.Client(t, srv)
	ctx := context.Background()
	d, err := ReadDurability(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, Durability{Policy: "allkeys-lru", Known: true}, d)
	assert.True(t, d.CanEvictQueue())

	// CONFIG forbidden: INFO answers.
	_, err = srv.Command("ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config")
	require.NoError(t, err)
	nc := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "noconfig", Password: "pw", DisableCache: true})
	d, err = ReadDurability(ctx, nc)
	require.NoError(t, err)
	assert.Equal(t, Durability{Policy: "allkeys-lru", Known: true}, d)
}

// A Redis busy with a long script answers CONFIG GET with BUSY, which
// says "later": it is an error (not judged, asked again), never "CONFIG
// is forbidden, the policy is unknown", an answer kept for a minute in
// which write-behind would run on an evicting Redis.
func TestReadDurabilityOfABusyRedisIsNotUnknown(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "allkeys-lru")
	c := redistest.Client(t, srv)
	redistest.HoldBusy(t, srv)
	d, err := ReadDurability(context.Background(), c)
	require.Error(t, err)
	assert.True(t, redistest.IsBusy(err), "%v", err)
	assert.False(t, d.Known)
}
