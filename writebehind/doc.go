// Package writebehind persists a namespace's write-behind queue to the
// source of truth: tiered.Cache.SetBehind writes a value to both tiers and
// appends it to the queue (a Redis stream) in one step; a Flusher, run on
// any number of replicas or in a worker of its own, delivers the queue to a
// BatchWriter in batches.
//
//	f, err := writebehind.New(writebehind.Options[User]{
//		Client: rc, Namespace: "svc:users", // as the caches'
//		Writer: func(ctx context.Context, ws []writebehind.Write[User]) error { return db.Upsert(ctx, ws) },
//	})
//	go f.Run(ctx)
//
// A Flusher is built from a rueidis client, a namespace and a codec: it
// needs no cache, no local tier and no subscription.
//
// # Guarantees
//
// Delivery is at least once, in queue order per key: one flusher at a time
// holds a lease in Redis and flushes, the others stand by and take over
// within the lease. Writes to one key in a batch are coalesced (the last in
// queue order wins). Only what the writer accepted is acknowledged; a write
// it refuses MaxAttempts times moves to a dead-letter stream, with its
// value; an unavailable source is retried with back-off for as long as it
// takes. A flusher that dies leaves its unacknowledged writes to the next
// holder, which claims them.
//
// The queue is only as durable as the Redis under it: Run refuses (with
// ErrQueueUnsafe) on an eviction policy that can evict it unless
// Options.AllowQueueEviction, says when persistence is off, and counts a
// queue Redis lost (Stats.QueueLost) instead of reporting it drained. See
// docs/write-behind.md.
//
// The package imports package remote (the envelope and the queue's key)
// and nothing else of tiercache but its internal helpers.
package writebehind
