package bench

import (
	"context"
	"sync/atomic"

	"github.com/redis/rueidis"
)

func init() {
	Register(Candidate{
		Name:       "rueidis",
		Config:     "raw rueidis, no local tier: every read is a Redis GET, GetOrLoad = GET, load, SET PX (no single flight). The baseline for coherence: always fresh, never local.",
		NewReplica: func(ctx context.Context, env Env) (Replica, error) { return newRueidis(env, false) },
	})
	Register(Candidate{
		Name: "rueidis-csc",
		Config: "rueidis client-side caching (DoCache, RESP3 CLIENT TRACKING, default 128 MiB per connection), local TTL = LocalTTL; " +
			"Redis invalidates the local copy when the key changes; GetOrLoad = DoCache GET, load, SET PX (no single flight).",
		NewReplica: func(ctx context.Context, env Env) (Replica, error) { return newRueidis(env, true) },
	})
}

type rueidisReplica struct {
	c       rueidis.Client
	env     Env
	tracked bool
	hits    atomic.Uint64
}

func newRueidis(env Env, tracked bool) (*rueidisReplica, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{env.Addr}, DisableCache: !tracked})
	if err != nil {
		return nil, err
	}
	return &rueidisReplica{c: c, env: env, tracked: tracked}, nil
}

func (r *rueidisReplica) key(k string) string { return r.env.Namespace + ":" + k }

func (r *rueidisReplica) Get(ctx context.Context, key string) (string, error) {
	var res rueidis.RedisResult
	if r.tracked {
		res = r.c.DoCache(ctx, r.c.B().Get().Key(r.key(key)).Cache(), r.env.LocalTTL)
		if res.IsCacheHit() {
			r.hits.Add(1)
		}
	} else {
		res = r.c.Do(ctx, r.c.B().Get().Key(r.key(key)).Build())
	}
	v, err := res.ToString()
	if rueidis.IsRedisNil(err) {
		return "", ErrMiss
	}
	return v, err
}

func (r *rueidisReplica) GetOrLoad(ctx context.Context, key string, load func(context.Context) (string, error)) (string, error) {
	v, err := r.Get(ctx, key)
	if err != ErrMiss {
		return v, err
	}
	if v, err = load(ctx); err != nil {
		return "", err
	}
	return v, r.Set(ctx, key, v)
}

func (r *rueidisReplica) Set(ctx context.Context, key, value string) error {
	return r.c.Do(ctx, r.c.B().Set().Key(r.key(key)).Value(value).Px(r.env.RemoteTTL).Build()).Error()
}

func (r *rueidisReplica) Delete(ctx context.Context, key string) error {
	return r.c.Do(ctx, r.c.B().Del().Key(r.key(key)).Build()).Error()
}

func (r *rueidisReplica) LocalHits() uint64 { return r.hits.Load() }
func (r *rueidisReplica) Close()            { r.c.Close() }
