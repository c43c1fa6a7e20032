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
// stripe lock. Invalidate bumps the generation and removes under the same
// lock: it kills every insert of the key still in its pending list
// (below), handed over or not, then deletes ristretto's copy, and waits for nothing. (ristretto's Del
// queues a delete behind an insert still in its buffer, which is applied
// for a moment before it: that insert was killed first, so it is never
// served.) No fill captured before an invalidation lands after it. Kill,
// for a goroutine that must not wait for the stripe lock, makes the copies
// held now miss at once (an atomic store) ahead of the Invalidate that
// must follow it; a fill that checked its fence before a Kill and inserts
// after sees the stripe moved on and never gives its copy a deadline.
//
// Pending inserts. A fill does not call ristretto, whose Set of a new key
// is applied later on its own goroutine and wakes that goroutine (on an
// idle machine, a thread wake-up the filling caller pays). The insert goes
// into a list where Get finds it at once, and a drainer hands the lists'
// inserts to ristretto (a key's newest only) about a millisecond after
// fills, waits until ristretto has applied them and cuts them off
// (pending.go). A Refill (a refresh of a copy still served) kills
// ristretto's copy, which is older, so Get serves the new one from the
// list at once. Kill,
// Invalidate, Reset, expiry and tags reach the lists as they reach
// ristretto's copies, and an insert that can no longer be served is not
// handed over.
//
// Epochs. Every entry records the epoch it was filled in. Reset bumps the
// epoch: every older entry becomes a miss at once, in O(1), and fills whose
// fence predates the reset are refused. Reset never relies on ristretto's
// Clear, which is not atomic with concurrent sets.
//
// # What may be dropped
//
// ristretto may refuse any insert it is handed (its admission policy): a
// later miss, counted in Stats.Rejections. (A hand-over that fills
// ristretto's buffer waits for it and tries once more; what is refused
// then is counted in Stats.DroppedSets.)
// Until its hand-over the insert is served from its pending list, as any
// value filled under a fence that holds.
//
// The package imports nothing from the rest of tiercache.
package local
