// Package tiered is the cache most users import: a fast in-process tier
// (ristretto) in front of a shared Redis (rueidis), kept coherent across
// every replica of a service.
//
//	users, err := tiered.New[User](ctx, tiered.Options{
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
// GetOrLoad runs at most one load per key at a time on each replica; the
// load runs for every caller waiting on it, each of whom leaves when its own
// ctx ends. If Redis fails the loaded value is still returned.
//
// Errors wrap the sentinel errors of this package (ErrNotFound, ErrClosed,
// ErrInvalidKey, …); test them with errors.Is.
//
// This package may import local, remote and coherence; it knows nothing of
// Prometheus (metrics read Stats from outside).
package tiered
