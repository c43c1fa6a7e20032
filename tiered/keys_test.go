package tiered

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func collectKeys(c *Cache[string], ctx context.Context, glob string) ([]string, error) {
	var out []string
	for k, err := range c.Keys(ctx, glob) {
		if err != nil {
			return out, err
		}
		out = append(out, k)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// TestKeysStaysInItsNamespace: a namespace whose name holds glob
// characters walks its own keys only, not those its name would match.
func TestKeysStaysInItsNamespace(t *testing.T) {
	srv := redistest.Start(t)
	star := newCache[string](t, srv, testOptions[string]("a*"))
	ctx := context.Background()
	// Both namespaces at one generation, so their key names differ in the
	// namespace alone.
	raw := redistest.Client(t, srv)
	gen, err := raw.Do(ctx, raw.B().Get().Key(star.remote.GenerationKey()).Build()).ToString()
	require.NoError(t, err)
	require.NoError(t, raw.Do(ctx, raw.B().Set().Key("ab:v1:gen").Value(gen).Build()).Error())
	other := newCache[string](t, srv, testOptions[string]("ab"))
	require.Equal(t, star.remote.Generation(), other.remote.Generation())
	require.NoError(t, star.Set(ctx, "mine", "v"))
	require.NoError(t, other.Set(ctx, "theirs", "v"))
	// What Redis's SCAN matched, before KeyOf filters: "a*" must not
	// match namespace "ab"'s keys.
	var matched []string
	for cursor := uint64(0); ; {
		e, err := star.remote.Scan(ctx, cursor, "*")
		require.NoError(t, err)
		matched = append(matched, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	assert.Equal(t, []string{star.remote.ValueKey("mine")}, slices.Compact(slices.Sorted(slices.Values(matched))))
	keys, err := collectKeys(star, ctx, "*")
	require.NoError(t, err)
	assert.Equal(t, []string{"mine"}, keys)
	keys, err = collectKeys(other, ctx, "*")
	require.NoError(t, err)
	assert.Equal(t, []string{"theirs"}, keys)
}

// TestKeysEndsWhenRedisStopsAnswering: a walk with no deadline of its own
// on a Redis that stopped answering ends with ErrRemote (RemoteTimeout
// bounds each step) instead of waiting for Redis for ever.
func TestKeysEndsWhenRedisStopsAnswering(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[string]("keyspaused")
	o.RemoteTimeout = 100 * time.Millisecond
	c := newCache[string](t, srv, o)
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v"))
	require.NoError(t, srv.Pause())
	t.Cleanup(func() { srv.Resume() })
	got := make(chan error, 1)
	go func() {
		_, err := collectKeys(c, ctx, "*")
		got <- err
	}()
	select {
	case err := <-got:
		assert.ErrorIs(t, err, ErrRemote)
	case <-time.After(10 * time.Second):
		srv.Resume()
		t.Fatal("Keys still waits for a paused Redis")
	}
}
