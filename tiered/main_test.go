package tiered

import (
	"testing"

	"go.uber.org/goleak"
)

// rueidis's cluster client outlives Close in two goroutines that end by
// themselves: one closes the connections a topology refresh replaced after
// a 5 s sleep, the other runs a delayed ("lazy") refresh after up to a
// second.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}
