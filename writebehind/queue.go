package writebehind

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/remote"
)

// The consumer half of a namespace's write-behind queue (package remote
// holds the producer half, SetQueued): a Redis stream read by one consumer
// group, its dead letters and the flusher lease. The queue and its dead
// letters share a hash tag, so that a script may move an entry from one to
// the other on a Cluster:
//
//	<ns>:v1:wb:{<ns>}         the queue: fields k (key) and e (the envelope)
//	<ns>:v1:wb:{<ns>}:dead    dead letters: k, e, id, attempts, err
//	<ns>:v1:wb:leader         the flusher lease: a random token, PX
const queueGroup = "tiercache"

// queue reaches the queue's keys through the caller's client, each call
// bounded by timeout. Only a Flusher's Run loop uses it (seen is atomic
// for tests to read).
type queue struct {
	client            rueidis.Client
	key, dead, leader string
	timeout           time.Duration
	maxValue          int         // bounds a queued value's decoding
	seen              atomic.Bool // the group was read (or a standby saw it): its loss is a loss
}

func newQueue(client rueidis.Client, namespace string, timeout time.Duration, maxValue int) *queue {
	key := remote.QueueKey(namespace)
	return &queue{client: client, key: key, dead: key + ":dead", leader: namespace + ":v1:wb:leader", timeout: timeout, maxValue: maxValue}
}

// errQueueLost reports that the queue's stream (or its consumer group)
// vanished after this flusher had read it: Redis evicted it or restarted
// without it, and the writes it held are lost. The queue starts again,
// empty; the loss is counted in Stats.QueueLost.
var errQueueLost = errors.New("writebehind: the queue was lost by Redis (evicted, or a restart without persistence): the writes it held are gone")

// entry is one queued write.
type entry struct {
	ID       string // the stream id: increasing in queue order
	Key      string
	Envelope remote.Envelope
	Raw      []byte // the envelope as queued
	Err      error  // the entry could not be decoded (a wrapped remote.ErrCorrupt)
}

// depth is how many writes wait in the queue (read or not, unflushed)
// and how many dead letters there are.
func (q *queue) depth(ctx context.Context) (queued, dead int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	c := q.client
	res := c.DoMulti(ctx, c.B().Xlen().Key(q.key).Build(), c.B().Xlen().Key(q.dead).Build())
	if queued, err = res[0].AsInt64(); err != nil {
		return 0, 0, err
	}
	dead, err = res[1].AsInt64()
	return queued, dead, err
}

// read returns up to count entries for consumer: first those already
// delivered to it and not acknowledged (oldest first), then new ones. When
// it has none pending it waits up to block for new ones (no wait if block
// is 0). The consumer group is created when missing.
func (q *queue) read(ctx context.Context, consumer string, count int, block time.Duration) (_ []entry, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout+block)
	defer cancel()
	out, err := q.readGroup(ctx, consumer, "0", count, 0)
	if err != nil || len(out) == count {
		return out, err
	}
	wait := block
	if len(out) > 0 {
		wait = 0
	}
	fresh, err := q.readGroup(ctx, consumer, ">", count-len(out), wait)
	return append(out, fresh...), err
}

func (q *queue) readGroup(ctx context.Context, consumer, from string, count int, block time.Duration) ([]entry, error) {
	c := q.client
	read := func() (map[string][]rueidis.XRangeEntry, error) {
		b := c.B().Xreadgroup().Group(queueGroup, consumer).Count(int64(count))
		if block > 0 {
			return c.Do(ctx, b.Block(max(block.Milliseconds(), 1)).Streams().Key(q.key).Id(from).Build()).AsXRead()
		}
		return c.Do(ctx, b.Streams().Key(q.key).Id(from).Build()).AsXRead()
	}
	m, err := read()
	lost := false
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		// A first flusher, or the stream was lost (evicted, or a Redis
		// without persistence restarted): the group starts at the
		// beginning, so writes queued since are read too. What was queued
		// before a loss is gone: if this store has read the group before,
		// that is said, never passed off as a drained queue.
		lost = q.seen.Load()
		if err := createGroupScript.Exec(ctx, c, []string{q.key}, []string{queueGroup}).Error(); err != nil {
			return nil, err
		}
		m, err = read()
	}
	if lost {
		return nil, errQueueLost
	}
	if rueidis.IsRedisNil(err) { // BLOCK ran out
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	q.seen.Store(true)
	raw := m[q.key]
	out := make([]entry, 0, len(raw))
	var gone []string
	for _, r := range raw {
		if r.FieldValues == nil {
			// Pending but deleted: another flusher flushed it after
			// this one claimed it. Nothing is left to deliver.
			gone = append(gone, r.ID)
			continue
		}
		out = append(out, q.decodeEntry(r))
	}
	if len(gone) > 0 {
		if err := c.Do(ctx, c.B().Xack().Key(q.key).Group(queueGroup).Id(gone...).Build()).Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (q *queue) decodeEntry(r rueidis.XRangeEntry) entry {
	e := entry{ID: r.ID}
	key, ok := r.FieldValues["k"]
	payload, ok2 := r.FieldValues["e"]
	if !ok || !ok2 {
		e.Err = fmt.Errorf("%w: queue entry %s lacks its key or value", remote.ErrCorrupt, r.ID)
		return e
	}
	e.Key, e.Raw = key, []byte(payload)
	e.Envelope, e.Err = remote.DecodeEnvelope(e.Raw, q.maxValue)
	return e
}

var ackScript = rueidis.NewLuaScript(`
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return n
`)

// maxIDsPerCall bounds the ids one script is given (Lua's unpack limit).
const maxIDsPerCall = 4000

// ack acknowledges flushed entries and removes them from the queue.
func (q *queue) ack(ctx context.Context, ids []string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	for start := 0; start < len(ids); start += maxIDsPerCall {
		batch := ids[start:min(start+maxIDsPerCall, len(ids))]
		args := append([]string{queueGroup}, batch...)
		if err := ackScript.Exec(ctx, q.client, []string{q.key}, args).Error(); err != nil {
			return err
		}
	}
	return nil
}

// createGroupScript creates the queue's consumer group reading from its
// start (and the stream, if missing), unless it exists; on a full Redis
// too (allow-oom: a few bytes, and without the group the queue cannot
// drain).
var createGroupScript = rueidis.NewLuaScript(`#!lua flags=allow-oom
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(r) == 'table' and r.err and string.sub(r.err, 1, 9) ~= 'BUSYGROUP' then return r end
return 1
`)

// deadLetterScript copies an entry, value and all, to the dead letters
// and removes it from the queue, if it is still pending for the consumer
// that moves it (ARGV[7]; 0 otherwise). It runs on a full Redis too
// (allow-oom): the queue is read pending entries first, so a batch's worth
// of entries that could not be moved out blocked every later write for
// good, on a Redis that a queue which cannot drain keeps full. The copy
// costs about what the entry it moves costs, bounded by the queue's own
// bound.
var deadLetterScript = rueidis.NewLuaScript(`#!lua flags=allow-oom
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[7]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'k', ARGV[3], 'e', ARGV[4], 'attempts', ARGV[5], 'err', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
`)

// deadLetter is one entry moved out of the queue.
type deadLetter struct {
	ID       string // its id in the queue
	Key      string
	Raw      []byte // the envelope as queued (may be unreadable)
	Attempts int
	Reason   string
}

// moveToDeadLetters appends d to the dead-letter stream and removes it from
// the queue, atomically, if d is still pending for consumer; moved is
// false when it is not: a flusher whose lease ran out while it worked
// through a round must not copy an entry the next holder has claimed (and
// may since have delivered: an operator replaying the copy would write a
// stale value).
func (q *queue) moveToDeadLetters(ctx context.Context, consumer string, d deadLetter) (moved bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	n, err := deadLetterScript.Exec(ctx, q.client, []string{q.key, q.dead},
		[]string{queueGroup, d.ID, d.Key, string(d.Raw), strconv.Itoa(d.Attempts), d.Reason, consumer}).AsInt64()
	return n == 1, err
}

// claim makes consumer the owner of every entry pending for another
// consumer of the group for at least minIdle (one whose flusher died or
// lost its lease), with XAUTOCLAIM, and removes consumers left with
// nothing pending. It returns how many entries it claimed.
func (q *queue) claim(ctx context.Context, consumer string, minIdle time.Duration) (_ int, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	c := q.client
	claimed, start := 0, "0-0"
	for {
		arr, err := c.Do(ctx, c.B().Xautoclaim().Key(q.key).Group(queueGroup).Consumer(consumer).
			MinIdleTime(strconv.FormatInt(minIdle.Milliseconds(), 10)).Start(start).Count(1000).Justid().Build()).ToArray()
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
	return claimed, q.dropIdleConsumers(ctx, consumer)
}

// dropIdleConsumersScript removes the group's consumers other than
// ARGV[2] that hold nothing. In one script: a flusher that lost its lease
// may still read an entry into its own pending list, and between a look
// at the consumers and their removal that entry would be dropped with it,
// never delivered.
var dropIdleConsumersScript = rueidis.NewLuaScript(`
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
  end
end
return 1
`)

// dropIdleConsumers removes the group's consumers other than keep that
// hold nothing, so the group does not grow with every flusher ever run.
func (q *queue) dropIdleConsumers(ctx context.Context, keep string) error {
	return dropIdleConsumersScript.Exec(ctx, q.client, []string{q.key}, []string{queueGroup, keep}).Error()
}

// holdLeaderScript extends the lease for its holder or takes it when
// free, on a full Redis too (allow-oom, as createGroupScript): write-behind
// needs noeviction, so a full Redis refuses writes, and draining the
// queue is what frees memory; the lease is a few bytes. A lease with no
// TTL (a PERSIST, a DUMP and RESTORE at TTL 0, another program) would keep
// every flusher on standby for good: it is given a lease's life (PEXPIRE
// NX, a no-op on a lease a flusher took).
var holdLeaderScript = rueidis.NewLuaScript(`#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[2], 'NX')
return 0
`)

// leadership is the result of holdLeader.
type leadership int

// The results of HoldLeader.
const (
	notLeader   leadership = iota
	stillLeader            // the lease was ours and is extended
	newLeader              // the lease was free and is now ours
)

// noteGroup records that the queue's consumer group exists (seen), for a
// standby: read reports the queue lost when its group is gone after that.
// XINFO CONSUMERS answers NOGROUP or no such key otherwise.
func (q *queue) noteGroup(ctx context.Context) {
	if q.seen.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	if q.client.Do(ctx, q.client.B().XinfoConsumers().Key(q.key).Group(queueGroup).Build()).Error() == nil {
		q.seen.Store(true)
	}
}

// holdLeader takes or extends the queue's flusher lease for token; only
// its holder flushes, so writes to one key reach the writer in queue order.
func (q *queue) holdLeader(ctx context.Context, token string, ttl time.Duration) (_ leadership, err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	n, err := holdLeaderScript.Exec(ctx, q.client, []string{q.leader},
		[]string{token, strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)}).AsInt64()
	return leadership(n), err
}

var releaseLeaderScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// releaseLeader gives the flusher lease up if token holds it.
func (q *queue) releaseLeader(ctx context.Context, token string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	return releaseLeaderScript.Exec(ctx, q.client, []string{q.leader}, []string{token}).Error()
}
