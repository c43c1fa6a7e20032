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
			"LocalTTL/RemoteTTL as the scenario sets them, 64 MiB local (--local-mib), JSON codec, remote timeout 500 ms",
		NewReplica: newTiercache,
		WarmsUp:    true,
		SizedLocal: true,
	})
}

// hotKeysPreloaded is how many of the fleet's hottest keys a replica that
// warms up preloads: the deploy scenario's whole key space.
const hotKeysPreloaded = 1000

type tiercacheReplica struct {
	rc rueidis.Client
	c  *tiered.Cache[string]
	// With Env.Warmup: the tracker that feeds the fleet's hot set, and the
	// preload this replica started with.
	tracker    *warmup.HotKeys
	warm       *warmup.Warmup
	stopWarmup context.CancelFunc
	// reads counts the replica's reads, as naive's adapter counts its
	// hits: each adapter pays one shared atomic per read (LocalHits).
	reads atomic.Uint64
	// preloadMisses are the local misses the preload's own reads made;
	// they are not the replica's reads.
	preloadMisses atomic.Uint64
}

func newTiercache(ctx context.Context, env Env) (Replica, error) {
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{env.Addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	opts := tiered.Options[string]{
		Client: rc, Namespace: env.Namespace, LocalTTL: env.LocalTTL, RemoteTTL: env.RemoteTTL,
		BreakerCooldown: 500 * time.Millisecond, LocalMaxCost: env.LocalMaxCost,
	}
	r := &tiercacheReplica{rc: rc, stopWarmup: func() {}}
	if env.Warmup {
		// Pushed often: a bench fleet lives seconds, not hours.
		r.tracker, err = warmup.NewHotKeys(warmup.HotKeysOptions{Client: rc, Namespace: env.Namespace, PushInterval: 250 * time.Millisecond})
		if err != nil {
			rc.Close()
			return nil, err
		}
		opts.Sampler = r.tracker
	}
	if r.c, err = tiered.New[string](ctx, opts); err != nil {
		r.closeTracker()
		rc.Close()
		return nil, err
	}
	if env.Warmup {
		var wctx context.Context
		wctx, r.stopWarmup = context.WithCancel(context.Background())
		r.warm = warmup.Start(wctx, r.c, warmup.Options[string]{Client: rc, TopN: hotKeysPreloaded, Budget: 5 * time.Second})
	}
	return r, nil
}

// WaitReady waits for the preload a replica that warms up starts with.
func (r *tiercacheReplica) WaitReady(ctx context.Context) error {
	if r.warm == nil {
		return nil
	}
	select {
	case <-r.warm.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	// The preload's own local misses (it reads through the cache) are not
	// the replica's reads.
	r.preloadMisses.Store(r.c.Stats().LocalMisses)
	return nil
}

// Counters are the cache's own: local hits as its Stats counts them, and
// the Redis calls its remote tier made (every operation, scripts as one).
func (r *tiercacheReplica) Counters() map[string]float64 {
	st := r.c.Stats()
	var calls uint64
	for _, op := range st.Remote.Ops {
		calls += op.Calls
	}
	return map[string]float64{"local-hits": float64(st.LocalHits), "redis-calls": float64(calls),
		"lease-waits": float64(st.LeaseWaits), "invalidations-received": float64(st.InvalidationsReceived)}
}

func (r *tiercacheReplica) closeTracker() {
	if r.tracker != nil {
		r.tracker.Close()
	}
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
func (r *tiercacheReplica) Close() {
	r.stopWarmup()
	r.c.Close()
	r.closeTracker()
	r.rc.Close()
}

// Preload warms the replica's local tier with warmup.Preload.
func (r *tiercacheReplica) Preload(ctx context.Context, keys []string) error {
	before := r.c.Stats().LocalMisses
	_, err := warmup.Preload(ctx, r.c, warmup.Options[string]{TopN: -1, Keys: keys})
	r.preloadMisses.Add(r.c.Stats().LocalMisses - before)
	return err
}
