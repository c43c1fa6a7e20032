// Package local is the in-process tier: decoded values in a ristretto v2
// cache, bounded by cost, with a TTL per entry, guarded by the fill fences and
// epochs of the coherence protocol.
//
// Expiry. The tier gives ristretto no TTL: ristretto would read the wall
// and the monotonic clocks on every hit of an entry with one. Each entry
// records its deadline on the monotonic clock instead, and Get checks it,
// exactly, with one clock read: an entry is a miss from the moment its TTL
// has passed. An expired entry keeps its place (and its share of MaxCost)
// until it is overwritten or evicted, as an entry of an old epoch does.
//
// # Guarantees
//
// A hit decodes nothing and allocates nothing: values are stored decoded.
//
// Fences. Every key maps to one of a fixed set of stripes, each with a
// generation counter. A fill takes a Fence before it reads the value it will
// store (from Redis, or before writing it), and Fill inserts only if the
// stripe's generation and the tier's epoch are both unchanged, under the
// stripe lock. Invalidate bumps the generation and deletes under the same
// lock. ristretto applies a new key's Set through a buffer, and its Del
// queues a delete behind it, so a buffered insert would still be readable
// for a moment after the delete; when the stripe has inserted since the
// buffer was last drained (a drainer waits for it at most a millisecond
// after fills), Invalidate first waits for the buffer, then deletes: no
// fill captured before an invalidation can land after it. Kill, for a
// goroutine that must not wait for the stripe lock, makes the copies held
// now miss at once (an atomic store) ahead of the Invalidate that must
// follow it; a fill that checked its fence before a Kill and inserts after
// sees the stripe moved on and never gives its copy a deadline.
//
// Pending inserts. A fill ristretto's buffer took is readable as soon as
// Fill returns, although ristretto applies a new key's insert later: until
// the drainer has seen it applied, the insert is also in a list where a
// Get that ristretto missed finds it (pending.go). Without it every read
// of a hot key just refilled would go to Redis until ristretto's goroutine
// ran. Kill, Invalidate, Reset, expiry and tags reach the lists as they
// reach ristretto's copies; the drainer cuts applied inserts off them.
//
// Epochs. Every entry records the epoch it was filled in. Reset bumps the
// epoch: every older entry becomes a miss at once, in O(1), and fills whose
// fence predates the reset are refused. Reset never relies on ristretto's
// Clear, which is not atomic with concurrent sets.
//
// # What may be dropped
//
// ristretto may refuse or drop any insert (admission policy, full buffers, a
// second buffered insert of a key not yet applied). A dropped insert is a
// later miss; Fill reports the ones ristretto's buffer did not take. An
// insert ristretto refuses when it applies it may have been served from
// its pending list until then, as any value filled under a fence that
// holds; so when a key is filled twice before ristretto applies the first,
// a reader sees the second value, then the first (no invalidation came
// between them, or neither would be served).
//
// The package imports nothing from the rest of tiercache.
package local
