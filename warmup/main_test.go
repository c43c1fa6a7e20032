package warmup

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestMain gives the examples a Redis at REDIS_URL and checks for leaked
// goroutines after everything ran.
func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.WithExampleRedis(m, "example:warmup:")) }
