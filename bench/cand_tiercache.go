package bench

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/warmup"
)

func init() {
	Register(Candidate{
		Name: "tiercache",
		Config: "tiered.Cache[string], pub/sub coherence, fenced fills, fleet-wide single flight; " +
			"LocalTTL/RemoteTTL as the scenario sets them, 64 MiB local, JSON codec, remote timeout 500 ms",
		NewReplica: newTiercache,
	})
}

type tiercacheReplica struct {
	rc    rueidis.Client
	c     *tiered.Cache[string]
	reads atomic.Uint64 // exact: the cache samples its local-hit count
	// preloadMisses are the local misses the preload's own reads made;
	// they are not the replica's reads.
	preloadMisses atomic.Uint64
}

func newTiercache(ctx context.Context, env Env) (Replica, error) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{env.Addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	c, err := tiered.New[string](ctx, tiered.Options{
		Client: rc, Namespace: env.Namespace, LocalTTL: env.LocalTTL, RemoteTTL: env.RemoteTTL,
		BreakerCooldown: 500 * time.Millisecond,
	})
	if err != nil {
		rc.Close()
		return nil, err
	}
	return &tiercacheReplica{rc: rc, c: c}, nil
}

func (r *tiercacheReplica) Get(ctx context.Context, key string) (string, error) {
	r.reads.Add(1)
	v, err := r.c.Get(ctx, key)
	if errors.Is(err, tiered.ErrNotFound) {
		return "", ErrMiss
	}
	return v, err
}

func (r *tiercacheReplica) GetOrLoad(ctx context.Context, key string, load func(context.Context) (string, error)) (string, error) {
	r.reads.Add(1)
	return r.c.GetOrLoad(ctx, key, load)
}

func (r *tiercacheReplica) Set(ctx context.Context, key, value string) error {
	return r.c.Set(ctx, key, value)
}

func (r *tiercacheReplica) Delete(ctx context.Context, key string) error { return r.c.Delete(ctx, key) }

// LocalHits is exact: reads minus the cache's (exact) local misses.
func (r *tiercacheReplica) LocalHits() uint64 {
	misses := r.c.Stats().LocalMisses - r.preloadMisses.Load()
	return r.reads.Load() - min(misses, r.reads.Load())
}
func (r *tiercacheReplica) Close() { r.c.Close(); r.rc.Close() }

// Preload warms the replica's local tier with warmup.Preload.
func (r *tiercacheReplica) Preload(ctx context.Context, keys []string) error {
	before := r.c.Stats().LocalMisses
	_, err := warmup.Preload(ctx, r.c, warmup.Options[string]{TopN: -1, Keys: keys})
	r.preloadMisses.Add(r.c.Stats().LocalMisses - before)
	return err
}
