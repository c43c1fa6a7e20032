package warmup

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/leaktest"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestMain gives the examples a Redis at REDIS_URL and checks for leaked
// goroutines after everything ran (but rueidis's cluster-topology refresh,
// which outlives a closed cluster client by a few seconds).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(redistest.WithExampleRedis(m, "example:warmup:"), leaktest.IgnoreClusterClient()...)
}
