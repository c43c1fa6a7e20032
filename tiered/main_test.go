package tiered

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/leaktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, leaktest.IgnoreClusterClient()...) }
