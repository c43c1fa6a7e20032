package tiered

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"

	"github.com/tiercache/tiercache/remote"
)

// guardedCache is a cache with only what checkQueue uses; ask stands in
// for Redis, which the first call of it does not answer: it ends with its
// caller's ctx (or with failFirst, at once, as Redis's failure).
func guardedCache(failFirst error) (*Cache[int], *atomic.Int32) {
	c := &Cache[int]{}
	var asked atomic.Int32
	c.queueGuard.ask = func(ctx context.Context) (remote.Durability, error) {
		if asked.Add(1) == 1 {
			if failFirst != nil {
				return remote.Durability{}, failFirst
			}
			<-ctx.Done()
			return remote.Durability{}, ctx.Err()
		}
		return remote.Durability{Known: true, Policy: "allkeys-lru", AOF: true}, nil
	}
	return c, &asked
}

// TestQueueCheckWaitersAskWhenTheCheckerGaveUp: a caller waiting for
// another's check of the eviction policy, which ended with that caller's
// ctx, asks Redis itself rather than taking "not judged" for "safe".
func TestQueueCheckWaitersAskWhenTheCheckerGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, asked := guardedCache(nil)
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() { first <- c.checkQueue(ctx) }()
		synctest.Wait() // the first check is under way
		second := make(chan error, 1)
		go func() { second <- c.checkQueue(context.Background()) }()
		synctest.Wait() // the second waits for it
		assert.EqualValues(t, 1, asked.Load(), "one check at a time")
		cancel()
		assert.ErrorIs(t, <-first, context.Canceled)
		assert.ErrorIs(t, <-second, ErrQueueUnsafe, "judged by its own check")
		assert.EqualValues(t, 2, asked.Load())
		assert.ErrorIs(t, c.checkQueue(context.Background()), ErrQueueUnsafe, "the verdict is kept")
		assert.EqualValues(t, 2, asked.Load())
	})
}

// TestQueueCheckWaitersDoNotQueueOnRedisFailure: when Redis failed the
// check, its waiters go on unjudged, as the checker does (the write will
// meet the same Redis), instead of each asking in turn.
func TestQueueCheckWaitersDoNotQueueOnRedisFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := errors.New("redis down")
		c, asked := guardedCache(down)
		block := make(chan struct{})
		inner := c.queueGuard.ask
		c.queueGuard.ask = func(ctx context.Context) (remote.Durability, error) {
			<-block // hold the first check until the others wait
			return inner(ctx)
		}
		results := make(chan error, 3)
		for range 3 {
			go func() { results <- c.checkQueue(context.Background()) }()
		}
		synctest.Wait()
		close(block)
		for range 3 {
			assert.NoError(t, <-results, "not judged: the write decides")
		}
		assert.EqualValues(t, 1, asked.Load(), "one check for the three callers")
	})
}
