package tiered

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

type userV1 struct{ Name string }

// userV2 has the same JSON shape as userV1, in another type.
type userV2 struct{ Name string }

func TestDefaultValueType(t *testing.T) {
	assert.Equal(t, "github.com/tiercache/tiercache/tiered.userV1 remote.JSON", defaultValueType[userV1](JSONCodec))
	assert.Equal(t, "[]string remote.JSON", defaultValueType[[]string](JSONCodec))
	assert.Equal(t, "string remote.Bytes", defaultValueType[string](BytesCodec))
	assert.NotEqual(t, valueTypeID("a"), valueTypeID("b"))
	assert.NotZero(t, valueTypeID(""))
}

func TestTypeClashIsAnErrorNotAMiss(t *testing.T) {
	srv := redistest.Start(t)
	var logged logLines
	writer := newCache[userV1](t, srv, testOptions[userV1]("clash"))
	opts := testOptions[userV2]("clash")
	opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	reader := newCache[userV2](t, srv, opts)
	ctx := context.Background()
	require.NoError(t, writer.Set(ctx, "u", userV1{"Ada"}))
	require.NoError(t, writer.Set(ctx, "w", userV1{"Grace"}))

	_, err := reader.Get(ctx, "u")
	require.ErrorIs(t, err, ErrTypeClash)
	assert.NotErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, `key "u"`)
	assert.ErrorContains(t, err, "tiered.userV2")

	loaded := false
	_, err = reader.GetOrLoad(ctx, "u", func(context.Context) (userV2, error) { loaded = true; return userV2{"other"}, nil })
	require.ErrorIs(t, err, ErrTypeClash)
	assert.False(t, loaded, "another cache's value is not replaced by a load")

	got, err := reader.GetMany(ctx, []string{"u", "w", "absent"})
	require.ErrorIs(t, err, ErrTypeClash)
	assert.Empty(t, got)
	_, err = reader.GetOrLoadMany(ctx, []string{"u", "fresh"}, func(_ context.Context, keys []string) (map[string]userV2, error) {
		assert.Equal(t, []string{"fresh"}, keys, "only the key that is missing is loaded")
		return map[string]userV2{"fresh": {"new"}}, nil
	})
	require.ErrorIs(t, err, ErrTypeClash)

	assert.EqualValues(t, 5, reader.Stats().TypeClashes)
	assert.Zero(t, reader.Stats().Corrupt)
	assert.Equal(t, 1, logged.count("another value type"), "one log line for a burst of clashes")

	// The writer's value is untouched.
	v, err := writer.Get(ctx, "u")
	require.NoError(t, err)
	assert.Equal(t, "Ada", v.Name)
}

func TestSameValueTypeSharesANamespace(t *testing.T) {
	srv := redistest.Start(t)
	o1 := testOptions[userV1]("shared")
	o1.ValueType = "svc.User/json-v1"
	o2 := testOptions[userV2]("shared")
	o2.ValueType = "svc.User/json-v1"
	writer, reader := newCache[userV1](t, srv, o1), newCache[userV2](t, srv, o2)
	ctx := context.Background()
	require.NoError(t, writer.Set(ctx, "u", userV1{"Ada"}))
	v, err := reader.Get(ctx, "u")
	require.NoError(t, err)
	assert.Equal(t, "Ada", v.Name)
	assert.Zero(t, reader.Stats().TypeClashes)
}

// logLines is what a logger wrote, by line.
type logLines struct {
	mu  sync.Mutex
	all strings.Builder
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.Write(p)
}

func (l *logLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.Lines(l.all.String()) {
		if strings.Contains(line, sub) {
			n++
		}
	}
	return n
}
