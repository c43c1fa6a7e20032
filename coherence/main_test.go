package coherence

import (
	"testing"

	"go.uber.org/goleak"
)

// rueidis's cluster client closes the connections a topology refresh
// replaced after a 5 s sleep, in a goroutine that outlives Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"))
}
