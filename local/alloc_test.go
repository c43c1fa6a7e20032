//go:build !race

// The race detector makes sync.Pool drop a share of Puts on purpose, and
// ristretto keeps its read buffers in one, so allocation counts are only
// meaningful without -race. `make test` runs these tests in a separate
// pass without it.

package local

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLocalHitAllocatesNothing(t *testing.T) {
	tier := newTier(t, Options{})
	require.True(t, fill(tier, tier.Fence("k"), "k", 1))
	tier.Wait()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := tier.Get("k"); !ok {
			panic("miss")
		}
	})
	assert.Zero(t, allocs)
}
