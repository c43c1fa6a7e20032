//go:build !race

// Under the race detector a hand-over runs too slowly to fill ristretto's
// buffer, so this would prove nothing there; `make test` runs it in its
// pass without -race.

package local

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestALargeHandOverLosesNothing: a hand-over of more inserts than
// ristretto's buffer holds (32K) loses none to a full buffer, whether the
// tier has room for them all or evicts as they come (ristretto applies
// them more slowly then, and its buffer fills).
func TestALargeHandOverLosesNothing(t *testing.T) {
	noDrainer(t)
	const n = 100_000
	for _, room := range []bool{true, false} {
		opts := Options{MaxCost: 1 << 30, MaxEntries: 4 * n}
		if !room {
			opts = Options{MaxCost: 1 << 20, MaxEntries: n / 20}
		}
		tier := newTier(t, opts)
		for i := range n {
			k := fmt.Sprint("k", i)
			require.True(t, fill(tier, tier.Fence(k), k, 1))
		}
		tier.Wait()
		st := tier.Stats()
		assert.Zero(t, st.DroppedSets, "room %v", room)
		if !room {
			assert.Positive(t, st.Evictions+st.Rejections, "the tier was full")
			continue
		}
		require.Zero(t, st.Evictions+st.Rejections, "the tier has room for every insert")
		for i := range n {
			_, inRistretto := tier.cache.Get(fmt.Sprint("k", i))
			require.True(t, inRistretto, "k%d lost", i)
		}
	}
}
