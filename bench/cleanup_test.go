package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestFleetCloseDropsItsNamespace(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, name := range []string{"tiercache", "naive"} {
		t.Run(name, func(t *testing.T) {
			run := &Run{Addr: srv.Addr()}
			defer run.Close()
			admin, err := run.adminClient()
			require.NoError(t, err)
			f, err := run.newFleet(ctx, "drop", entry(t, name), 2)
			require.NoError(t, err)
			_, err = call[wallReply](ctx, f.members[0].p, "set", setArgs{Key: "k", Value: "v1"})
			require.NoError(t, err)
			_, err = call[struct{}](ctx, f.members[1].p, "load.start", loadSpec{Keys: 50, Goroutines: 2, OpTimeout: time.Second, Loader: time.Millisecond})
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				n, err := admin.Do(ctx, admin.B().Dbsize().Build()).AsInt64()
				return err == nil && n > 10
			}, 5*time.Second, 10*time.Millisecond, "the load writes keys")
			_, err = call[loadReport](ctx, f.members[1].p, "load.stop", struct{}{})
			require.NoError(t, err)
			f.close()
			assert.Empty(t, redistest.AllKeys(t, admin), "nothing of the fleet's namespace is left in Redis")
		})
	}
}
