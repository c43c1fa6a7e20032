package bench

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/rueidis"
)

func init() {
	Register(Candidate{
		Name: "naive",
		Config: "the usual recipe, written here as a reference: ristretto local tier + Redis, Set = SET then PUBLISH (two round trips), " +
			"a subscriber deletes local copies; no fill fences, no epochs, no resubscribe handling, per-replica single flight only.",
		NewReplica: newNaive,
		SizedLocal: true,
	})
}

type naiveReplica struct {
	c      rueidis.Client
	env    Env
	local  *ristretto.Cache[string, string]
	hits   atomic.Uint64
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	flight map[string]*naiveCall
}

type naiveCall struct {
	done chan struct{}
	v    string
	err  error
}

func newNaive(ctx context.Context, env Env) (Replica, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{env.Addr}, DisableCache: true})
	if err != nil {
		return nil, err
	}
	local, err := ristretto.NewCache(&ristretto.Config[string, string]{NumCounters: 1e5, MaxCost: cmp.Or(env.LocalMaxCost, defaultLocalMaxCost), BufferItems: 64})
	if err != nil {
		c.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &naiveReplica{c: c, env: env, local: local, cancel: cancel, done: make(chan struct{}), flight: map[string]*naiveCall{}}
	subscribed := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(r.done)
		c.Receive(rueidis.WithOnSubscriptionHook(rctx, func(rueidis.PubSubSubscription) { once.Do(func() { close(subscribed) }) }),
			c.B().Subscribe().Channel(env.Namespace+":naive").Build(),
			func(m rueidis.PubSubMessage) { local.Del(m.Message) })
	}()
	select {
	case <-subscribed:
	case <-ctx.Done():
		r.Close()
		return nil, ctx.Err()
	}
	return r, nil
}

func (r *naiveReplica) key(k string) string { return r.env.Namespace + ":" + k }

func (r *naiveReplica) Get(ctx context.Context, key string) (string, error) {
	if v, ok := r.local.Get(key); ok {
		r.hits.Add(1)
		return v, nil
	}
	v, err := r.c.Do(ctx, r.c.B().Get().Key(r.key(key)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", ErrMiss
	}
	if err == nil {
		r.local.SetWithTTL(key, v, int64(len(v)), r.env.LocalTTL)
	}
	return v, err
}

func (r *naiveReplica) GetOrLoad(ctx context.Context, key string, load func(context.Context) (string, error)) (string, error) {
	if v, ok := r.local.Get(key); ok {
		r.hits.Add(1)
		return v, nil
	}
	r.mu.Lock()
	if c, ok := r.flight[key]; ok {
		r.mu.Unlock()
		<-c.done
		return c.v, c.err
	}
	c := &naiveCall{done: make(chan struct{})}
	r.flight[key] = c
	r.mu.Unlock()
	c.v, c.err = r.Get(ctx, key)
	if c.err == ErrMiss {
		if c.v, c.err = load(ctx); c.err == nil {
			r.c.Do(ctx, r.c.B().Set().Key(r.key(key)).Value(c.v).Px(r.env.RemoteTTL).Build())
			r.local.SetWithTTL(key, c.v, int64(len(c.v)), r.env.LocalTTL)
		}
	}
	r.mu.Lock()
	delete(r.flight, key)
	r.mu.Unlock()
	close(c.done)
	return c.v, c.err
}

func (r *naiveReplica) Set(ctx context.Context, key, value string) error {
	if err := r.c.Do(ctx, r.c.B().Set().Key(r.key(key)).Value(value).Px(r.env.RemoteTTL).Build()).Error(); err != nil {
		return err
	}
	r.local.SetWithTTL(key, value, int64(len(value)), r.env.LocalTTL)
	return r.c.Do(ctx, r.c.B().Publish().Channel(r.env.Namespace+":naive").Message(key).Build()).Error()
}

func (r *naiveReplica) Delete(ctx context.Context, key string) error {
	if err := r.c.Do(ctx, r.c.B().Del().Key(r.key(key)).Build()).Error(); err != nil {
		return err
	}
	r.local.Del(key)
	return r.c.Do(ctx, r.c.B().Publish().Channel(r.env.Namespace+":naive").Message(key).Build()).Error()
}

func (r *naiveReplica) LocalHits() uint64 { return r.hits.Load() }

func (r *naiveReplica) Close() {
	r.cancel()
	<-r.done
	r.local.Close()
	r.c.Close()
}
