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
//     have removed entries after it without a trace.
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
}

// slotLogSkew is how far this host's clock and the Redis nodes' may be
// apart, plus how late a message may arrive after a later ping.
const slotLogSkew = time.Second

// clusterSlots is the number of Redis Cluster hash slots.
const clusterSlots = 16384

func newSlotLogs(c rueidis.Client, key func(uint16) string, age time.Duration) *slotLogs {
	return &slotLogs{c: c, key: key, age: age, pos: map[uint16]string{}}
}

func (l *slotLogs) start(context.Context) error {
	l.floor = time.Now()
	return nil
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

func (l *slotLogs) restart(context.Context) {
	clear(l.pos)
	l.floor = time.Now()
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
