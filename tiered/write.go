package tiered

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/coherence"
	"github.com/tiercache/tiercache/remote"
)

// Set writes v through: to Options.Writer first when one is set (the cache
// is not touched if it fails), then to Redis and, in the same round trip,
// the invalidation of every other replica's copy, then to this replica's
// local tier. If Redis fails, Set returns an error wrapping ErrRemote and
// still drops the local copy. WithTags records the key under tags;
// WithFreshFor overrides Options.FreshFor.
func (c *Cache[V]) Set(ctx context.Context, key string, v V, opts ...CallOption) (err error) {
	ctx, end := c.observeWrite(ctx, "Set", key, 1)
	defer func() { endWrite(end, err) }()
	return c.write(ctx, key, v, opts, false)
}

// SetBehind writes v behind: both tiers are updated and peers invalidated
// exactly as Set does, and in the same atomic step the write is appended
// to the namespace's durable queue in Redis, which a writebehind.Flusher persists to
// the source of truth later, in batches, at least once. Options.Writer is
// not called. When Options.WriteBehindLimit writes already wait, SetBehind
// fails with ErrQueueFull and changes nothing.
//
// Until it is flushed the write lives only in Redis: keep RemoteTTL well
// above the flush delay, and run Redis with persistence (AOF) if a Redis
// restart must not lose queued writes.
//
// On a Redis Cluster the queue lives in another slot than the key, so the
// write takes two steps, the queue first. If the second fails, SetBehind
// returns an error wrapping ErrRemote: the write is queued and will reach
// the source, but the cache may keep the previous value until RemoteTTL.
// Calling SetBehind again repairs that. Writers are idempotent anyway.
func (c *Cache[V]) SetBehind(ctx context.Context, key string, v V, opts ...CallOption) (err error) {
	ctx, end := c.observeWrite(ctx, "SetBehind", key, 1)
	defer func() { endWrite(end, err) }()
	return c.write(ctx, key, v, opts, true)
}

func (c *Cache[V]) write(ctx context.Context, key string, v V, opts []CallOption, behind bool) error {
	if err := c.check(key); err != nil {
		return err
	}
	co := c.callOptions(opts)
	if err := c.checkCall(co); err != nil {
		return err
	}
	payload, err := c.opts.Codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: encode: %w", ErrCodec, err)
	}
	// The local copy is decoded from the payload, so later changes the
	// caller makes to v (a pointer, slice or map) do not reach the cache.
	own, err := c.decode(&remote.Envelope{Payload: payload}) // a copy: payload may be the caller's
	if err != nil {
		return err
	}
	if len(payload) > c.remote.MaxValueBytes() {
		return fmt.Errorf("%w: %d bytes over the %d limit", ErrValueTooLarge, len(payload), c.remote.MaxValueBytes())
	}
	if behind {
		if err := c.checkQueue(ctx); err != nil {
			return err
		}
	}
	if c.opts.Writer != nil && !behind {
		if err := c.opts.Writer(ctx, key, v); err != nil {
			return fmt.Errorf("%w: %w", ErrWriter, err)
		}
	}
	// The fence is taken before the tags' versions are read: an
	// InvalidateTags that lands after makes the local copy a miss, and
	// the Redis copy, which records the versions read, invalid.
	fence := c.local.Fence(key)
	env := c.envelope(payload, 0, co.freshFor, c.valueTTL(0, co))
	if len(co.tags) > 0 {
		if env.Tags, err = c.remote.TagVersions(ctx, co.tags, c.ttlOf(&env)); err != nil {
			c.remoteFailed("tags", err)
			c.local.Invalidate(key)
			return fmt.Errorf("%w: tag: %w", ErrRemote, err)
		}
	}
	if behind {
		_, err = c.remote.SetQueued(ctx, key, &env, c.keysPublication(key), c.opts.WriteBehindLimit)
	} else {
		err = c.remote.Set(ctx, key, &env, c.keysPublication(key))
	}
	c.waiting.wake(key)
	if err != nil {
		c.local.Invalidate(key)
		switch {
		case errors.Is(err, remote.ErrTooLarge):
			return fmt.Errorf("%w: %w", ErrValueTooLarge, err)
		case errors.Is(err, remote.ErrQueueFull):
			return fmt.Errorf("%w: %w", ErrQueueFull, err)
		}
		c.remoteFailed("set", err)
		return fmt.Errorf("%w: set: %w", ErrRemote, err)
	}
	c.stats.published.Add(1)
	c.fillLocal(fence, key, own, &env, cost(payload), ownWrite)
	return nil
}

func (c *Cache[V]) checkTags(tags []string) error {
	if len(tags) > c.opts.MaxTags {
		return fmt.Errorf("%w: %d tags, at most %d", ErrInvalidTag, len(tags), c.opts.MaxTags)
	}
	most := min(c.opts.MaxKeyBytes, remote.MaxTagBytes) // what an envelope can carry
	for _, t := range tags {
		if t == "" || len(t) > most {
			return fmt.Errorf("%w: length %d not in 1–%d", ErrInvalidTag, len(t), most)
		}
	}
	return nil
}

// maxKeysPerMessage bounds one Delete script and its message.
const maxKeysPerMessage = 512

// Delete removes keys from Redis and invalidates them on every replica.
// Keys are sent in batches; an error wraps ErrRemote and the local copies
// are dropped regardless. With Options.DoubleDeleteDelay, the keys are
// invalidated once more after the delay.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) (err error) {
	ctx, end := c.observeWrite(ctx, "Delete", oneKey(keys), len(keys))
	defer func() { endWrite(end, err) }()
	if c.closed.Load() {
		return ErrClosed // with no keys too
	}
	for _, k := range keys {
		if err := c.checkKey(k); err != nil {
			return err
		}
	}
	err = c.delete(ctx, keys)
	if d := c.opts.DoubleDeleteDelay; d > 0 && len(keys) > 0 {
		c.later.add(keys, d)
	}
	return err
}

func (c *Cache[V]) delete(ctx context.Context, keys []string) error {
	var errs []error
	for start := 0; start < len(keys); start += maxKeysPerMessage {
		batch := keys[start:min(start+maxKeysPerMessage, len(keys))]
		err := c.remote.Delete(ctx, batch, c.keysPublication(batch...))
		// After Redis, not before: a local fill that read the old value
		// meanwhile is refused by the bumped fence.
		c.local.Invalidate(batch...)
		c.waiting.wake(batch...)
		if err != nil {
			c.remoteFailed("delete", err)
			errs = append(errs, err)
			continue
		}
		c.stats.published.Add(1)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: delete: %w", ErrRemote, errors.Join(errs...))
	}
	return nil
}

// InvalidateTags invalidates every key written with one of tags (WithTags),
// in Redis and on every replica, in O(1) per tag: the tags' versions are
// deleted, so every value recording them is a miss from then on, and every
// replica is told to drop its local copies. A tag Redis lost (evicted) is
// invalid already: losing one never keeps a value alive.
func (c *Cache[V]) InvalidateTags(ctx context.Context, tags ...string) (err error) {
	ctx, end := c.observeWrite(ctx, "InvalidateTags", "", len(tags))
	defer func() { endWrite(end, err) }()
	if c.closed.Load() {
		return ErrClosed
	}
	if err := c.checkTags(tags); err != nil {
		return err
	}
	if len(tags) == 0 {
		return nil
	}
	m := coherence.Message{Origin: c.origin, Namespace: c.opts.Namespace, Kind: coherence.KindTags, Keys: tags, PublishedAt: time.Now().UnixNano()}
	err = c.remote.InvalidateTags(ctx, tags, remote.Publication{Channel: c.channel, Message: m.Encode()})
	// After Redis, as for keys: a fill that read an old version meanwhile
	// is a miss by its fence.
	c.local.InvalidateTags(tags...)
	if err != nil {
		c.remoteFailed("tags", err)
		return fmt.Errorf("%w: invalidate tags: %w", ErrRemote, err)
	}
	c.stats.published.Add(1)
	return nil
}

// InvalidateAll invalidates the whole namespace on every replica, in O(1):
// it moves the namespace to a new generation of keys (the old ones expire by
// their TTL) and tells every replica, which flushes its local tier.
func (c *Cache[V]) InvalidateAll(ctx context.Context) (err error) {
	ctx, end := c.observeWrite(ctx, "InvalidateAll", "", 0)
	defer func() { endWrite(end, err) }()
	if c.closed.Load() {
		return ErrClosed
	}
	_, err = c.remote.BumpGeneration(ctx)
	c.resetLocal(resetReasonMessage)
	if err != nil {
		c.stats.remoteErrors.Add(1)
		return fmt.Errorf("%w: invalidate all: %w", ErrRemote, err)
	}
	c.stats.published.Add(1)
	return nil
}
