// Package remote is the Redis tier, reached through a rueidis client the
// caller owns: the envelope format, codecs, key layout, TTL with jitter,
// batched reads, and the scripts that make a write and its invalidation one
// atomic round trip and fence loaded fills.
//
// # Key layout (schema v1)
//
//	<ns>:v1:gen                   the namespace's generation, "<gen>@<run id>" (generation.go)
//	<ns>:v1:g<gen>:{<key>}        the value, an Envelope
//	<ns>:v1:g<gen>:{<key>}:lease  a fill lease: a random token, PX LeaseTTL
//	<ns>:v1:g<gen>:{<key>}:wait   a marker: another replica waits for this fill
//	<ns>:v1:g<gen>:tagv:{<tag>}   a tag's version (tags.go)
//	<ns>:v1:wb:{<ns>}             the write-behind queue (a stream; see queue.go)
//	<ns>:v1:wb:{<ns>}:dead        its dead letters (a stream)
//	<ns>:v1:wb:leader             the flusher lease
//	<ns>:v1:invlog                the invalidation log, single Redis (a stream; invlog.go)
//	<ns>:v1:invlog:{<slot tag>}   one slot's invalidation log, Redis Cluster
//
// Package warmup adds <ns>:v1:hot (a sorted set) and <ns>:v1:hot:decay
// (held for a half-life after the scores are halved, so the fleet halves
// them once), and the invalidation channel is <ns>:inv.
//
// The schema version is part of every key, so a format change moves to new
// keys and old ones expire by themselves: no flush. The braces are a Redis
// Cluster hash tag: a value and its lease always live in the same slot, so a
// script may touch both. (A key that begins with '}' has an empty tag; Redis
// then hashes whole key names, which only matters in Cluster mode.)
//
// # Redis forgets
//
// Any key may be evicted and any restart may lose everything: losing a
// value is a miss, a tag's version invalidates the tag's values, a lease or
// wait marker delays a waiter by about one load (and a lease found with no
// TTL, as a PERSIST or a copy at TTL 0 leaves it, is given a lease's life,
// so that it ends), and the generation key is
// settled (generation.go): a store that finds it missing, behind, or set
// under another Redis process moves the namespace to a new generation. On a
// single Redis every script writing a generation's keys is fenced by it
// (script.go), but a fill, which its lease fences (fill.go).
//
// # Fenced fills
//
// A reader that misses takes the key's lease in the same command as the
// read (GetOrLease: SET of a lease marker holding a random token into the
// value key, NX, with GET), so the lease exists only while Redis has no
// value, and readers take the marker for none. A refresh, which runs while
// the value stays readable, leases a key of its own (Lease). A fill is
// written only if its lease still holds its token (Fill). Every Set
// overwrites the marker and every Delete removes it, and both remove the
// refresh's lease, so a load that started before a write can never
// overwrite it. A miss's fill publishes nothing itself: it reports a
// waiter's marker, and the wake-up follows in a call of its own.
//
// # What is guaranteed
//
// Set and Delete change Redis and publish the caller's invalidation message
// in one script: no subscriber can see the invalidation before the new state
// is in Redis. Values that are not tiercache envelopes, or are corrupt, are
// reported as ErrCorrupt and never panic. Every call runs under a deadline
// derived from Options.Timeout.
//
// # Inspecting a key
//
// Inspect reports what Redis holds for one key (generation, envelope,
// TTLs, tags, lease and wait marker) for operators and the CLI; it only
// reads, and needs no Store.
//
// The package imports nothing from the rest of tiercache but one internal
// helper (what a Redis error reply means).
package remote
