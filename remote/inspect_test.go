package remote

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestInspect reads back, against a real Redis, each state a key can be in:
// a value (typed, compressed, tagged), a tombstone, a missing key with a
// load under way and a replica waiting for it, an invalidated tag, a
// foreign value and a namespace with no generation.
func TestInspect(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{TTL: time.Minute, Namespace: "svc"})
	ctx := context.Background()

	now := time.Now()
	tags, err := s.TagVersions(ctx, []string{"team:7", "org:1"}, time.Minute)
	require.NoError(t, err)
	big := strings.Repeat(`{"name":"ada"}`, 200)
	e := &Envelope{WrittenAt: now.UnixNano(), FreshUntil: now.Add(30 * time.Second).UnixNano(), ExpiresAt: now.Add(time.Minute).UnixNano(),
		LoadMicros: 1500, Type: 0xfeedbeef, Tags: tags, Payload: []byte(big)}
	require.NoError(t, s.Set(ctx, "42", e, Publication{}))

	r, err := Inspect(ctx, c, "svc", "42")
	require.NoError(t, err)
	assert.True(t, r.Present)
	assert.NoError(t, r.Corrupt)
	assert.Equal(t, s.Generation(), r.Generation)
	assert.Equal(t, s.ValueKey("42"), r.RedisKey)
	assert.Equal(t, 1, r.Format)
	assert.False(t, r.Tombstone)
	assert.Equal(t, uint64(0xfeedbeef), r.Type)
	assert.Equal(t, 1500*time.Microsecond, r.LoadTime)
	assert.Equal(t, now.UnixNano(), r.WrittenAt.UnixNano())
	assert.Equal(t, e.FreshUntil, r.FreshUntil.UnixNano())
	assert.Equal(t, e.ExpiresAt, r.ExpiresAt.UnixNano())
	assert.True(t, r.RedisTTL > 50*time.Second && r.RedisTTL <= time.Minute, "remaining TTL %v", r.RedisTTL)
	assert.False(t, r.NoExpiry)
	assert.True(t, r.Compressed)
	assert.Equal(t, len(big), r.PayloadBytes)
	assert.Less(t, r.CompressedBytes, r.PayloadBytes)
	stored, err := c.Do(ctx, c.B().Strlen().Key(r.RedisKey).Build()).AsInt64()
	require.NoError(t, err)
	assert.EqualValues(t, stored, r.StoredBytes)
	assert.Greater(t, r.StoredBytes, r.CompressedBytes, "header, type and tags come on top")
	assert.Equal(t, big, string(r.Payload))
	assert.Equal(t, []TagState{{"team:7", tags[0].Version, tags[0].Version, true}, {"org:1", tags[1].Version, tags[1].Version, true}}, r.Tags)
	assert.Empty(t, r.LeaseHolder)
	assert.False(t, r.Waiting)

	// An invalidated tag: its version key is gone, and the value with it.
	require.NoError(t, s.InvalidateTags(ctx, []string{"team:7"}, Publication{}))
	r, err = Inspect(ctx, c, "svc", "42")
	require.NoError(t, err)
	assert.True(t, r.Present, "the value stays in Redis until it expires or a reader drops it")
	assert.Equal(t, TagState{Tag: "team:7", Version: tags[0].Version}, r.Tags[0])
	assert.True(t, r.Tags[1].Valid)

	t.Run("tombstone", func(t *testing.T) {
		require.NoError(t, s.Set(ctx, "gone", &Envelope{WrittenAt: now.UnixNano(), Negative: true}, Publication{}))
		r, err := Inspect(ctx, c, "svc", "gone")
		require.NoError(t, err)
		assert.True(t, r.Present)
		assert.True(t, r.Tombstone)
		assert.Nil(t, r.Payload)
		assert.Zero(t, r.Type, "not recorded")
		assert.Zero(t, r.FreshUntil)
	})

	t.Run("missing key with a held lease and a waiter", func(t *testing.T) {
		token := LeaseToken(250 * time.Millisecond)
		lr, err := s.GetOrLease(ctx, "loading", token)
		require.NoError(t, err)
		require.True(t, lr.Leased)
		waiter := newStore(t, c, Options{TTL: time.Minute, Namespace: "svc"})
		lr, err = waiter.LeaseOrRead(ctx, "loading", NewToken())
		require.NoError(t, err)
		require.False(t, lr.Leased)

		r, err := Inspect(ctx, c, "svc", "loading")
		require.NoError(t, err)
		assert.False(t, r.Present)
		assert.Equal(t, token, r.LeaseHolder)
		assert.True(t, r.LeaseTTL > 0 && r.LeaseTTL <= 5*time.Second, "lease TTL %v", r.LeaseTTL)
		assert.Equal(t, 250*time.Millisecond, r.LeaseExpects)
		assert.True(t, r.Waiting)
		assert.Greater(t, r.WaitTTL, time.Duration(0))

		r, err = Inspect(ctx, c, "svc", "never-written")
		require.NoError(t, err)
		assert.Equal(t, KeyReport{Namespace: "svc", Key: "never-written", Generation: s.Generation(),
			GenerationValue: r.GenerationValue, RedisKey: s.ValueKey("never-written")}, r)
		assert.NotEmpty(t, r.GenerationValue)
	})

	t.Run("corrupt and foreign values are reported", func(t *testing.T) {
		for raw, format := range map[string]int{"not ours": 0, "tc\x09\x00 a newer format": 9, "tc\x01\x00short": 1} {
			require.NoError(t, c.Do(ctx, c.B().Set().Key(s.ValueKey("bad")).Value(raw).Build()).Error())
			r, err := Inspect(ctx, c, "svc", "bad")
			require.NoError(t, err)
			assert.True(t, r.Present)
			assert.ErrorIs(t, r.Corrupt, ErrCorrupt, "%q", raw)
			assert.Equal(t, format, r.Format, "%q", raw)
			assert.Equal(t, len(raw), r.StoredBytes)
			assert.True(t, r.NoExpiry, "written with no TTL")
			assert.Nil(t, r.Payload)
		}
	})

	t.Run("a namespace with no generation", func(t *testing.T) {
		r, err := Inspect(ctx, c, "other", "42")
		require.NoError(t, err)
		assert.Equal(t, KeyReport{Namespace: "other", Key: "42"}, r)
		require.NoError(t, c.Do(ctx, c.B().Set().Key("other:v1:gen").Value("garbage").Build()).Error())
		r, err = Inspect(ctx, c, "other", "42")
		require.NoError(t, err)
		assert.Zero(t, r.Generation, "unreadable: unknown")
		assert.Equal(t, "garbage", r.GenerationValue)
	})

	t.Run("bad arguments and an ended ctx", func(t *testing.T) {
		_, err := Inspect(ctx, nil, "svc", "42")
		assert.ErrorIs(t, err, ErrInvalidOptions)
		_, err = Inspect(ctx, c, "", "42")
		assert.ErrorIs(t, err, ErrInvalidOptions)
		done, cancel := context.WithCancel(ctx)
		cancel()
		_, err = Inspect(done, c, "svc", "42")
		assert.ErrorIs(t, err, context.Canceled)
	})
}
