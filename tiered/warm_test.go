package tiered

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// Warm reads a batch into the local tier in one MGET: what it found is
// served locally afterwards (a tombstone too), and what Redis lacks
// (absent, corrupt) is reported for the caller to load.
func TestWarmFillsTheLocalTierAndReportsWhatRedisLacks(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	opts := Options[string]{Namespace: "warm", LocalTTL: time.Hour, RemoteTTL: time.Hour, NegativeTTL: time.Minute, PingInterval: -1}
	writer := newCache(t, srv, opts)
	require.NoError(t, writer.Set(ctx, "a", "A"))
	require.NoError(t, writer.Set(ctx, "b", "B"))
	_, err := writer.GetOrLoad(ctx, "gone", func(context.Context) (string, error) { return "", ErrNotFound })
	require.ErrorIs(t, err, ErrNotFound) // a tombstone in Redis
	rc := redistest.Client(t, srv)
	require.NoError(t, rc.Do(ctx, rc.B().Set().Key(writer.remote.ValueKey("bad")).Value("garbage").Build()).Error())

	fresh := newCache(t, srv, opts)
	found, missing, err := fresh.Warm(ctx, []string{"a", "b", "gone", "absent", "bad"})
	require.NoError(t, err)
	assert.Equal(t, 2, found)
	assert.Equal(t, []string{"absent", "bad"}, missing, "a tombstone is found absent: nothing to load")
	s := fresh.Stats()
	assert.EqualValues(t, 3, s.RemoteHits, "a, b and the tombstone")
	assert.EqualValues(t, 1, s.RemoteMisses)
	assert.EqualValues(t, 1, s.Corrupt)
	assert.Zero(t, s.LocalMisses, "the local tier is not looked at")

	for k, want := range map[string]string{"a": "A", "b": "B"} {
		v, err := fresh.Get(ctx, k)
		require.NoError(t, err)
		assert.Equal(t, want, v)
	}
	_, err = fresh.Get(ctx, "gone")
	assert.ErrorIs(t, err, ErrNotFound)
	s = fresh.Stats()
	assert.Zero(t, s.LocalMisses, "every read was answered locally, as soon as Warm returned")
	assert.EqualValues(t, 1, s.NegativeHits)

	found, missing, err = fresh.Warm(ctx, nil)
	assert.NoError(t, err)
	assert.Zero(t, found)
	assert.Empty(t, missing)
	_, _, err = fresh.Warm(ctx, []string{"ok", ""})
	assert.ErrorIs(t, err, ErrInvalidKey)
	fresh.Close()
	_, _, err = fresh.Warm(ctx, []string{"a"})
	assert.ErrorIs(t, err, ErrClosed)
}

// afterRead runs a function when a Redis read step ends, before the
// caller goes on with what it read.
type afterRead func()

func (f afterRead) Start(ctx context.Context, call Call) (context.Context, func(string, error)) {
	if call.Op != OpRedisRead {
		return ctx, nil
	}
	return ctx, func(string, error) { f() }
}

// Warm's fills are fenced like any other: a write whose invalidation this
// replica applies after Warm read the old value, but before Warm fills it,
// keeps the old value out of the local tier.
func TestWarmIsFencedAgainstAWriteAfterItsRead(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	opts := Options[string]{Namespace: "warmw", LocalTTL: time.Hour, RemoteTTL: time.Hour, PingInterval: -1}
	writer := newCache(t, srv, opts)
	require.NoError(t, writer.Set(ctx, "k", "v1"))
	var reader *Cache[string]
	var once sync.Once
	opts.Observer = afterRead(func() {
		once.Do(func() {
			require.NoError(t, writer.Set(ctx, "k", "v2"))
			require.Eventually(t, func() bool { return reader.Stats().InvalidationsReceived == 1 }, 5*time.Second, time.Millisecond)
		})
	})
	reader = newCache(t, srv, opts)
	found, missing, err := reader.Warm(ctx, []string{"k"})
	require.NoError(t, err)
	assert.Equal(t, 1, found, "Redis had it")
	assert.Empty(t, missing)
	_, held := reader.local.Get("k")
	assert.False(t, held, "v1, read before the write, was not filled")
	v, err := reader.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v2", v)
}
