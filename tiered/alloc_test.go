//go:build !race

// The race detector makes sync.Pool drop a share of Puts on purpose, and
// ristretto keeps its read buffers in one, so allocation counts are only
// meaningful without -race. `make test` runs these tests in a separate
// pass without it.

package tiered

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestLocalHitAllocatesNothing(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[user](t, srv, testOptions[user]("ns"))
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "42", user{ID: 42, Name: "Ada"}))
	c.local.Wait()
	load := func(context.Context) (user, error) { return user{}, errors.New("unused") }
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Get(ctx, "42"); err != nil {
			panic(err)
		}
		if _, err := c.GetOrLoad(ctx, "42", load); err != nil {
			panic(err)
		}
	})
	assert.Zero(t, allocs, "flushes %v, local %+v", c.Stats().LocalResets, c.Stats().Local)
}
