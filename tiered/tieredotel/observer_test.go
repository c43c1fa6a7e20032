package tieredotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/tieredotel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// traced builds a cache whose steps go to an in-memory exporter.
func traced(t *testing.T, opts tieredotel.Options) (*tiered.Cache[string], *tracetest.InMemoryExporter) {
	t.Helper()
	srv := redistest.Start(t)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
	require.NoError(t, err)
	t.Cleanup(client.Close)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	opts.TracerProvider = tp
	obs, err := tieredotel.New(opts)
	require.NoError(t, err)
	cache, err := tiered.New[string](context.Background(), tiered.Options[string]{
		Client: client, Namespace: "otel", LocalTTL: time.Minute, RemoteTTL: time.Hour, Observer: obs,
	})
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	return cache, exp
}

// span is what a test checks of an exported span.
type span struct {
	name, tier, result string
	key                string
	keys               int64
	failed             bool
}

func spans(exp *tracetest.InMemoryExporter) []span {
	var out []span
	for _, s := range exp.GetSpans() {
		got := span{name: s.Name, failed: s.Status.Code == codes.Error}
		for _, a := range s.Attributes {
			switch a.Key {
			case tieredotel.AttrTier:
				got.tier = a.Value.AsString()
			case tieredotel.AttrResult:
				got.result = a.Value.AsString()
			case tieredotel.AttrKey:
				got.key = a.Value.AsString()
			case tieredotel.AttrKeys:
				got.keys = a.Value.AsInt64()
			}
		}
		out = append(out, got)
	}
	return out
}

func TestSpansOfAMissAWriteAndAFailedLoad(t *testing.T) {
	cache, exp := traced(t, tieredotel.Options{})
	tp := sdktrace.NewTracerProvider()
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")

	_, err := cache.GetOrLoad(ctx, "user:42", func(context.Context) (string, error) { return "Ada", nil })
	require.NoError(t, err)
	require.NoError(t, cache.Set(ctx, "user:42", "Grace"))
	_, err = cache.GetOrLoad(ctx, "user:7", func(context.Context) (string, error) { return "", errors.New("db down") })
	require.Error(t, err)
	parent.End()

	assert.Equal(t, []span{
		{name: "tiercache redis.read", tier: "redis", result: "leased", keys: 1},
		{name: "tiercache load", tier: "origin", result: "ok", keys: 1},
		{name: "tiercache fill", tier: "redis", result: "stored", keys: 1},
		{name: "tiercache Set", tier: "redis", result: "ok", keys: 1},
		{name: "tiercache redis.read", tier: "redis", result: "leased", keys: 1},
		{name: "tiercache load", tier: "origin", result: "error", keys: 1, failed: true},
	}, spans(exp), "no key on any span by default")

	// Every span is a child of the caller's.
	for _, s := range exp.GetSpans() {
		assert.Equal(t, parent.SpanContext().TraceID(), s.SpanContext.TraceID(), s.Name)
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent.SpanID(), s.Name)
	}
}

func TestKeysHashedOrRaw(t *testing.T) {
	for _, tc := range []struct {
		keys tieredotel.Keys
		want string
	}{
		{tieredotel.KeysHashed, "ea3fd43be1e57d62"}, // hex(sha256("user:42")[:8])
		{tieredotel.KeysRaw, "user:42"},
	} {
		cache, exp := traced(t, tieredotel.Options{Keys: tc.keys, Namespace: "svc"})
		require.NoError(t, cache.Set(context.Background(), "user:42", "Ada"))
		got := exp.GetSpans()
		require.Len(t, got, 1)
		assert.Contains(t, got[0].Attributes, tieredotel.AttrKey.String(tc.want))
		assert.Contains(t, got[0].Attributes, attribute.String("tiercache.namespace", "svc"))
	}
}

func TestBadOptions(t *testing.T) {
	_, err := tieredotel.New(tieredotel.Options{Keys: 7})
	require.ErrorIs(t, err, tieredotel.ErrInvalidOptions)
	assert.ErrorContains(t, err, "Keys 7")
}
