package tiered

import (
	"context"

	"golang.org/x/sync/singleflight"
)

// flights runs at most one fetch per key at a time on this replica: a typed
// wrapper over x/sync singleflight in which every caller waits on DoChan
// and leaves when its own ctx ends, while the fetch goes on for the others.
type flights[V any] struct {
	group singleflight.Group
}

func (f *flights[V]) do(ctx context.Context, key string, fetch func() (V, error)) (V, error) {
	ch := f.group.DoChan(key, func() (any, error) { return fetch() })
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
