package tiered

import (
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHitCounterIsExact: hits counted from many goroutines, with GCs
// emptying the pool meanwhile (and, under -race, the pool dropping puts on
// purpose), add up exactly.
func TestHitCounterIsExact(t *testing.T) {
	var h hitCounter
	h.init()
	const goroutines, each = 16, 20_000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				h.inc()
				if g == 0 && i%5000 == 0 {
					runtime.GC()
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(goroutines*each), h.load())
}
