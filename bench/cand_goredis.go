package bench

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/cache/v9"
	"github.com/redis/go-redis/v9"
)

func init() {
	Register(Candidate{
		Name: "go-redis-cache",
		Config: "github.com/go-redis/cache/v9 over go-redis/v9: TinyLFU local tier (10,000 entries, TTL = LocalTTL), msgpack, " +
			"per-process single flight (Once). It has no cross-replica invalidation: a replica drops only its own copy on Set/Delete. " +
			"It rounds TTLs under 1 s up to 1 hour.",
		NewReplica: newGoRedisCache,
	})
}

type goRedisReplica struct {
	rdb    *redis.Client
	c      *cache.Cache
	local  *countingLocal
	ttl    time.Duration
	prefix string // the namespace: go-redis/cache has none of its own, and runs must not share keys
}

// countingLocal wraps the TinyLFU to count local hits.
type countingLocal struct {
	cache.LocalCache
	hits atomic.Uint64
}

func (l *countingLocal) Get(key string) ([]byte, bool) {
	b, ok := l.LocalCache.Get(key)
	if ok {
		l.hits.Add(1)
	}
	return b, ok
}

// quietGoRedis keeps go-redis's own dial-failure log lines (a global
// logger) out of the report's output, e.g. during the failover scenario.
var quietGoRedis sync.Once

type discard struct{}

func (discard) Printf(context.Context, string, ...any) {}

func newGoRedisCache(ctx context.Context, env Env) (Replica, error) {
	quietGoRedis.Do(func() { redis.SetLogger(discard{}) })
	rdb := redis.NewClient(&redis.Options{Addr: env.Addr})
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, err
	}
	local := &countingLocal{LocalCache: cache.NewTinyLFU(10_000, env.LocalTTL)}
	return &goRedisReplica{rdb: rdb, local: local, ttl: env.RemoteTTL, prefix: env.Namespace + ":",
		c: cache.New(&cache.Options{Redis: rdb, LocalCache: local})}, nil
}

func (r *goRedisReplica) Get(ctx context.Context, key string) (string, error) {
	var v string
	err := r.c.Get(ctx, r.prefix+key, &v)
	if errors.Is(err, cache.ErrCacheMiss) {
		return "", ErrMiss
	}
	return v, err
}

func (r *goRedisReplica) GetOrLoad(ctx context.Context, key string, load func(context.Context) (string, error)) (string, error) {
	var v string
	err := r.c.Once(&cache.Item{Ctx: ctx, Key: r.prefix + key, Value: &v, TTL: r.ttl,
		Do: func(it *cache.Item) (any, error) { return load(it.Context()) }})
	return v, err
}

func (r *goRedisReplica) Set(ctx context.Context, key, value string) error {
	return r.c.Set(&cache.Item{Ctx: ctx, Key: r.prefix + key, Value: value, TTL: r.ttl})
}

func (r *goRedisReplica) Delete(ctx context.Context, key string) error {
	return r.c.Delete(ctx, r.prefix+key)
}
func (r *goRedisReplica) LocalHits() uint64 { return r.local.hits.Load() }
func (r *goRedisReplica) Close()            { r.rdb.Close() }
