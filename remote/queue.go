package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrQueueFull reports a write-behind write refused because the queue
// already holds its bound of unflushed writes. Nothing was changed.
var ErrQueueFull = errors.New("remote: write-behind queue full")

// The write-behind queue of a namespace is a Redis stream; this is its
// producer half (package writebehind consumes it). Its key is outside the
// generations, so InvalidateAll never drops a queued write:
//
//	<ns>:v1:wb:{<ns>}         the queue: fields k (key) and e (the envelope)
//
// and package writebehind keeps its dead letters and flusher lease beside
// it (<ns>:v1:wb:{<ns>}:dead, <ns>:v1:wb:leader).

// QueueKey is the Redis stream of a namespace's write-behind queue.
func QueueKey(namespace string) string { return namespace + ":v1:wb:{" + namespace + "}" }

// QueueKey is the Redis stream of the store's write-behind queue.
func (s *Store) QueueKey() string { return QueueKey(s.opts.Namespace) }

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
	args := []string{string(b), s.ttlMillis(e.TTL()), p.Channel, string(p.Message), strconv.Itoa(limit), key}
	id, err := s.exec(ctx, setQueuedScript, func(g *genState) call {
		keys := g.keys(key)
		return call{keys: []string{keys[0], keys[1], s.QueueKey()}, args: args, write: true}
	}).ToString()
	if err != nil && strings.HasPrefix(err.Error(), "TCFULL") {
		return "", fmt.Errorf("%w: %d writes wait to be flushed", ErrQueueFull, limit)
	}
	return id, err
}

// ErrQueuedOnly reports a write-behind write on a Cluster that reached the
// queue (so the source will get it) but not the cache, which may still hold
// the previous value. Writing again repairs it.
var ErrQueuedOnly = errors.New("remote: write queued, but the cache was not updated")

// enqueueScript is the queue step of a write-behind write on a Cluster. It
// runs through Store.run (bare: no log, no fence), so with WaitReplicas it
// is followed by WAIT on the queue's node, as the value's step is.
var enqueueScript = newScript(`
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return redis.error_reply('TCFULL write-behind queue holds ' .. ARGV[1] .. ' writes')
end
return redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 'e', ARGV[3])
`)

func (s *Store) setQueuedInSteps(ctx context.Context, key string, b []byte, e *Envelope, p Publication, limit int) (string, error) {
	var unconfirmed error
	id, err := func() (_ string, err error) {
		ctx, inf, err := s.begin(ctx, OpQueue)
		if err != nil {
			return "", err
		}
		defer inf.end(&err)
		res, notReplicated := s.runConfirmed(ctx, enqueueScript, s.state.Load(), call{keys: []string{s.QueueKey()},
			args: []string{strconv.Itoa(limit), key, string(b)}, write: true, bare: true})
		unconfirmed = notReplicated
		return res.ToString()
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
	// Queued but not confirmed on enough replicas: the cache is still
	// written, and the caller told (it may retry: writes are idempotent).
	if unconfirmed != nil {
		return id, fmt.Errorf("queue step (queued as %s): %w", id, unconfirmed)
	}
	return id, nil
}

// QueueEntry is one queued write.
