package remote

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// Filling under a lease (taken in lease.go): the fill of a miss or a
// refresh, its wake-up of the replicas that wait, and giving a lease back.
//
// A fill's lease is the marker in the value key or, for a refresh, the
// lease key. A fill that finds its lease gone (voided by a write, or lost:
// expired, evicted) still wakes whoever waits, so that they look again at
// once.
//
// The lease is the fill's fence; the generation key does not fence it
// (unlike every other script that writes): reading it cost a third of the
// script's time in Redis. Nothing is lost by that. After an empty restart
// the lease is gone too, so the fill is refused. After a failover the
// generation key's value is the one replicated, so its fence would have
// let the fill through anyway (a settle finds the new run id). If the
// generation key alone was evicted, the fill lands over its own lease in
// the generation the fleet is about to leave: a write since then was
// refused by its own fence and went to the next generation, announcing
// it, and a replica reads the old one, this fill and every value the write
// moved past, only until it hears of the move: one invalidation delivery,
// as for any write.
var fillScript = newScript(`
if redis.call('GET', KEYS[1]) ~= 'tc\0' .. ARGV[1] then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then
    if redis.call('DEL', KEYS[3]) == 1 then publish(ARGV[4], ARGV[5]) end
    return 0
  end
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if redis.call('DEL', KEYS[3]) == 1 or ARGV[6] == '1' then publish(ARGV[4], ARGV[5]) end
return 1
`)

// missFillScript is the fill of a miss's lease, which publishes only to
// wake waiters: fillScript without the prelude, the publication's
// arguments or the marker built in Lua. A script runs on Redis's one
// thread for every load, and is most of what a fenced fill costs Redis over
// a plain SET (about 5 µs against 3 for a command, at 16 clients); the
// prelude and the publication were about 1 µs of it (BenchmarkLoadMiss,
// docs/benchmarks.md). It reports whether a
// waiter's marker was there (2, plus 1 when the value was written), and the
// caller then publishes the wake-up in a call of its own (wakeScript): that
// needs no atomicity with the fill, since a waiter that left its marker
// after the fill read the value in the same round trip (LeaseOrRead).
//
// KEYS: the value, lease and wait keys. ARGV: the lease marker, the token,
// the value, its TTL in ms.
var missFillScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 2 * redis.call('DEL', KEYS[3]) end
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
return 1 + 2 * redis.call('DEL', KEYS[3])
`)

// wakeScript publishes a miss fill's wake-up (logged when the log is on,
// as every publication is).
var wakeScript = newScript(`
publish(ARGV[1], ARGV[2])
return 1
`)

// missFilled reads missFillScript's reply: whether the value was written,
// and whether replicas wait to be woken.
func missFilled(res rueidis.RedisResult) (stored, waited bool, err error) {
	n, err := res.AsInt64()
	return n&1 == 1, n&2 != 0, err
}

// wake publishes p to the replicas that left their marker on a fill's
// lease (keys: the key's value, lease and wait keys). Errors are ignored:
// a waiter also looks again by itself.
func (s *Store) wake(ctx context.Context, g *genState, keys []string, p Publication) {
	if p.Channel == "" {
		return
	}
	s.run(ctx, wakeScript, g, call{keys: keys[2:3:3], args: []string{p.Channel, string(p.Message)}, unfenced: true})
}

// wakePublication is p, or when p is empty the store's WakeMessage of key:
// what wakes the replicas that wait for key's fill.
func (s *Store) wakePublication(key string, p Publication) Publication {
	if p.Channel != "" {
		return p
	}
	return s.opts.WakeMessage(key)
}

// FillOptions shape one Fill.
type FillOptions struct {
	// TTL overrides the store's TTL (e.g. for tombstones); zero keeps it.
	TTL time.Duration
	// Publication is sent when replicas wait for the fill (empty:
	// Options.WakeMessage's, built only then), or always when Always is
	// set (a refresh, so peers drop their stale copies).
	Publication Publication
	Always      bool
}

// Fill writes a loaded value if the lease taken with token still holds,
// releases the lease, and publishes o.Publication if replicas wait for it
// (or o.Always). It reports whether the value was written; false means a
// write (or lease expiry, or the lease's eviction) came first and the
// loaded value may be older than what Redis now holds. Waiters are woken
// either way.
func (s *Store) Fill(ctx context.Context, key, token string, e *Envelope, o FillOptions) (_ bool, err error) {
	value, err := s.Encode(e)
	if err != nil {
		return false, err
	}
	ctx, inf, err := s.begin(ctx, OpFill)
	if err != nil {
		return false, err
	}
	defer inf.end(&err)
	if o.Always {
		return s.fillAlways(ctx, key, token, value, o)
	}
	g := s.state.Load()
	keys := g.keys(key)
	stored, waited, err := missFilled(missFillScript.Exec(ctx, s.opts.Client, keys, s.missFillArgs(token, value, o)))
	if waited {
		s.wake(ctx, g, keys, s.wakePublication(key, o.Publication))
	}
	return stored, err
}

// FillItem is one fill of FillMany.
type FillItem struct {
	Key      string
	Envelope *Envelope
	Options  FillOptions
}

// FillMany is Fill for several keys under one token, pipelined. It reports
// per item whether it was written, or the item's encoding error.
func (s *Store) FillMany(ctx context.Context, token string, items []FillItem) ([]bool, []error) {
	stored := make([]bool, len(items))
	errs := make([]error, len(items))
	g := s.state.Load()
	execs := make([]rueidis.LuaExec, 0, len(items))
	at := make([]int, 0, len(items))
	var always []int
	for i, it := range items {
		if it.Options.Always {
			always = append(always, i) // as rare as a batch of refreshes: one by one, within this call's accounting
			continue
		}
		value, err := s.Encode(it.Envelope)
		if err != nil {
			errs[i] = err
			continue
		}
		execs = append(execs, rueidis.LuaExec{Keys: g.keys(it.Key), Args: s.missFillArgs(token, value, it.Options)})
		at = append(at, i)
	}
	ctx, inf, err := s.begin(ctx, OpFill)
	if err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return stored, errs
	}
	defer func() {
		var first error
		for _, e := range errs {
			if e != nil && !answered(e) {
				first = e
				break
			}
		}
		inf.end(&first)
	}()
	if len(execs) > 0 {
		for j, r := range missFillScript.ExecMulti(ctx, s.opts.Client, execs...) {
			i := at[j]
			var waited bool
			stored[i], waited, errs[i] = missFilled(r)
			if waited {
				s.wake(ctx, g, execs[j].Keys, s.wakePublication(items[i].Key, items[i].Options.Publication))
			}
		}
	}
	for _, i := range always {
		value, err := s.Encode(items[i].Envelope)
		if err != nil {
			errs[i] = err
			continue
		}
		stored[i], errs[i] = s.fillAlways(ctx, items[i].Key, token, value, items[i].Options)
	}
	return stored, errs
}

// fillAlways is the fill of a refresh (FillOptions.Always): the script
// that publishes atomically with the write, whether or not a replica waits.
func (s *Store) fillAlways(ctx context.Context, key, token string, value []byte, o FillOptions) (bool, error) {
	o.Publication = s.wakePublication(key, o.Publication)
	n, err := s.exec(ctx, fillScript, func(g *genState) call {
		return call{keys: g.keys(key), args: s.fillArgs(token, value, o), unfenced: true}
	}).AsInt64()
	return n == 1, err
}

// fillArgs are fillScript's arguments. The encoded value and the message
// are fresh and never changed (Encode, Message.Encode): they are sent
// without a copy, as are missFillArgs' and Set's.
func (s *Store) fillArgs(token string, value []byte, o FillOptions) []string {
	always := "0"
	if o.Always {
		always = "1"
	}
	args := make([]string, 0, 6+4) // room for prepare's log and fence arguments
	return append(args, token, rueidis.BinaryString(value), s.ttlMillis(o.TTL), o.Publication.Channel, rueidis.BinaryString(o.Publication.Message), always)
}

// missFillArgs are missFillScript's arguments.
func (s *Store) missFillArgs(token string, value []byte, o FillOptions) []string {
	return []string{leaseMarker(token), token, rueidis.BinaryString(value), s.ttlMillis(o.TTL)}
}

var releaseScript = newScript(`
local k = KEYS[1]
if redis.call('GET', k) ~= 'tc\0' .. ARGV[1] then
  k = KEYS[2]
  if redis.call('GET', k) ~= ARGV[1] then return 0 end
end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', k, ARGV[2]) else redis.call('DEL', k) end
if redis.call('DEL', KEYS[3]) == 1 then publish(ARGV[3], ARGV[4]) end
return 1
`)

// Release gives up key's fill lease if token still holds it and wakes the
// replicas waiting for it. With hold > 0 the lease is kept for hold more
// (a back-off after a failed load: waiters retry when it ends, and one
// takes over); otherwise it is deleted. Errors are ignored: the lease
// expires by itself.
func (s *Store) Release(ctx context.Context, key, token string, hold time.Duration, p Publication) {
	ctx, inf, err := s.begin(ctx, OpRelease)
	if err != nil {
		return
	}
	defer inf.end(&err)
	// Unfenced: a lease taken under a generation the namespace has left is
	// still released there.
	g := s.state.Load()
	err = s.run(ctx, releaseScript, g, call{keys: g.keys(key), unfenced: true,
		args: []string{token, strconv.FormatInt(hold.Milliseconds(), 10), p.Channel, string(p.Message)}}).Error()
}
