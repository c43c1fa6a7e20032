//go:build !race

// The race shows within a fraction of a second without the race detector,
// which slows the readers down past it; `make test` runs this in its pass
// without -race.

package local

import (
	"sync"
	"testing"
)

// TestReadsRacingCloseSurviveClose: a Get or Kill that races Close does not
// panic. (ristretto's Get, past its closed check, handed its read buffer
// to a channel Close had closed: "send on closed channel", in every run
// of this test.)
func TestReadsRacingCloseSurviveClose(t *testing.T) {
	for range 1000 {
		tier, err := New[int64](Options{Stripes: 8})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 4 {
			wg.Go(func() {
				<-start
				for range 2000 {
					if g == 0 {
						tier.Kill("k")
					} else {
						tier.Get("k")
					}
				}
			})
		}
		close(start)
		tier.Close()
		wg.Wait()
	}
}
