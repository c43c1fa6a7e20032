package coherence

import (
	"context"
	"errors"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/streamid"
)

// A resumable bus (Options.LogKey or Options.SlotLogKey set) repairs gaps
// from the namespace's invalidation log, which publishers append every
// message to (package remote). The bus keeps a position in the log; after
// a gap it replays the log from there. Only when the log no longer reaches
// back to the position (trimmed: the gap outlasted it) or Redis cannot be
// read does it report the gap to OnGap, which flushes.
//
// Everything here runs on the apply goroutine, in order with messages.

// errPositionLost means the log no longer reaches back to the bus's position.
var errPositionLost = errors.New("coherence: invalidation log trimmed past the last message seen")

// replayBatch bounds one XRANGE of a replay.
const replayBatch = 512

// resumeLog is an invalidation log as a bus sees it: one stream on a single
// Redis (streamLog), one per hash slot on a Cluster (slotLogs).
type resumeLog interface {
	// start takes the first position, once the bus is subscribed and
	// before it applies anything.
	start(ctx context.Context) error
	// seen records the log id of a message received live.
	seen(id string)
	// checkpoint is told that every message published before t (this
	// host's clock) has been applied, or reported as a gap before now.
	checkpoint(t time.Time)
	// replay passes each message logged after the position to apply, and
	// fails with errPositionLost when the log no longer reaches back.
	replay(ctx context.Context, apply func(raw string)) error
	// restart takes a new position after a gap the log could not repair,
	// before the flush: what was published before it is covered by the
	// flush, what after it by the log.
	restart(ctx context.Context)
}

// gap handles a gap the bus learnt of at a given time: a replay in
// resumable mode, else (or if it fails) OnGap. In resumable mode a gap
// learnt of before the last replay (or flush) started is already dealt
// with: under a burst of gaps the bus replays once, not once per gap.
func (b *Bus) gap(reason GapReason, at time.Time) {
	if b.log == nil {
		b.opts.OnGap(reason)
		return
	}
	if at.Before(b.covered) {
		b.repairs.Add(1)
		return
	}
	b.covered = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingTimeout)
	defer cancel()
	applied := 0
	err := b.log.replay(ctx, func(raw string) {
		m, err := decodeMessage(raw)
		if err != nil {
			b.undecodable.Add(1)
			return // the live copy, if any, was stamped from the same bytes
		}
		if b.deliver(m) {
			applied++
		}
	})
	// Counted once reported: a reader of Stats that sees the count sees
	// the callback's effects too.
	if err == nil {
		if b.opts.OnRepair != nil {
			b.opts.OnRepair(reason, applied)
		}
		b.replayed.Add(uint64(applied))
		b.repairs.Add(1)
		return
	}
	b.log.restart(ctx)
	b.opts.OnGap(reason)
	b.unrepaired.Add(1)
}

// streamLog is a single Redis's log: one capped stream. The position is the
// id of an entry (a message seen, or a marker the bus added), so that its
// trimming can be seen: the entry is gone.
type streamLog struct {
	c   rueidis.Client
	key string
	pos string // the newest entry seen, or "" when unknown
}

func (l *streamLog) start(ctx context.Context) (err error) {
	l.pos, err = l.tail(ctx)
	return err
}

func (l *streamLog) seen(id string) {
	if id != "" && (l.pos == "" || streamid.Less(l.pos, id)) {
		l.pos = id
	}
}

func (l *streamLog) checkpoint(time.Time) {}

func (l *streamLog) replay(ctx context.Context, apply func(string)) error {
	if l.pos == "" {
		return errPositionLost
	}
	c := l.c
	at, err := c.Do(ctx, c.B().Xrange().Key(l.key).Start(l.pos).End(l.pos).Build()).AsXRange()
	if err != nil {
		return err
	}
	if len(at) == 0 {
		return errPositionLost
	}
	for {
		entries, err := c.Do(ctx, c.B().Xrange().Key(l.key).Start("("+l.pos).End("+").Count(replayBatch).Build()).AsXRange()
		if err != nil {
			return err
		}
		applyEntries(entries, apply)
		if len(entries) > 0 {
			l.pos = entries[len(entries)-1].ID
		}
		if len(entries) < replayBatch {
			return nil
		}
	}
}

func (l *streamLog) restart(ctx context.Context) {
	l.pos = ""
	l.pos, _ = l.tail(ctx)
}

// tail returns the log's newest id, adding a marker entry when the log is
// empty so that the position is an entry whose trimming can be seen.
func (l *streamLog) tail(ctx context.Context) (string, error) {
	c := l.c
	last, err := c.Do(ctx, c.B().Xrevrange().Key(l.key).End("+").Start("-").Count(1).Build()).AsXRange()
	if err != nil {
		return "", err
	}
	if len(last) > 0 {
		return last[0].ID, nil
	}
	return c.Do(ctx, c.B().Xadd().Key(l.key).Id("*").FieldValue().FieldValue("m", "").Build()).ToString()
}

// applyEntries passes each logged message to apply; markers, with an empty
// message, are skipped.
func applyEntries(entries []rueidis.XRangeEntry, apply func(string)) {
	for _, e := range entries {
		if raw := e.FieldValues["m"]; raw != "" {
			apply(raw)
		}
	}
}
