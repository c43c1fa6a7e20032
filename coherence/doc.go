// Package coherence carries invalidations between replicas: the message
// format, the pub/sub transport (Bus, optionally resumable from an
// invalidation log), the client-tracking transport (Tracker), and the
// handling of everything that can make a replica miss an invalidation.
//
// # Messages
//
// A Message carries its origin instance (so a replica skips its own echo),
// the namespace, a kind (keys, tags, flush-namespace), batched keys and the
// publish time (to measure lag). The wire form is versioned and compact;
// decodeMessage never panics on garbage and is fuzzed.
//
// # Delivery
//
// Writers do not publish through the Bus: the message is published by the
// same Redis script that performs the write (see package remote), so no
// replica can see an invalidation before the new state is in Redis. The Bus
// only receives.
//
// # Gaps
//
// Pub/sub is at-most-once: messages sent while a subscription is down are
// lost. The Bus reports every way that can happen through OnGap, and the
// caller answers by bumping its local epoch:
//
//   - resubscribe: every subscription confirmation after the first (the
//     bus subscribes again on a new connection after a disconnect);
//   - overflow: the bounded hand-off queue was full and a message dropped;
//   - undecodable: a message on the channel could not be read;
//   - ping-timeout: a ping the bus published to itself on the same
//     subscription, which Redis accepted, did not come back in time.
//
// Pings that Redis did not accept (Redis down or paused) are not gaps: no
// one else can write then either, and the local tier keeps serving.
//
// A resumable Bus (Options.LogKey) repairs a gap by replaying the log from
// the last message it saw, and calls OnGap only when the log no longer
// reaches back that far (resume.go). On a Redis Cluster (Options.SlotLogKey)
// there is one log per hash slot, and a replay reads them all in one
// pipelined round from per-slot positions and a floor time that the bus's
// pings move up (slotlogs.go).
//
// From the moment a Bus learns of a gap (its subscription lost, before any
// reconnection) until it has dealt with it and
// applied the messages that queued up meanwhile, it holds the caller's local
// tier (Options.OnHold): reads go to Redis, nothing is dropped. A burst of
// gaps is repaired by one replay.
//
// # Tracking
//
// A Tracker uses Redis server-assisted invalidation (CLIENT TRACKING …
// BCAST PREFIX) on one dedicated connection per node: Redis pushes the names
// of changed keys, whoever changed them, expiry and eviction included. A
// lost connection, or Redis flushing the database, is a gap.
//
// Callbacks run on the transport's own goroutine, in order, never on the
// connection's reader, except a Bus's Options.OnArrival, which is given
// each message as it is read, ahead of its turn, and must not block (tiered
// stops serving the keys' local copies there, then invalidates them in
// turn).
//
// # Connections
//
// Each Bus and each Tracker receives on connections of its own, taken from
// the caller's client with rueidis's Dedicate and closed (never returned to
// the pool) when done: a Bus subscribes through Do and is handed messages by
// the connection's pub/sub hooks; a Tracker turns the tracking rueidis's
// client-side caching set up off before it turns broadcast mode on, so a
// client with default options works. Nothing is shared: transports on one
// client, of one namespace or not, never disturb one another, and nothing
// stays subscribed or tracking after Close. A lost connection is replaced
// at once and a failed dial retried within 100 ms, through the current
// Sentinel master, or on a Cluster through the next node (owned.go).
//
// # Refusals
//
// An error reply that retrying will not change (NOPERM from an ACL user
// without a command or channel, usually) is a configuration error
// (errRefused, wrapping Redis's reply): Subscribe and Track fail with it at
// once; after start it goes to OnRefused once per episode while the command
// is retried every second. An error reply proves a connection alive: it is
// never treated as a lost connection, and never flushes.
//
// The package imports nothing from the rest of tiercache but three internal
// helpers (the pause of its retry loops, the order of stream ids, and what
// a Redis error reply means).
package coherence
