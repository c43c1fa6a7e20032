package rediskeys_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/rediskeys"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestDeletePrefixDeletesOnlyItsKeys(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	ctx := context.Background()
	var mine []string
	for i := range 2500 { // more than one SCAN page
		mine = append(mine, fmt.Sprintf("bench:z*p:1:v1:g1:{k%d}", i))
	}
	others := []string{"bench:z*p:10:k", "bench:zXp:1:k", "bench:z*p:1", "bench:z*p:1x:k"}
	for _, k := range append(slices.Clone(mine), others...) {
		require.NoError(t, c.Do(ctx, c.B().Set().Key(k).Value("v").Build()).Error())
	}
	require.NoError(t, rediskeys.DeletePrefix(ctx, c, "bench:z*p:1:"))
	slices.Sort(others)
	assert.Equal(t, others, redistest.AllKeys(t, c), "its keys gone, every other kept (a glob character in the prefix is literal)")
}

func TestDeletePrefixRefusesAnEmptyPrefix(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	ctx := context.Background()
	require.NoError(t, c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error())
	assert.Error(t, rediskeys.DeletePrefix(ctx, c, ""))
	n, err := c.Do(ctx, c.B().Exists().Key("k").Build()).AsInt64()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "nothing deleted")
}
