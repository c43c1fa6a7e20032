package coherence

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/streamid"
)

// slotLogs is a Redis Cluster's invalidation log: one stream per hash slot
// (a script can only append to a log in its own slot), trimmed to an age
// and expiring when idle that long. A message's log id is
// "<slot>/<entry id>".
//
// The bus cannot hold a position in 16,384 logs it has mostly never heard
// from, and adding a marker entry to each would create 16,384 streams per
// namespace. So a position has two parts:
//
//   - pos: per slot, the newest entry seen;
//   - floor: a time before which every message has been applied. It is
//     taken when the bus starts, moved up by each ping that comes back
//     (every message published before the ping has arrived by then) and by
//     each replay.
//
// A replay reads every slot's log from the later of the two, in one
// pipelined round (16,384 XRANGEs, ~16 ms against three local masters). A
// slot's log can no longer reach back when:
//
//   - its pos entry is gone: trimmed, since the log keeps its newest
//     entries;
//   - entries after the floor were trimmed by count, which XINFO STREAM's
//     max-deleted-entry-id (Redis 7) shows;
//   - the floor is older than the logs' age: trimming by age or expiry may
//     have removed entries after it without a trace;
//   - a node evicted keys, restarted, was promoted or follows a new
//     primary (a failover) since the last replay or start (marks): a log
//     it held may be gone, or be missing its last entries, and for a slot
//     without a pos a missing log reads as an empty one. (Under an eviction
//     policy that keeps evicting, every gap is then flushed, as without a
//     log.)
//
// Stream ids carry the clock of the Redis node that wrote them, the floor
// this host's: slotLogSkew allows for the two being apart, and for a
// message crossing the cluster bus more slowly than the ping that moved
// the floor.
type slotLogs struct {
	c     rueidis.Client
	key   func(slot uint16) string
	age   time.Duration
	pos   map[uint16]string
	floor time.Time
	marks map[string]nodeMark // per node address, at start or the last replay; nil: unknown
}

// nodeMark is what a node's INFO says of what it may have lost: the run id
// changes when it restarts (or another process serves its address), the
// replication id when it is promoted or follows a new primary (a failover,
// which may have lost the last writes), and evicted_keys counts its
// evictions.
type nodeMark struct {
	runID, replID string
	evicted       int64
}

// slotLogSkew is how far this host's clock and the Redis nodes' may be
// apart, plus how late a message may arrive after a later ping.
const slotLogSkew = time.Second

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

func newSlotLogs(c rueidis.Client, key func(uint16) string, age time.Duration) *slotLogs {
	return &slotLogs{c: c, key: key, age: age, pos: map[uint16]string{}}
}

func (l *slotLogs) start(ctx context.Context) error {
	l.floor = time.Now()
	l.marks, _ = l.nodeMarks(ctx) // unknown (nil) makes the first replay a flush
	return nil
}

// nodeMarks reads every node's mark.
func (l *slotLogs) nodeMarks(ctx context.Context) (map[string]nodeMark, error) {
	marks := map[string]nodeMark{}
	for addr, n := range l.c.Nodes() {
		info, err := n.Do(ctx, n.B().Info().Section("server", "stats", "replication").Build()).ToString()
		if err != nil {
			return nil, err
		}
		var m nodeMark
		for line := range strings.Lines(info) {
			line = strings.TrimRight(line, "\r\n")
			if v, ok := strings.CutPrefix(line, "run_id:"); ok {
				m.runID = v
			} else if v, ok := strings.CutPrefix(line, "master_replid:"); ok {
				m.replID = v
			} else if v, ok := strings.CutPrefix(line, "evicted_keys:"); ok {
				m.evicted, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		marks[addr] = m
	}
	return marks, nil
}

// sameMarks reports whether no node restarted, changed replication id or
// evicted a key between two readings (and none came or went).
func sameMarks(was, now map[string]nodeMark) bool {
	if was == nil || len(was) != len(now) {
		return false
	}
	for addr, m := range was {
		if n, ok := now[addr]; !ok || n != m || m.runID == "" || m.replID == "" {
			return false
		}
	}
	return true
}

func (l *slotLogs) seen(id string) {
	if sl, entry, ok := parseSlotLogID(id); ok {
		l.advance(sl, entry)
	}
}

// advance moves a slot's pos up to entry.
func (l *slotLogs) advance(sl uint16, entry string) {
	if p := l.pos[sl]; p == "" || streamid.Less(p, entry) {
		l.pos[sl] = entry
	}
}

// parseSlotLogID splits "<slot>/<entry id>".
func parseSlotLogID(id string) (uint16, string, bool) {
	s, entry, ok := strings.Cut(id, "/")
	n, err := strconv.ParseUint(s, 10, 16)
	if !ok || err != nil || n >= clusterSlots || entry == "" {
		return 0, "", false
	}
	return uint16(n), entry, true
}

func (l *slotLogs) checkpoint(t time.Time) {
	if t.After(l.floor) {
		l.floor = t
	}
}

func (l *slotLogs) restart(ctx context.Context) {
	clear(l.pos)
	l.floor = time.Now()
	// Within the replay's ctx: if that ran out, Redis is not answering,
	// and waiting longer would only delay the flush. The marks are then
	// unknown, and the next replay flushes too.
	l.marks, _ = l.nodeMarks(ctx)
}

// slotRead is one slot's part of a replay.
type slotRead struct {
	slot  uint16
	start string // the first id read
	exact bool   // start is the pos entry, which must still be there
}

func (l *slotLogs) replay(ctx context.Context, apply func(string)) error {
	now := time.Now()
	if now.Sub(l.floor) >= l.age-2*slotLogSkew {
		return errPositionLost
	}
	floorID := strconv.FormatInt(l.floor.Add(-slotLogSkew).UnixMilli(), 10) + "-0"
	reads := make([]slotRead, clusterSlots)
	cmds := make(rueidis.Commands, clusterSlots)
	for sl := range uint16(clusterSlots) {
		r := slotRead{slot: sl, start: floorID}
		if p := l.pos[sl]; p != "" && !streamid.Less(p, floorID) {
			r.start, r.exact = p, true
		}
		reads[sl] = r
		cmds[sl] = l.c.B().Xrange().Key(l.key(sl)).Start(r.start).End("+").Count(replayBatch).Build()
	}
	var check []uint16 // slots read from the floor that had entries
	for i, res := range l.c.DoMulti(ctx, cmds...) {
		entries, err := res.AsXRange()
		if err != nil {
			return err
		}
		r, more := reads[i], len(entries) == replayBatch
		if r.exact {
			if len(entries) == 0 || entries[0].ID != r.start {
				return errPositionLost
			}
			entries = entries[1:]
		} else if len(entries) > 0 {
			check = append(check, r.slot)
		}
		if err := l.applyFrom(ctx, r.slot, entries, more, apply); err != nil {
			return err
		}
	}
	if err := l.checkNotTrimmed(ctx, check, floorID); err != nil {
		return err
	}
	// Read after the logs, so a loss before or during their reading shows.
	marks, err := l.nodeMarks(ctx)
	if err != nil {
		return err
	}
	if !sameMarks(l.marks, marks) {
		return errPositionLost
	}
	l.floor = now // every slot was read after now
	return nil
}

// applyFrom applies a slot's entries, and reads on while there may be more.
func (l *slotLogs) applyFrom(ctx context.Context, sl uint16, entries []rueidis.XRangeEntry, more bool, apply func(string)) error {
	for len(entries) > 0 {
		applyEntries(entries, apply)
		last := entries[len(entries)-1].ID
		l.advance(sl, last)
		if !more {
			return nil
		}
		var err error
		entries, err = l.c.Do(ctx, l.c.B().Xrange().Key(l.key(sl)).Start("("+last).End("+").Count(replayBatch).Build()).AsXRange()
		if err != nil {
			return err
		}
		more = len(entries) == replayBatch
	}
	return nil
}

// checkNotTrimmed fails with errPositionLost if any of the slots' logs had
// entries at or after floorID trimmed.
func (l *slotLogs) checkNotTrimmed(ctx context.Context, slots []uint16, floorID string) error {
	if len(slots) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, len(slots))
	for i, sl := range slots {
		cmds[i] = l.c.B().XinfoStream().Key(l.key(sl)).Build()
	}
	for _, res := range l.c.DoMulti(ctx, cmds...) {
		info, err := res.AsMap()
		if err != nil {
			return err
		}
		field := info["max-deleted-entry-id"]
		deleted, err := field.ToString()
		if err != nil {
			return errPositionLost // missing before Redis 7: no way to tell
		}
		if !streamid.Less(deleted, floorID) {
			return errPositionLost
		}
	}
	return nil
}
