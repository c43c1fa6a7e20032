// Package warmup makes a new replica serve its first requests from memory.
//
// A HotKeys, given to tiered.Options.Sampler, counts a sample of every
// replica's reads and merges the counts into a fleet-wide hot-key set in
// Redis (a sorted set per namespace, bounded, decaying so yesterday's hot
// keys fade). On start, Start preloads a cache from the hot set's top N, a
// static key list, a key iterator and/or a SCAN of a key pattern (never
// KEYS), in MGET batches with bounded concurrency, within a time budget,
// optionally loading keys Redis lacks from the origin at a bounded rate. It
// never blocks start-up past its budget, reports what it did, and exposes
// readiness as a channel and an http.Handler for a readiness probe.
//
// The package may import tiered; tiered knows nothing of it.
package warmup
