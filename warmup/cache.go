package warmup

import (
	"context"
	"iter"

	"github.com/tiercache/tiercache/tiered"
)

// Cache is what a warm-up needs of a cache; *tiered.Cache[V] is one. A
// test, or a wrapper around a cache, can stand in for it.
type Cache[V any] interface {
	// Namespace names the hot set read (Options.TopN).
	Namespace() string
	// Keys lists keys in Redis matching a glob (Options.ScanMatch).
	Keys(ctx context.Context, glob string) iter.Seq2[string, error]
	// GetMany reads a batch into the local tier. (A Cache that also has
	// tiered's Warm, as *tiered.Cache does, is read with Warm instead,
	// which skips the local look-up and returns no values.)
	GetMany(ctx context.Context, keys []string) (map[string]V, error)
	// GetOrLoadMany loads, with Options.Load, what Redis lacks.
	GetOrLoadMany(ctx context.Context, keys []string, loadMany func(ctx context.Context, keys []string) (map[string]V, error), opts ...tiered.CallOption) (map[string]V, error)
	// Stats gives the local tier's cost before and after (Report.Bytes).
	Stats() tiered.Stats
}

var _ Cache[string] = (*tiered.Cache[string])(nil)
