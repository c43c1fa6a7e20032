//go:build !race

// Heap sizes are measured without the race detector, which changes what
// the runtime allocates; `make test` runs this in its pass without -race.

package local

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

type record struct {
	ID    int64
	Name  string
	Score float64
	Tags  []string
}

// TestFullTierHeapIsWithinMaxCost fills tiers far past their budget with
// small and large values, strings and structs, and measures the heap they
// hold (entries and admission counters): MaxCost bounds memory, within
// 1.25×.
func TestFullTierHeapIsWithinMaxCost(t *testing.T) {
	if testing.Short() {
		t.Skip("fills tiers of 16 MiB")
	}
	const budget = 16 << 20
	for _, size := range []int{8, 200, 4000} {
		t.Run(fmt.Sprint("string-", size), func(t *testing.T) {
			fillAndMeasure(t, budget, func(i int) (string, int64) {
				v := strings.Repeat("x", size) + fmt.Sprint(i) // a fresh allocation each
				return v, int64(len(v))
			})
		})
	}
	t.Run("struct", func(t *testing.T) {
		fillAndMeasure(t, budget, func(i int) (record, int64) {
			r := record{ID: int64(i), Name: fmt.Sprint("name-", i), Score: 1.5, Tags: []string{"a", fmt.Sprint("t", i)}}
			// What the cache passes: the encoded size, here of its JSON.
			return r, int64(len(fmt.Sprintf(`{"ID":%d,"Name":%q,"Score":1.5,"Tags":["a","t%d"]}`, i, r.Name, i)))
		})
	})
}

func fillAndMeasure[V any](t *testing.T, budget int64, value func(i int) (V, int64)) {
	before := heapInUse()
	tier, err := New[V](Options{MaxCost: budget, MaxEntries: budget / 64})
	if err != nil {
		t.Fatal(err)
	}
	defer tier.Close()
	// Far past full: 2× what fits at the smallest charge.
	n := int(2 * budget / EntryOverhead)
	for i := range n {
		k := fmt.Sprint("key:", i)
		v, size := value(i)
		tier.Fill(tier.Fence(k), k, Entry[V]{Value: v}, size, time.Hour)
		if i%64 == 0 {
			tier.Wait()
		}
	}
	tier.Wait()
	held := heapInUse() - before
	t.Logf("budget %d MiB: heap held %.2f MiB (%.2f× the budget), cost %d, evictions %d",
		budget>>20, float64(held)/(1<<20), float64(held)/float64(budget), tier.Cost(), tier.Stats().Evictions)
	assert.LessOrEqual(t, float64(held), 1.25*float64(budget))
	assert.Greater(t, float64(held), 0.5*float64(budget), "the tier was really full")
	runtime.KeepAlive(tier)
}
