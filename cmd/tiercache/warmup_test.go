package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/warmup"
)

func TestHotAndWarmupCommands(t *testing.T) {
	src := redistest.Start(t)
	dst := redistest.Start(t)
	ctx := context.Background()
	rc := redistest.Client(t, src)
	tr, err := warmup.NewHotKeys(warmup.HotKeysOptions{Client: rc, Namespace: "svc", PushInterval: time.Hour})
	require.NoError(t, err)
	c, err := tiered.New[string](ctx, tiered.Options[string]{Client: rc, Namespace: "svc", LocalTTL: time.Minute, RemoteTTL: time.Hour, Sampler: tr, SampleEvery: 1})
	require.NoError(t, err)
	defer c.Close()
	for i := range 5 {
		k := fmt.Sprint("hot-", i)
		require.NoError(t, c.Set(ctx, k, "value of "+k))
		for range 10 * (i + 1) {
			c.Get(ctx, k)
		}
	}
	require.NoError(t, c.Set(ctx, "cold", "c"))
	require.NoError(t, tr.Push(ctx))
	tr.Close()

	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"hot", "--redis", src.URL(), "--namespace", "svc", "--n", "3"}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), "hot-4")
	assert.NotContains(t, out.String(), "hot-0", "only the top 3")

	out.Reset()
	require.Equal(t, 0, run([]string{"warmup", "--from", src.URL(), "--to", dst.URL(), "--namespace", "svc", "--n", "5"}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), "5 keys copied")

	// A replica started on the warmed Redis finds the values, and the
	// hot set, so it can preload them.
	drc := redistest.Client(t, dst)
	fresh, err := tiered.New[string](ctx, tiered.Options[string]{Client: drc, Namespace: "svc", LocalTTL: time.Minute, RemoteTTL: time.Hour})
	require.NoError(t, err)
	defer fresh.Close()
	rep, err := warmup.Preload(ctx, fresh, warmup.Options[string]{Client: drc, TopN: 10})
	require.NoError(t, err)
	assert.Equal(t, 5, rep.Found)
	v, err := fresh.Get(ctx, "hot-2")
	require.NoError(t, err)
	assert.Equal(t, "value of hot-2", v)
	_, err = fresh.Get(ctx, "cold")
	assert.ErrorIs(t, err, tiered.ErrNotFound, "only the hot keys were copied")

	// --keys copies a listed set instead. A key being loaded holds only
	// its fill lease: it is absent, not copied.
	inLoad, release := make(chan struct{}), make(chan struct{})
	loading := make(chan error, 1)
	go func() {
		_, err := c.GetOrLoad(ctx, "loading", func(context.Context) (string, error) {
			close(inLoad)
			<-release
			return "loaded", nil
		})
		loading <- err
	}()
	<-inLoad
	list := filepath.Join(t.TempDir(), "keys.txt")
	require.NoError(t, os.WriteFile(list, []byte("cold\nabsent\nloading\n"), 0o600))
	out.Reset()
	require.Equal(t, 0, run([]string{"warmup", "--from", src.URL(), "--to", dst.URL(), "--namespace", "svc", "--keys", list}, &out, &errb), errb.String())
	assert.Contains(t, out.String(), "1 keys copied, 2 absent")
	close(release)
	require.NoError(t, <-loading)
	copiedKeys, err := drc.Do(ctx, drc.B().Keys().Pattern("svc:*{loading}*").Build()).AsStrSlice()
	require.NoError(t, err)
	assert.Empty(t, copiedKeys, "the lease was not copied")
	v, err = fresh.Get(ctx, "cold")
	require.NoError(t, err)
	assert.Equal(t, "c", v)

	assert.Equal(t, 2, run([]string{"warmup", "--namespace", "svc"}, &out, &errb), "--from and --to are required")
	assert.Equal(t, 2, run([]string{"hot", "--redis", src.URL()}, &out, &errb), "--namespace is required")
}
