package remote

import "strconv"

// The invalidation log makes a namespace's invalidations resumable: every
// script that publishes a message first appends it to a capped stream
// (field m), and publishes a copy stamped with the entry's id: the
// message's version byte becomes 2 and the id is appended after a one-byte
// length (package coherence decodes both forms). A subscriber that missed
// messages replays the log from the last id it saw.
//
// On a single Redis the log is one stream, <ns>:v1:invlog, capped at
// InvalidationLog entries. A Redis Cluster script can only touch keys of
// its own hash slot, so there each slot has its own log,
// <ns>:v1:invlog:{<tag>} with SlotTag's tag, and the id a message is
// stamped with is "<slot>/<entry id>". Those logs are also trimmed by age
// (InvalidationLogAge) and expire when idle that long: 16,384 streams
// capped by count alone could hold 16,384 times the cap. When the cap
// trims one, the script records the first entry left as the stream's
// max-deleted-entry-id (XSETID, Redis 7), which a replay checks. The
// script side lives in the prelude (script.go).

// InvalidationLogKey is the stream of the namespace's invalidation log on a
// single Redis.
func (s *Store) InvalidationLogKey() string { return s.opts.Namespace + ":v1:invlog" }

// SlotLogKey is the stream of one hash slot's invalidation log on a Redis
// Cluster.
func (s *Store) SlotLogKey(slot uint16) string {
	return s.opts.Namespace + ":v1:invlog:{" + SlotTag(slot) + "}"
}

// withLog appends the log's key, id prefix, age and cap to a publishing
// script's keys and arguments. keys must not be empty: on a Cluster the
// log is the one in keys[0]'s slot.
func (s *Store) withLog(keys, args []string) ([]string, []string) {
	if s.opts.InvalidationLog <= 0 {
		return keys, append(args, "0")
	}
	logCap := strconv.Itoa(s.opts.InvalidationLog)
	if !s.cluster {
		return append(keys, s.InvalidationLogKey()), append(args, "", "0", logCap)
	}
	slot := keySlot(keys[0])
	return append(keys, s.SlotLogKey(slot)),
		append(args, strconv.Itoa(int(slot))+"/", strconv.FormatInt(s.opts.InvalidationLogAge.Milliseconds(), 10), logCap)
}
