package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// keysOf lists the keys of srv's Redis, sorted.
func keysOf(t *testing.T, run *Run) []string {
	t.Helper()
	c, err := run.adminClient()
	require.NoError(t, err)
	keys, err := c.Do(context.Background(), c.B().Keys().Pattern("*").Build()).AsStrSlice()
	require.NoError(t, err)
	slices.Sort(keys)
	return keys
}

func TestDropNamespaceDeletesOnlyItsOwnKeys(t *testing.T) {
	srv := redistest.Start(t)
	run := &Run{Addr: srv.Addr()}
	defer run.Close()
	c, err := run.adminClient()
	require.NoError(t, err)
	ctx := context.Background()
	var mine []string
	for i := range 2500 { // more than one SCAN page
		mine = append(mine, fmt.Sprintf("bench:z*p:1:v1:g1:{k%d}", i))
	}
	others := []string{"bench:z*p:10:k", "bench:zXp:1:k", "bench:z*p:1", "bench:z*p:1x:k"}
	for _, k := range append(slices.Clone(mine), others...) {
		require.NoError(t, c.Do(ctx, c.B().Set().Key(k).Value("v").Build()).Error())
	}
	run.dropNamespace("bench:z*p:1")
	slices.Sort(others)
	assert.Equal(t, others, keysOf(t, run), "its keys gone, every other kept (a glob character in the namespace is literal)")
}

func TestFleetCloseDropsItsNamespace(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, name := range []string{"tiercache", "naive"} {
		t.Run(name, func(t *testing.T) {
			run := &Run{Addr: srv.Addr()}
			defer run.Close()
			f, err := run.newFleet(ctx, "drop", entry(t, name), 2)
			require.NoError(t, err)
			_, err = call[wallReply](ctx, f.members[0].p, "set", setArgs{Key: "k", Value: "v1"})
			require.NoError(t, err)
			_, err = call[struct{}](ctx, f.members[1].p, "load.start", loadSpec{Keys: 50, Goroutines: 2, OpTimeout: time.Second, Loader: time.Millisecond})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return len(keysOf(t, run)) > 10 }, 5*time.Second, 10*time.Millisecond, "the load writes keys")
			_, err = call[loadReport](ctx, f.members[1].p, "load.stop", struct{}{})
			require.NoError(t, err)
			f.close()
			assert.Empty(t, keysOf(t, run), "nothing of the fleet's namespace is left in Redis")
		})
	}
}
