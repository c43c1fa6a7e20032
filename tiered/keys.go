package tiered

import (
	"context"
	"fmt"
	"iter"
)

// Keys yields the keys of this namespace's values in Redis whose cache key
// matches glob (Redis glob syntax), walking Redis with SCAN MATCH, never
// KEYS, so Redis is not blocked however many keys it holds. A key may be
// yielded more than once (SCAN's guarantee), and keys written or expiring
// during the walk may or may not be. A key being loaded (its fill lease
// held in its value key) is yielded too: a reader of it finds no value
// until the load fills it. On a Cluster client SCAN reaches one
// node, so only that node's keys are yielded. An error ends the walk.
// Package warmup uses it for Options.ScanMatch.
func (c *Cache[V]) Keys(ctx context.Context, glob string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if c.closed.Load() {
			yield("", ErrClosed)
			return
		}
		var cursor uint64
		for {
			e, err := c.remote.Scan(ctx, cursor, glob)
			if err != nil {
				yield("", fmt.Errorf("%w: scan: %w", ErrRemote, err))
				return
			}
			for _, rk := range e.Elements {
				if k, ok := c.remote.KeyOf(rk); ok && !yield(k, nil) {
					return
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				return
			}
			if ctx.Err() != nil {
				yield("", ctx.Err())
				return
			}
		}
	}
}
