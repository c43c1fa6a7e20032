package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tiercache/tiercache/internal/carry"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// maxConcurrentWaits bounds the keys of one batch that wait at once for
// other replicas' loads.
const maxConcurrentWaits = 16

// GetMany returns the values of keys that either tier holds: the local tier
// first, then one MGET (split by slot on a Cluster client) for the rest.
// Keys neither tier holds, or tombstoned, are absent from the result.
// What it read from Redis is in the local tier when it returns, and in
// ristretto (it waits for the local tier's hand-over), so a preload's reads
// hit at once and its growth is in the tier's cost.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string) (map[string]V, error) {
	out, missing, fences, err := c.localPass(keys)
	if err != nil || len(missing) == 0 {
		return out, err
	}
	defer c.local.Wait()
	_, clashed, err := c.remotePass(ctx, missing, fencesOf(missing, fences), into(out))
	if err != nil && len(c.heldPass(missing, out)) == 0 {
		err = nil // every key was served by the held local tier
	}
	return out, errors.Join(err, clashed)
}

// Warm reads keys from Redis with one MGET (split by slot on a Cluster
// client) into the local tier, and reports how many it found and which
// Redis lacks or holds corrupt (a tombstone is found absent, and is in
// neither; another value type's is reported in the error), for a warm-up
// that has no use for the values: it does not look at the local tier first
// (a copy held is replaced by Redis's, under the same fence as any fill)
// and returns no map. Keys should be distinct. Like GetMany, it returns
// once what it read is in the local tier.
func (c *Cache[V]) Warm(ctx context.Context, keys []string) (found int, missing []string, err error) {
	for _, k := range keys {
		if err := c.checkKey(k); err != nil {
			return 0, nil, err
		}
	}
	if c.closed.Load() {
		return 0, nil, ErrClosed
	}
	if len(keys) == 0 {
		return 0, nil, nil
	}
	fences := make([]local.Fence, len(keys))
	for i, k := range keys {
		fences[i] = c.local.Fence(k) // before the read, as for every fill
	}
	defer c.local.Wait()
	missing, clashed, err := c.remotePass(ctx, keys, func(i int) local.Fence { return fences[i] }, func(string, V) { found++ })
	if err != nil {
		return 0, missing, err
	}
	return found, missing, clashed
}

// GetOrLoadMany is GetMany that loads what neither tier holds: one call of
// loadMany for every missing key this replica wins the fleet lease of, while
// keys whose lease another replica holds are waited for, as in GetOrLoad.
// loadMany returns the values it found; a key it leaves out is not found
// (and tombstoned for Options.NegativeTTL). The result holds every key
// found; an error is the first that stopped a key. Like GetMany, it
// returns once what it read or loaded is in the local tier.
func (c *Cache[V]) GetOrLoadMany(ctx context.Context, keys []string, loadMany func(ctx context.Context, keys []string) (map[string]V, error), opts ...CallOption) (map[string]V, error) {
	out, missing, fences, err := c.localPass(keys)
	if err != nil || len(missing) == 0 {
		return out, err
	}
	defer c.local.Wait()
	co := c.callOptions(opts)
	if err := c.checkCall(co); err != nil {
		return out, err
	}
	left, clashed, err := c.remotePass(ctx, missing, fencesOf(missing, fences), into(out))
	if err != nil {
		// Fail open: Redis is unreachable, so load and cache locally.
		c.stats.remoteErrors.Add(1)
		return out, c.loadManyLocal(ctx, c.heldPass(left, out), fences, loadMany, co, out)
	}
	if len(left) == 0 {
		return out, clashed
	}
	token := remote.NewToken()
	rctx, end := c.observe(ctx, OpRedisRead, oneKey(left), len(left))
	leases, err := c.remote.GetOrLeaseMany(rctx, left, token)
	endWrite(end, err)
	if err != nil {
		c.stats.remoteErrors.Add(1)
		return out, c.loadManyLocal(ctx, left, fences, loadMany, co, out)
	}
	var mine, others []string
	for i, k := range left {
		switch r := leases[i]; {
		case r.Found:
			v, err := c.decodeEnvelope(&r.Envelope)
			switch {
			case err == nil:
				c.stats.remoteHits.Add(1)
				if _, err := c.fromRemote(k, fences[k], &r.Envelope, v, nil); err == nil {
					out[k] = v
				}
			case errors.Is(err, ErrTypeClash):
				clashed = errors.Join(clashed, c.typeClash(k, err))
			default:
				others = append(others, k)
			}
		case r.Leased:
			c.stats.remoteMisses.Add(1)
			mine = append(mine, k)
		default:
			others = append(others, k) // held elsewhere, or corrupt
		}
	}
	errs := []error{clashed}
	if len(mine) > 0 {
		if err := c.loadManyAndFill(ctx, mine, fences, token, loadMany, co, out); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.waitForOthers(ctx, others, loadMany, out, opts); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// localPass answers from the local tier and fences the rest.
func (c *Cache[V]) localPass(keys []string) (out map[string]V, missing []string, fences map[string]local.Fence, err error) {
	out = make(map[string]V, len(keys))
	fences = make(map[string]local.Fence)
	for _, k := range keys {
		if err := c.checkKey(k); err != nil {
			return out, nil, nil, err
		}
		if _, dup := fences[k]; dup {
			continue
		}
		if _, dup := out[k]; dup {
			continue
		}
		fence := c.local.Fence(k)
		if e, ok := c.local.Get(k); ok {
			c.stats.localHits.inc()
			if !e.Negative {
				out[k] = e.Value
			}
			continue
		}
		c.stats.localMisses.Add(1)
		fences[k] = fence
		missing = append(missing, k)
	}
	if c.closed.Load() && (len(missing) > 0 || len(keys) == 0) {
		return out, nil, nil, ErrClosed
	}
	return out, missing, fences, nil
}

// heldPass serves keys from a held local tier once Redis has failed (see
// heldHit), and returns those it could not.
func (c *Cache[V]) heldPass(keys []string, out map[string]V) (left []string) {
	for _, k := range keys {
		e, ok := c.heldHit(k)
		switch {
		case !ok:
			left = append(left, k)
		case !e.Negative:
			out[k] = e.Value
		}
	}
	return left
}

// remotePass reads keys with one MGET, fills the local tier with what it
// found (keys[i] under fence(i)) and hands each value to found; it returns
// the keys Redis lacks (or holds corrupt), and the keys holding another
// ValueType's values as clashed. On error it returns every key.
func (c *Cache[V]) remotePass(ctx context.Context, keys []string, fence func(i int) local.Fence, found func(key string, v V)) (left []string, clashed, err error) {
	rctx, end := c.observe(ctx, OpRedisRead, oneKey(keys), len(keys))
	res, err := c.remote.GetMany(rctx, keys)
	endWrite(end, err)
	if err != nil {
		c.stats.remoteErrors.Add(1)
		return keys, nil, fmt.Errorf("%w: mget: %w", ErrRemote, err)
	}
	for i, k := range keys {
		f := &res[i]
		if f.Err == nil {
			v, err := c.decodeEnvelope(&f.Envelope)
			switch {
			case err == nil:
				c.stats.remoteHits.Add(1)
				if _, err := c.fromRemote(k, fence(i), &f.Envelope, v, nil); err == nil {
					found(k, v)
				}
				continue
			case errors.Is(err, ErrTypeClash):
				clashed = errors.Join(clashed, c.typeClash(k, err))
				continue
			}
		}
		if errors.Is(f.Err, remote.ErrMiss) {
			c.stats.remoteMisses.Add(1)
		} else {
			c.stats.corrupt.Add(1)
		}
		left = append(left, k)
	}
	return left, clashed, nil
}

// fencesOf gives remotePass the fences of keys from a batch's map.
func fencesOf(keys []string, fences map[string]local.Fence) func(int) local.Fence {
	return func(i int) local.Fence { return fences[keys[i]] }
}

// into gives remotePass's values to out.
func into[V any](out map[string]V) func(string, V) {
	return func(k string, v V) { out[k] = v }
}

// loadMany calls the batch loader, turning a panic into ErrLoaderPanic.
// ttls holds what the loader set with SetTTL.
func (c *Cache[V]) loadMany(ctx context.Context, keys []string, loadMany func(context.Context, []string) (map[string]V, error)) (m map[string]V, ttls *loadTTL, err error) {
	c.stats.loads.Add(1)
	ctx, ttls = withLoadTTL(ctx)
	ctx, end := c.observe(ctx, OpLoad, oneKey(keys), len(keys))
	start := time.Now()
	defer func() {
		defer func() { endLoad(end, err) }()
		c.stats.loadDuration.Observe(time.Since(start))
		if p := recover(); p != nil {
			lp := loaderPanic(p)
			err = lp
			c.log.Error("loader-panic", "batch loader panicked", "panic", p, "stack", string(lp.Stack))
		}
		if err != nil {
			c.stats.loadErrors.Add(1)
		}
	}()
	m, err = loadMany(ctx, keys)
	return m, ttls, err
}

// loadManyAndFill loads the keys this replica holds the leases of, with
// one loader call, and fills both tiers under lease and fences.
func (c *Cache[V]) loadManyAndFill(ctx context.Context, keys []string, fences map[string]local.Fence, token string, loadMany func(context.Context, []string) (map[string]V, error), co callOptions, out map[string]V) error {
	bg := context.WithoutCancel(ctx)
	// Every key is filled or released by then: this replica's own waiters
	// look again (see waiters).
	defer c.waiting.wake(keys...)
	defer func() {
		// A panic (the codec's) on the way: give the leases back at once,
		// so nobody need wait them out. (A filled key's is gone already.)
		if p := recover(); p != nil {
			for _, k := range keys {
				c.remote.Release(bg, k, token, 0, c.keysPublication(k))
			}
			panic(p)
		}
	}()
	// Tag versions before the load, as in loadAndFill.
	tags, err := c.remote.TagVersions(ctx, co.tags, 0)
	if err != nil {
		for _, k := range keys {
			c.remote.Release(bg, k, token, 0, c.keysPublication(k))
		}
		return c.loadManyLocal(ctx, keys, fences, loadMany, co, out)
	}
	m, ttls, err := c.loadMany(ctx, keys, loadMany)
	if err != nil {
		for _, k := range keys {
			c.remote.Release(bg, k, token, c.opts.LoadBackoff, c.keysPublication(k))
		}
		return err
	}
	items := make([]remote.FillItem, 0, len(keys))
	values := make([]V, 0, len(keys))
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			if ttl := ttls.of(k); c.opts.NegativeTTL > 0 || ttl > 0 {
				env := c.envelope(nil, 0, 0, c.tombstoneTTL(ttl))
				env.Negative, env.Tags = true, tags
				items = append(items, remote.FillItem{Key: k, Envelope: &env, Options: remote.FillOptions{TTL: c.ttlOf(&env)}})
				values = append(values, v)
			} else {
				c.remote.Release(bg, k, token, 0, c.keysPublication(k))
			}
			continue
		}
		out[k] = v
		payload, err := c.opts.Codec.Marshal(v)
		if err != nil {
			c.remote.Release(bg, k, token, c.opts.LoadBackoff, c.keysPublication(k))
			continue
		}
		env := c.envelope(payload, 0, co.freshFor, c.valueTTL(ttls.of(k), co))
		env.Tags = tags
		items = append(items, remote.FillItem{Key: k, Envelope: &env, Options: remote.FillOptions{TTL: c.ttlOf(&env)}})
		values = append(values, v)
	}
	fctx, end := c.observe(bg, OpFill, "", len(items))
	stored, errs := c.remote.FillMany(fctx, token, items)
	endFill(end, true, errors.Join(errs...))
	for i, it := range items {
		switch {
		case errors.Is(errs[i], remote.ErrTooLarge):
			c.remote.Release(bg, it.Key, token, 0, c.keysPublication(it.Key))
			c.tooLarge(len(it.Envelope.Payload)) // served (out has it), not cached
		case errs[i] != nil:
			c.stats.remoteErrors.Add(1)
			c.remote.Release(bg, it.Key, token, 0, c.keysPublication(it.Key))
		case !stored[i]:
			c.stats.fillsVoided.Add(1)
		default:
			c.fillLocal(fences[it.Key], it.Key, values[i], it.Envelope, cost(it.Envelope.Payload), afterMiss)
		}
	}
	return nil
}

// waitForOthers resolves keys another replica is loading, each through the
// single-key path (which waits to be woken, and takes over if that load
// fails), a bounded number at a time.
func (c *Cache[V]) waitForOthers(ctx context.Context, keys []string, loadMany func(context.Context, []string) (map[string]V, error), out map[string]V, opts []CallOption) error {
	if len(keys) == 0 {
		return nil
	}
	var mu sync.Mutex
	// A panic of a key's load (a codec's, on its flight) reaches its
	// callers: here the group's goroutine, which nobody could recover. It
	// is carried to the caller's goroutine instead.
	var panics carry.Panics
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxConcurrentWaits)
	for _, k := range keys {
		g.Go(func() (err error) {
			defer panics.Guard(&err)
			v, err := c.GetOrLoad(gctx, k, func(ctx context.Context) (V, error) {
				m, ttls, err := c.loadMany(ctx, []string{k}, loadMany)
				if err != nil {
					var zero V
					return zero, err
				}
				if ttl := ttls.of(k); ttl > 0 {
					SetTTL(ctx, ttl) // ctx is GetOrLoad's loader's: the TTL goes with the value
				}
				v, ok := m[k]
				if !ok {
					return v, ErrNotFound
				}
				return v, nil
			}, opts...)
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			mu.Lock()
			out[k] = v
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	panics.Raise()
	return err
}

// loadManyLocal is the fail-open path of GetOrLoadMany.
func (c *Cache[V]) loadManyLocal(ctx context.Context, keys []string, fences map[string]local.Fence, loadMany func(context.Context, []string) (map[string]V, error), co callOptions, out map[string]V) error {
	m, ttls, err := c.loadMany(ctx, keys, loadMany)
	if err != nil {
		return err
	}
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			continue
		}
		out[k] = v
		if payload, err := c.opts.Codec.Marshal(v); err == nil {
			env := c.envelope(payload, 0, co.freshFor, c.valueTTL(ttls.of(k), co))
			env.Tags = localTags(co.tags)
			c.fillLocal(fences[k], k, v, &env, cost(payload), afterMiss)
		}
	}
	return nil
}
