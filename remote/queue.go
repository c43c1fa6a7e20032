package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// ErrQueueFull reports a write-behind write refused because the queue
// already holds its bound of unflushed writes. Nothing was changed.
var ErrQueueFull = errors.New("remote: write-behind queue full")

// The write-behind queue of a namespace is a Redis stream read by one
// consumer group. Its keys are outside the generations, so InvalidateAll
// never drops a queued write. The queue and its dead letters share a hash
// tag, so that a script may move an entry from one to the other on a
// Cluster:
//
//	<ns>:v1:wb:{<ns>}         the queue: fields k (key) and e (the envelope)
//	<ns>:v1:wb:{<ns>}:dead    dead letters: k, e, id, attempts, err
//	<ns>:v1:wb:leader         the flusher lease: a random token, PX
const queueGroup = "tiercache"

// QueueKey is the Redis stream of the namespace's write-behind queue.
func (s *Store) QueueKey() string { return s.opts.Namespace + ":v1:wb:{" + s.opts.Namespace + "}" }

// DeadLetterKey is the Redis stream of the queue's dead letters.
func (s *Store) DeadLetterKey() string { return s.QueueKey() + ":dead" }

func (s *Store) leaderKey() string { return s.opts.Namespace + ":v1:wb:leader" }

// A full queue is refused before anything is written, so a refused write
// leaves no trace; an accepted one changes the value, voids the lease,
// publishes and queues in one step.
var setQueuedScript = newScript(`
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[5]) then
  return redis.error_reply('TCFULL write-behind queue holds ' .. ARGV[5] .. ' writes')
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
publish(ARGV[3], ARGV[4])
return redis.call('XADD', KEYS[3], '*', 'k', ARGV[6], 'e', ARGV[1])
`)

// SetQueued is Set that also appends the write to the write-behind queue,
// atomically, unless the queue holds limit writes already (ErrQueueFull).
// It returns the write's queue id.
//
// On a Cluster the queue is in another slot than the key, so it takes two
// steps, the queue first: a write is never in the cache without being in
// the queue. If the second step fails, the error wraps ErrQueuedOnly.
func (s *Store) SetQueued(ctx context.Context, key string, e *Envelope, p Publication, limit int) (_ string, err error) {
	b, err := s.Encode(e)
	if err != nil {
		return "", err
	}
	if s.cluster {
		return s.setQueuedInSteps(ctx, key, b, e, p, limit)
	}
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return "", err
	}
	defer inf.end(&err)
	args := []string{string(b), s.ttlMillis(0), p.Channel, string(p.Message), strconv.Itoa(limit), key}
	id, err := s.exec(ctx, setQueuedScript, func(g *genState) call {
		keys := g.keys(key)
		return call{keys: []string{keys[0], keys[1], s.QueueKey()}, args: args, write: true}
	}).ToString()
	if err != nil && strings.HasPrefix(err.Error(), "TCFULL") {
		return "", fmt.Errorf("%w: %d writes wait to be flushed", ErrQueueFull, limit)
	}
	return id, err
}

// ErrQueueLost reports that the write-behind queue's stream (or its
// consumer group) vanished after this store had read it: Redis evicted it
// or restarted without it, and the writes it held are lost. The queue
// starts again, empty; the loss is counted in Stats.Lost.Queue.
var ErrQueueLost = errors.New("remote: the write-behind queue was lost by Redis (evicted, or a restart without persistence): the writes it held are gone")

// ErrQueuedOnly reports a write-behind write on a Cluster that reached the
// queue (so the source will get it) but not the cache, which may still hold
// the previous value. Writing again repairs it.
var ErrQueuedOnly = errors.New("remote: write queued, but the cache was not updated")

var enqueueScript = rueidis.NewLuaScript(`
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('TCFULL write-behind queue holds ' .. ARGV[1] .. ' writes')
end
return redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 'e', ARGV[3])
`)

func (s *Store) setQueuedInSteps(ctx context.Context, key string, b []byte, e *Envelope, p Publication, limit int) (string, error) {
	id, err := func() (_ string, err error) {
		ctx, inf, err := s.begin(ctx, OpQueue)
		if err != nil {
			return "", err
		}
		defer inf.end(&err)
		return enqueueScript.Exec(ctx, s.opts.Client, []string{s.QueueKey()}, []string{strconv.Itoa(limit), key, string(b)}).ToString()
	}()
	if err != nil {
		if strings.HasPrefix(err.Error(), "TCFULL") {
			return "", fmt.Errorf("%w: %d writes wait to be flushed", ErrQueueFull, limit)
		}
		return "", err
	}
	if err := s.Set(ctx, key, e, p); err != nil {
		return id, fmt.Errorf("%w (queued as %s): %w", ErrQueuedOnly, id, err)
	}
	return id, nil
}

// QueueEntry is one queued write.
type QueueEntry struct {
	ID       string // the stream id: increasing in queue order
	Key      string
	Envelope Envelope
	Raw      []byte // the envelope as queued
	Err      error  // the entry could not be decoded (a wrapped ErrCorrupt)
}

// QueueDepth is how many writes wait in the queue (read or not, unflushed)
// and how many dead letters there are.
func (s *Store) QueueDepth(ctx context.Context) (queued, dead int64, err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return 0, 0, err
	}
	defer inf.end(&err)
	c := s.opts.Client
	res := c.DoMulti(ctx, c.B().Xlen().Key(s.QueueKey()).Build(), c.B().Xlen().Key(s.DeadLetterKey()).Build())
	if queued, err = res[0].AsInt64(); err != nil {
		return 0, 0, err
	}
	dead, err = res[1].AsInt64()
	return queued, dead, err
}

// ReadQueue returns up to count entries for consumer: first those already
// delivered to it and not acknowledged (oldest first), then new ones. When
// it has none pending it waits up to block for new ones (no wait if block
// is 0). The consumer group is created when missing.
func (s *Store) ReadQueue(ctx context.Context, consumer string, count int, block time.Duration) (_ []QueueEntry, err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return nil, err
	}
	defer inf.end(&err)
	out, err := s.readGroup(ctx, consumer, "0", count, 0)
	if err != nil || len(out) == count {
		return out, err
	}
	wait := block
	if len(out) > 0 {
		wait = 0
	}
	fresh, err := s.readGroup(ctx, consumer, ">", count-len(out), wait)
	return append(out, fresh...), err
}

func (s *Store) readGroup(ctx context.Context, consumer, from string, count int, block time.Duration) ([]QueueEntry, error) {
	c := s.opts.Client
	read := func() (map[string][]rueidis.XRangeEntry, error) {
		b := c.B().Xreadgroup().Group(queueGroup, consumer).Count(int64(count))
		if block > 0 {
			return c.Do(ctx, b.Block(max(block.Milliseconds(), 1)).Streams().Key(s.QueueKey()).Id(from).Build()).AsXRead()
		}
		return c.Do(ctx, b.Streams().Key(s.QueueKey()).Id(from).Build()).AsXRead()
	}
	m, err := read()
	lost := false
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		// A first flusher, or the stream was lost (evicted, or a Redis
		// without persistence restarted): the group starts at the
		// beginning, so writes queued since are read too. What was queued
		// before a loss is gone: if this store has read the group before,
		// that is said, never passed off as a drained queue.
		lost = s.queueSeen.Load()
		err = c.Do(ctx, c.B().XgroupCreate().Key(s.QueueKey()).Group(queueGroup).Id("0").Mkstream().Build()).Error()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return nil, err
		}
		m, err = read()
	}
	if lost {
		s.lost[lostIndex(LostQueue)].Add(1)
		return nil, ErrQueueLost
	}
	if rueidis.IsRedisNil(err) { // BLOCK ran out
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.queueSeen.Store(true)
	raw := m[s.QueueKey()]
	out := make([]QueueEntry, 0, len(raw))
	var gone []string
	for _, r := range raw {
		if r.FieldValues == nil {
			// Pending but deleted: another flusher flushed it after
			// this one claimed it. Nothing is left to deliver.
			gone = append(gone, r.ID)
			continue
		}
		out = append(out, s.queueEntry(r))
	}
	if len(gone) > 0 {
		if err := c.Do(ctx, c.B().Xack().Key(s.QueueKey()).Group(queueGroup).Id(gone...).Build()).Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) queueEntry(r rueidis.XRangeEntry) QueueEntry {
	q := QueueEntry{ID: r.ID}
	key, ok := r.FieldValues["k"]
	payload, ok2 := r.FieldValues["e"]
	if !ok || !ok2 {
		q.Err = fmt.Errorf("%w: queue entry %s lacks its key or value", ErrCorrupt, r.ID)
		return q
	}
	q.Key, q.Raw = key, []byte(payload)
	q.Envelope, q.Err = s.decode(q.Raw)
	return q
}

var ackScript = rueidis.NewLuaScript(`
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return n
`)

// maxIDsPerCall bounds the ids one script is given (Lua's unpack limit).
const maxIDsPerCall = 4000

// AckQueue acknowledges flushed entries and removes them from the queue.
func (s *Store) AckQueue(ctx context.Context, ids []string) (err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return err
	}
	defer inf.end(&err)
	for start := 0; start < len(ids); start += maxIDsPerCall {
		batch := ids[start:min(start+maxIDsPerCall, len(ids))]
		args := append([]string{queueGroup}, batch...)
		if err := ackScript.Exec(ctx, s.opts.Client, []string{s.QueueKey()}, args).Error(); err != nil {
			return err
		}
	}
	return nil
}

var deadLetterScript = rueidis.NewLuaScript(`
redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'k', ARGV[3], 'e', ARGV[4], 'attempts', ARGV[5], 'err', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
`)

// DeadLetter is one entry moved out of the queue.
type DeadLetter struct {
	ID       string // its id in the queue
	Key      string
	Raw      []byte // the envelope as queued (may be unreadable)
	Attempts int
	Reason   string
}

// MoveToDeadLetters appends d to the dead-letter stream and removes it from
// the queue, atomically.
func (s *Store) MoveToDeadLetters(ctx context.Context, d DeadLetter) (err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return err
	}
	defer inf.end(&err)
	return deadLetterScript.Exec(ctx, s.opts.Client, []string{s.QueueKey(), s.DeadLetterKey()},
		[]string{queueGroup, d.ID, d.Key, string(d.Raw), strconv.Itoa(d.Attempts), d.Reason}).Error()
}

// ClaimQueue makes consumer the owner of every entry pending for another
// consumer of the group (one whose flusher died or lost its lease), with
// XAUTOCLAIM, and removes consumers left with nothing pending. It returns
// how many entries it claimed.
func (s *Store) ClaimQueue(ctx context.Context, consumer string) (_ int, err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return 0, err
	}
	defer inf.end(&err)
	c := s.opts.Client
	claimed, start := 0, "0-0"
	for {
		arr, err := c.Do(ctx, c.B().Xautoclaim().Key(s.QueueKey()).Group(queueGroup).Consumer(consumer).
			MinIdleTime("0").Start(start).Count(1000).Justid().Build()).ToArray()
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				return 0, nil // nothing was ever read
			}
			return claimed, err
		}
		if len(arr) < 2 {
			return claimed, fmt.Errorf("remote: XAUTOCLAIM: unexpected reply of %d elements", len(arr))
		}
		ids, err := arr[1].ToArray()
		if err != nil {
			return claimed, err
		}
		claimed += len(ids)
		if start, err = arr[0].ToString(); err != nil {
			return claimed, err
		}
		if start == "0-0" {
			break
		}
	}
	return claimed, s.dropIdleConsumers(ctx, consumer)
}

// dropIdleConsumers removes the group's consumers other than keep that
// hold nothing, so the group does not grow with every flusher ever run.
func (s *Store) dropIdleConsumers(ctx context.Context, keep string) error {
	c := s.opts.Client
	infos, err := c.Do(ctx, c.B().XinfoConsumers().Key(s.QueueKey()).Group(queueGroup).Build()).ToArray()
	if err != nil {
		return err
	}
	for _, info := range infos {
		m, err := info.AsMap()
		if err != nil {
			return err
		}
		nameMsg, pendingMsg := m["name"], m["pending"]
		name, _ := nameMsg.ToString()
		pending, _ := pendingMsg.AsInt64()
		if name == keep || pending > 0 {
			continue
		}
		if err := c.Do(ctx, c.B().XgroupDelconsumer().Key(s.QueueKey()).Group(queueGroup).Consumername(name).Build()).Error(); err != nil {
			return err
		}
	}
	return nil
}

var holdLeaderScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0
`)

// Leadership is the result of HoldLeader.
type Leadership int

// The results of HoldLeader.
const (
	NotLeader   Leadership = iota
	StillLeader            // the lease was ours and is extended
	NewLeader              // the lease was free and is now ours
)

// HoldLeader takes or extends the queue's flusher lease for token; only
// its holder flushes, so writes to one key reach the writer in queue order.
func (s *Store) HoldLeader(ctx context.Context, token string, ttl time.Duration) (_ Leadership, err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return NotLeader, err
	}
	defer inf.end(&err)
	n, err := holdLeaderScript.Exec(ctx, s.opts.Client, []string{s.leaderKey()},
		[]string{token, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)}).AsInt64()
	return Leadership(n), err
}

var releaseLeaderScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// ReleaseLeader gives the flusher lease up if token holds it.
func (s *Store) ReleaseLeader(ctx context.Context, token string) (err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return err
	}
	defer inf.end(&err)
	return releaseLeaderScript.Exec(ctx, s.opts.Client, []string{s.leaderKey()}, []string{token}).Error()
}
