// Package tiered is the cache most users import: a fast in-process tier
// (ristretto) in front of a shared Redis (rueidis), kept coherent across
// every replica of a service.
//
//	users, err := tiered.New[User](ctx, tiered.Options[User]{
//		Client:    rc,          // the caller's rueidis client
//		Namespace: "svc:users", // prefixes keys, names the invalidation channel
//		LocalTTL:  30 * time.Second,
//		RemoteTTL: 10 * time.Minute,
//	})
//	u, err := users.GetOrLoad(ctx, "42", loadUser)
//	err = users.Set(ctx, "42", u)  // write-through, invalidates every replica
//	err = users.Delete(ctx, "42")  // invalidates everywhere
//
// # Guarantees
//
// After Set or Delete returns, no replica serves the old value for longer
// than one invalidation delivery, and never for longer than LocalTTL,
// whatever fails:
//
//   - a write and its invalidation are one atomic Redis round trip;
//   - every local fill is fenced: a fill whose read began before an
//     invalidation of its key is refused, and a load that began before a
//     write of its key is cached in neither tier;
//   - losing the invalidation stream (resubscribe, a dropped message, a
//     subscription that stopped delivering) bumps the local epoch, turning
//     every older local entry into a miss at once.
//
// A local hit does no I/O and allocates nothing. Values returned are shared
// between readers: treat them as immutable. Set stores its own decoded copy,
// so changing a value after Set does not change the cache.
//
// # Loads
//
// GetOrLoad runs one load per key at a time for the whole fleet: the replica
// that wins the key's Redis lease loads, the others wait and are woken by the
// fill's invalidation message, not by polling. Callers leave when their own
// ctx ends; a load nobody waits for is cancelled and another replica takes
// over. A failed load's callers get its error; the fleet retries after
// Options.LoadBackoff. A loader's ErrNotFound is remembered as a tombstone
// for Options.NegativeTTL. If Redis fails the loaded value is still
// returned. Options.FreshFor serves stale values while one background
// refresh per fleet runs, and XFetch (Options.EarlyRefreshBeta) refreshes
// hot values before they go stale.
//
// GetOrLoad's loader may run after the call returns (for other callers, or
// a background refresh), so it escapes: a closure that captures variables
// is allocated by the caller on each call, hits included. To keep hits
// allocation-free, build the loader once, or set Options.Loader and use Get.
//
// Tags (WithTags, InvalidateTags), InvalidateAll (a new generation of keys,
// O(1)), batches (GetMany, GetOrLoadMany, Warm) and a delayed second delete
// (Options.DoubleDeleteDelay) complete the set. Batch calls cost two round
// trips where single calls cost one (rueidis loads the script first).
//
// WithTTL gives one call's value its own lifetime, and a loader may set its
// value's with SetTTL (docs/ttl.md). A value written by a cache of another
// Options.ValueType (another value type or codec on the namespace) is
// ErrTypeClash, never a silent miss.
//
// # Observing
//
// Stats is a snapshot of counters and histograms (package prommetrics
// exports it); Options.Observer is told of each step of a call that leaves
// the process, with its result (package tieredotel makes OpenTelemetry
// spans of them).
//
// # Write-behind
//
// SetBehind is Set plus, in the same script (in two steps on a Cluster), an
// entry in the namespace's durable write queue (a Redis stream, bounded by
// Options.WriteBehindLimit). A writebehind.Flusher, run on any replicas or
// in a worker of its own (one holds a lease and flushes, the others stand
// by), delivers the queue to the source of truth in batches, at least
// once. See package writebehind and docs/write-behind.md.
//
// Errors wrap the sentinel errors of this package (ErrNotFound, ErrClosed,
// ErrInvalidKey, …); test them with errors.Is.
//
// This package may import local, remote and coherence; it knows nothing of
// Prometheus (metrics read Stats from outside).
package tiered
