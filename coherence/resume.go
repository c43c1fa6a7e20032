package coherence

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// A resumable bus (Options.LogKey set) repairs gaps from the namespace's
// invalidation log, a capped stream that publishers append every message to
// (package remote). The bus remembers the log id of the newest message it
// has seen; after a gap it replays the log from there. Only when that id is
// no longer in the log (trimmed: the gap outlasted the cap) or Redis cannot
// be read does it report the gap to OnGap, which flushes.
//
// Everything here runs on the apply goroutine, in order with messages.

// errPositionLost means the log no longer reaches back to the bus's position.
var errPositionLost = errors.New("coherence: invalidation log trimmed past the last message seen")

// replayBatch bounds one XRANGE of a replay.
const replayBatch = 512

// gap handles a gap: a replay in resumable mode, else (or if it fails) OnGap.
func (b *Bus) gap(reason GapReason) {
	if b.opts.LogKey == "" {
		b.opts.OnGap(reason)
		return
	}
	n, err := b.replay()
	if err == nil {
		b.repairs.Add(1)
		b.replayed.Add(uint64(n))
		if b.opts.OnRepair != nil {
			b.opts.OnRepair(reason, n)
		}
		return
	}
	b.unrepaired.Add(1)
	// The new position is read before the flush: whatever was published
	// before it is covered by the flush, whatever after it by the log.
	b.logPos = ""
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingTimeout)
	b.logPos, _ = b.logTail(ctx)
	cancel()
	b.opts.OnGap(reason)
}

// seen records the log id of a message received live.
func (b *Bus) seen(id string) {
	if id != "" && (b.logPos == "" || StreamIDLess(b.logPos, id)) {
		b.logPos = id
	}
}

// replay applies the log's messages after the bus's position.
func (b *Bus) replay() (int, error) {
	if b.logPos == "" {
		return 0, errPositionLost
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.PingTimeout)
	defer cancel()
	c := b.opts.Client
	at, err := c.Do(ctx, c.B().Xrange().Key(b.opts.LogKey).Start(b.logPos).End(b.logPos).Build()).AsXRange()
	if err != nil {
		return 0, err
	}
	if len(at) == 0 {
		return 0, errPositionLost
	}
	applied := 0
	for {
		entries, err := c.Do(ctx, c.B().Xrange().Key(b.opts.LogKey).Start("("+b.logPos).End("+").Count(replayBatch).Build()).AsXRange()
		if err != nil {
			return applied, err
		}
		for _, e := range entries {
			b.logPos = e.ID
			raw := e.FieldValues["m"]
			if raw == "" {
				continue // a position marker
			}
			m, err := Decode([]byte(raw))
			if err != nil {
				b.undecodable.Add(1)
				continue // the live copy, if any, was stamped from the same bytes
			}
			if b.deliver(m) {
				applied++
			}
		}
		if len(entries) < replayBatch {
			return applied, nil
		}
	}
}

// logTail returns the log's newest id, adding a marker entry when the log is
// empty so that the position is an entry whose trimming can be seen.
func (b *Bus) logTail(ctx context.Context) (string, error) {
	c := b.opts.Client
	last, err := c.Do(ctx, c.B().Xrevrange().Key(b.opts.LogKey).End("+").Start("-").Count(1).Build()).AsXRange()
	if err != nil {
		return "", err
	}
	if len(last) > 0 {
		return last[0].ID, nil
	}
	return c.Do(ctx, c.B().Xadd().Key(b.opts.LogKey).Id("*").FieldValue().FieldValue("m", "").Build()).ToString()
}

// StreamIDLess reports whether Redis stream id a comes before b.
func StreamIDLess(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if am != bm {
		x, _ := strconv.ParseUint(am, 10, 64)
		y, _ := strconv.ParseUint(bm, 10, 64)
		return x < y
	}
	x, _ := strconv.ParseUint(as, 10, 64)
	y, _ := strconv.ParseUint(bs, 10, 64)
	return x < y
}
