package tiered

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// pttl is the Redis TTL left on key's value.
func pttl[V any](t *testing.T, c *Cache[V], key string) time.Duration {
	t.Helper()
	rc := c.opts.Client
	ms, err := rc.Do(context.Background(), rc.B().Pttl().Key(c.remote.ValueKey(key)).Build()).AsInt64()
	require.NoError(t, err)
	return time.Duration(ms) * time.Millisecond
}

// assertTTL checks a Redis TTL is d less at most the jitter (10 %) and the
// time the test took since the write.
func assertTTL(t *testing.T, d, got time.Duration, what string) {
	t.Helper()
	assert.LessOrEqual(t, got, d, what)
	assert.Greater(t, got, d*85/100, what)
}

func TestWithTTL(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("ttl"))
	ctx := context.Background()

	require.NoError(t, c.Set(ctx, "set", "v", WithTTL(time.Minute)))
	assertTTL(t, time.Minute, pttl(t, c, "set"), "Set with WithTTL")
	require.NoError(t, c.Set(ctx, "plain", "v"))
	assertTTL(t, 10*time.Minute, pttl(t, c, "plain"), "without it: RemoteTTL")

	_, err := c.GetOrLoad(ctx, "load", func(context.Context) (string, error) { return "v", nil }, WithTTL(2*time.Minute))
	require.NoError(t, err)
	assertTTL(t, 2*time.Minute, pttl(t, c, "load"), "GetOrLoad with WithTTL")

	got, err := c.GetOrLoadMany(ctx, []string{"m1", "m2"}, func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"m1": "1", "m2": "2"}, nil
	}, WithTTL(3*time.Minute))
	require.NoError(t, err)
	assert.Len(t, got, 2)
	assertTTL(t, 3*time.Minute, pttl(t, c, "m1"), "GetOrLoadMany with WithTTL")

	// The local copy lives min(LocalTTL, d): a minute of LocalTTL, 300 ms
	// of TTL, and the value is gone from both tiers well before the minute.
	require.NoError(t, c.Set(ctx, "short", "v", WithTTL(300*time.Millisecond)))
	v, err := c.Get(ctx, "short")
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	require.Eventually(t, func() bool {
		_, err := c.Get(ctx, "short")
		return errors.Is(err, ErrNotFound)
	}, 5*time.Second, 10*time.Millisecond, "the local copy outlived the TTL")
}

func TestWithTTLRejectsBadValues(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("ttlbad"))
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	loadMany := func(context.Context, []string) (map[string]string, error) { return nil, nil }
	for _, d := range []time.Duration{0, -time.Second, MaxTTL + 1} {
		assert.ErrorIs(t, c.Set(ctx, "k", "v", WithTTL(d)), ErrInvalidTTL, d)
		_, err := c.GetOrLoad(ctx, "k", load, WithTTL(d))
		assert.ErrorIs(t, err, ErrInvalidTTL, d)
		_, err = c.GetOrLoadMany(ctx, []string{"a"}, loadMany, WithTTL(d))
		assert.ErrorIs(t, err, ErrInvalidTTL, d)
		assert.ErrorIs(t, SetTTL(ctx, d), ErrInvalidTTL, d)
	}
	assert.ErrorIs(t, SetTTL(ctx, time.Minute), ErrNotInLoad)
	_, err := c.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound, "nothing was written")
}

func TestLoaderSetsTheTTL(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("ttlload"))
	ctx := context.Background()

	_, err := c.GetOrLoad(ctx, "session", func(ctx context.Context) (string, error) {
		require.NoError(t, SetTTL(ctx, 90*time.Second))
		return "s", nil
	}, WithTTL(time.Hour))
	require.NoError(t, err)
	assertTTL(t, 90*time.Second, pttl(t, c, "session"), "the loader's TTL wins over WithTTL")

	_, err = c.GetOrLoad(ctx, "gone", func(ctx context.Context) (string, error) {
		require.NoError(t, SetTTL(ctx, time.Minute))
		return "", ErrNotFound
	})
	require.ErrorIs(t, err, ErrNotFound)
	assertTTL(t, time.Minute, pttl(t, c, "gone"), "a tombstone lives the loader's TTL, not NegativeTTL (5 s)")

	got, err := c.GetOrLoadMany(ctx, []string{"a", "b", "c"}, func(ctx context.Context, keys []string) (map[string]string, error) {
		require.NoError(t, SetTTL(ctx, 2*time.Minute))
		require.NoError(t, SetTTL(ctx, 30*time.Second, "b"))
		return map[string]string{"a": "A", "b": "B"}, nil // c: not found
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "A", "b": "B"}, got)
	assertTTL(t, 2*time.Minute, pttl(t, c, "a"), "every key: the loader's TTL")
	assertTTL(t, 30*time.Second, pttl(t, c, "b"), "one key: its own")
	assertTTL(t, 2*time.Minute, pttl(t, c, "c"), "the tombstone of a missing key too")
}

// TestRefreshKeepsTheTTL: a stale-while-revalidate refresh writes the new
// value with the TTL the old one was written with, not RemoteTTL.
func TestRefreshKeepsTheTTL(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("ttlrefresh")
	opts.FreshFor = 50 * time.Millisecond
	c := newCache[string](t, srv, opts)
	ctx := context.Background()
	load := func(context.Context) (string, error) { return "v", nil }
	_, err := c.GetOrLoad(ctx, "k", load, WithTTL(time.Minute))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c.GetOrLoad(ctx, "k", load)
		return c.Stats().Refreshes > 0
	}, 5*time.Second, 10*time.Millisecond)
	assertTTL(t, time.Minute, pttl(t, c, "k"), "the refresh kept WithTTL's minute")
}

// TestTTLAcrossReplicas: a per-call TTL and a loader's TTL hold in both
// tiers of two replicas. Each replica holds the other's value locally
// (LocalTTL is a minute), both copies expire with Redis's, and once Redis
// has dropped a key no replica answers it from its local tier.
func TestTTLAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	fleet := replicas[string](t, srv, 2, testOptions[string]("ttlfleet"))
	a, b := fleet[0], fleet[1]
	ctx := context.Background()
	const d = 800 * time.Millisecond

	require.NoError(t, a.Set(ctx, "set", "v", WithTTL(d)))
	// b applies the Set's invalidation before it reads: arriving after
	// b's read, it would rightly remove the copy b just filled.
	require.Eventually(t, func() bool { return b.Stats().InvalidationsReceived == 1 }, 5*time.Second, time.Millisecond)
	_, err := b.GetOrLoad(ctx, "loaded", func(ctx context.Context) (string, error) {
		require.NoError(t, SetTTL(ctx, d))
		return "v", nil
	})
	require.NoError(t, err)
	keys := []string{"set", "loaded"}
	for _, c := range fleet {
		for _, k := range keys {
			v, err := c.Get(ctx, k)
			require.NoError(t, err, k)
			assert.Equal(t, "v", v, k)
		}
		c.local.Wait()
		for _, k := range keys {
			_, ok := c.local.Get(k)
			require.True(t, ok, "%s is in the local tier of every replica", k)
		}
	}

	inLocal := func(c *Cache[string], k string) bool { _, ok := c.local.Get(k); return ok }
	gone := map[string]bool{}
	require.Eventually(t, func() bool {
		for _, k := range keys {
			// Redis first: a local copy seen after Redis dropped the
			// key outlived it.
			if pttl(t, a, k) < 0 {
				gone[k] = true
			}
			for i, c := range fleet {
				if gone[k] && inLocal(c, k) {
					t.Fatalf("replica %d still holds %s locally after Redis expired it", i, k)
				}
			}
		}
		return len(gone) == len(keys)
	}, 5*time.Second, 5*time.Millisecond, "Redis expires both keys within their TTL, not RemoteTTL")

	for i, c := range fleet {
		for _, k := range keys {
			assert.False(t, inLocal(c, k), "replica %d: %s expired locally too", i, k)
			_, err := c.Get(ctx, k)
			assert.ErrorIs(t, err, ErrNotFound, "replica %d: %s", i, k)
		}
	}
}
