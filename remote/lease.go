package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// A miss's fill lease is held in the value key itself (leaseMarker), so
// taking it and reading the value are one command; a refresh's lease, taken
// while the value stays readable, is a key of its own (Lease). Fills and
// releases accept either.
var getOrLeaseScript = newScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 3) ~= 'tc\0' then return {1, v} end
if not v then
  redis.call('SET', KEYS[1], 'tc\0' .. ARGV[1], 'PX', ARGV[2])
  return {0, 1}
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[3], '1', 'PX', math.max(ttl, 1))
return {0, 0, ttl, string.sub(v, 4)}
`)

// LeaseResult is what getOrLease found.
type LeaseResult struct {
	Envelope Envelope
	Found    bool  // a readable value was present
	Corrupt  error // a value was present but unreadable (wraps ErrCorrupt)
	Leased   bool  // no value was present and the caller now holds the lease
	// HeldFor is how long another holder's lease still runs, when the
	// value was absent and the lease was not ours. A wait marker is then
	// set, so the holder publishes when it fills or gives up.
	HeldFor time.Duration
	// HolderExpects is how long the holder expected its load to take
	// (LeaseToken), zero when it did not say: a waiter looks again after
	// about that long in case its wake-up was lost.
	HolderExpects time.Duration
	// Holder is the token of the lease another holder has.
	Holder string
}

// NewToken returns a random lease token.
func NewToken() string {
	var buf [32]byte
	return string(appendToken(buf[:0]))
}

// LeaseToken returns a random lease token that tells waiters how long the
// holder expects its load to take. Every miss that may load makes one, so
// it costs one allocation.
func LeaseToken(expect time.Duration) string {
	var buf [48]byte
	b := append(appendToken(buf[:0]), ':')
	return string(strconv.AppendInt(b, expect.Milliseconds(), 10))
}

func appendToken(b []byte) []byte {
	b = strconv.AppendUint(b, rand.Uint64(), 36)
	b = append(b, '.')
	return strconv.AppendUint(b, rand.Uint64(), 36)
}

func holderExpects(token string) time.Duration {
	i := strings.LastIndexByte(token, ':')
	if i < 0 {
		return 0
	}
	ms, err := strconv.ParseInt(token[i+1:], 10, 64)
	if err != nil || ms < 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// getOrLease is LeaseOrRead in one script, for GetOrLeaseMany: it reads
// key and, when it is absent, takes its fill lease with token; when another
// holder has the lease, it marks that a replica waits. A corrupt value is
// reported in Corrupt (not as an error) so the caller can take a lease of
// its own with Lease.
func (s *Store) getOrLease(ctx context.Context, key, token string) (_ LeaseResult, err error) {
	ctx, inf, err := s.begin(ctx, OpGetOrLease)
	if err != nil {
		return LeaseResult{}, err
	}
	defer inf.end(&err)
	args := s.leaseArgs(token)
	for round := 0; ; round++ {
		r, err := s.leaseReply(s.exec(ctx, getOrLeaseScript, func(g *genState) call {
			return call{keys: g.keys(key), args: args}
		}))
		if err != nil || !r.Found || len(r.Envelope.Tags) == 0 || round > 0 {
			return r, err
		}
		valid, err := s.tagsValid(ctx, []*Envelope{&r.Envelope})
		if err != nil || valid[0] {
			return r, err
		}
		// A value of an invalidated tag: remove it and look again, so the
		// lease and its waiters work as for any miss.
		if err := s.dropIfUnchanged(ctx, key, r.Envelope.header); err != nil {
			return LeaseResult{}, err
		}
	}
}

// GetOrLease reads key and, when Redis has no value, takes its fill lease
// in the same command: SET of the lease marker with NX and GET, on the
// value key. One plain round trip, which costs Redis about what a GET
// does: when a value is there it is returned and nothing is written. When
// another replica holds the lease, its token is reported (HolderExpects)
// and no wait marker is set: LeaseOrRead does that. A corrupt value is
// reported in Corrupt, neither found nor leased (it cannot be leased in
// place). When Redis refuses the write (out of memory under noeviction, an
// ACL), the key is read with a plain GET.
func (s *Store) GetOrLease(ctx context.Context, key, token string) (_ LeaseResult, err error) {
	ctx, inf, err := s.begin(ctx, OpGetOrLease)
	if err != nil {
		return LeaseResult{}, err
	}
	defer inf.end(&err)
	r, _, err := s.leaseInPlace(ctx, key, token)
	if _, refused := rueidis.IsRedisErr(err); refused {
		return s.leaseRead(ctx, s.opts.Client.Do(ctx, s.getOnce(s.ValueKey(key))))
	}
	return r, err
}

// leaseInPlace runs setLeaseMarker on key's value key: Leased when Redis
// held nothing, held (with the holder's expected load time) when another
// lease is there, else the value read (Found, or Corrupt). A value of an
// invalidated tag is removed, unless rewritten since, and the lease taken
// as for any miss (the value would otherwise stand in the lease's way).
func (s *Store) leaseInPlace(ctx context.Context, key, token string) (_ LeaseResult, held bool, err error) {
	vk := s.ValueKey(key)
	for round := 0; ; round++ {
		b, err := s.opts.Client.Do(ctx, s.setLeaseMarker(vk, token)).AsBytes()
		if rueidis.IsRedisNil(err) {
			return LeaseResult{Leased: true}, false, nil
		}
		if err != nil {
			return LeaseResult{}, false, err
		}
		if holder, ok := markerToken(b); ok {
			return LeaseResult{Holder: holder, HolderExpects: holderExpects(holder)}, true, nil
		}
		e, err := s.decode(b)
		if err == nil {
			var valid Envelope
			if valid, err = s.checkTags(ctx, e); errors.Is(err, errTagInvalidated) && round == 0 {
				if err := s.dropIfUnchanged(ctx, key, e.header); err != nil {
					return LeaseResult{}, false, err
				}
				continue
			}
			e = valid
		}
		r, err := leaseOutcome(e, err)
		return r, false, err
	}
}

// setLeaseMarker is SET of the lease marker on value key vk, if it has no
// value (NX), returning what it holds (GET).
func (s *Store) setLeaseMarker(vk, token string) rueidis.Completed {
	c := s.opts.Client
	return c.B().Arbitrary("SET").Keys(vk).Args(leaseMarker(token), "NX", "GET", "PX", s.leaseMillis).Build()
}

// LeaseOrRead is GetOrLease for a reader about to wait: when another
// replica holds the lease, a wait marker is set and the lease's time left
// read (one more round trip, waiters only), so its fill wakes the caller.
func (s *Store) LeaseOrRead(ctx context.Context, key, token string) (_ LeaseResult, err error) {
	ctx, inf, err := s.begin(ctx, OpGetOrLease)
	if err != nil {
		return LeaseResult{}, err
	}
	defer inf.end(&err)
	r, held, err := s.leaseInPlace(ctx, key, token)
	if err != nil || !held {
		return r, err
	}
	keys := s.state.Load().keys(key)
	c := s.opts.Client
	// The marker (for at most a lease: longer is harmless, the fill
	// deletes it), the lease's time left, and the value read once more in
	// the same round trip: a fill that landed before the marker did not
	// see it, and will not wake us, but it is read here.
	res := c.DoMulti(ctx,
		c.B().Set().Key(keys[2]).Value("1").PxMilliseconds(s.opts.LeaseTTL.Milliseconds()).Build(),
		c.B().Pttl().Key(keys[0]).Build(),
		s.getOnce(keys[0]))
	if err := res[0].Error(); err != nil {
		return LeaseResult{}, err
	}
	left, _ := res[1].AsInt64()
	r.HeldFor = time.Duration(max(left, 0)) * time.Millisecond
	b, err := res[2].AsBytes()
	if rueidis.IsRedisNil(err) {
		return r, nil // filled and gone, or the lease ended: look again
	}
	if err != nil {
		return LeaseResult{}, err
	}
	if IsLeaseMarker(b) {
		return r, nil
	}
	return s.leaseDecode(ctx, b)
}

// leaseRead reads a GET reply: as leaseDecode, or a miss.
func (s *Store) leaseRead(ctx context.Context, res rueidis.RedisResult) (LeaseResult, error) {
	b, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return LeaseResult{}, nil
	}
	if err != nil {
		return LeaseResult{}, err
	}
	return s.leaseDecode(ctx, b)
}

// leaseDecode reads a value: Found, a miss, or Corrupt (a value of an
// invalidated tag, or a lease marker, is a miss).
func (s *Store) leaseDecode(ctx context.Context, b []byte) (LeaseResult, error) {
	e, err := s.decode(b)
	if err == nil {
		e, err = s.checkTags(ctx, e)
	}
	return leaseOutcome(e, err)
}

// leaseOutcome is what a decoded, tag-checked value read means to a lease
// round.
func leaseOutcome(e Envelope, err error) (LeaseResult, error) {
	switch {
	case err == nil:
		return LeaseResult{Envelope: e, Found: true}, nil
	case errors.Is(err, ErrCorrupt):
		return LeaseResult{Corrupt: err}, nil
	case errors.Is(err, ErrMiss):
		return LeaseResult{}, nil
	}
	return LeaseResult{}, err
}

// GetOrLeaseMany is getOrLease for several keys, pipelined (split by slot
// on a Cluster client). Results are in the order of keys.
func (s *Store) GetOrLeaseMany(ctx context.Context, keys []string, token string) (_ []LeaseResult, err error) {
	ctx, inf, err := s.begin(ctx, OpGetOrLease)
	if err != nil {
		return nil, err
	}
	defer inf.end(&err)
	args := s.leaseArgs(token)
	res := s.execMulti(ctx, getOrLeaseScript, func(g *genState) []call {
		calls := make([]call, len(keys))
		for i, k := range keys {
			calls[i] = call{keys: g.keys(k), args: args}
		}
		return calls
	})
	out := make([]LeaseResult, len(keys))
	var tagged []*Envelope
	var at []int
	for i, r := range res {
		var err error
		if out[i], err = s.leaseReply(r); err != nil {
			return nil, err
		}
		if out[i].Found && len(out[i].Envelope.Tags) > 0 {
			tagged, at = append(tagged, &out[i].Envelope), append(at, i)
		}
	}
	if len(tagged) == 0 {
		return out, nil
	}
	valid, err := s.tagsValid(ctx, tagged)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		if !valid[j] {
			// Neither found nor leased: the caller resolves it alone
			// (getOrLease), which removes it and takes the lease.
			out[i] = LeaseResult{}
		}
	}
	return out, nil
}

func (s *Store) leaseArgs(token string) []string {
	return []string{token, s.leaseMillis}
}

func (s *Store) leaseReply(res rueidis.RedisResult) (LeaseResult, error) {
	arr, err := res.ToArray()
	if err != nil {
		return LeaseResult{}, err
	}
	if len(arr) < 2 {
		return LeaseResult{}, fmt.Errorf("remote: getOrLease: unexpected reply of %d elements", len(arr))
	}
	found, err := arr[0].AsInt64()
	if err != nil {
		return LeaseResult{}, err
	}
	if found == 0 {
		leased, err := arr[1].AsInt64()
		if err != nil || leased == 1 {
			return LeaseResult{Leased: leased == 1}, err
		}
		var held int64
		var holder string
		if len(arr) > 3 {
			held, _ = arr[2].AsInt64()
			holder, _ = arr[3].ToString()
		}
		return LeaseResult{HeldFor: time.Duration(max(held, 0)) * time.Millisecond, Holder: holder, HolderExpects: holderExpects(holder)}, nil
	}
	b, err := arr[1].AsBytes()
	if err != nil {
		return LeaseResult{}, err
	}
	e, err := s.decode(b)
	if err != nil {
		return LeaseResult{Corrupt: err}, nil
	}
	return LeaseResult{Envelope: e, Found: true}, nil
}

// Lease takes key's fill lease with token if nobody holds it.
func (s *Store) Lease(ctx context.Context, key, token string) (_ bool, err error) {
	ctx, inf, err := s.begin(ctx, OpLease)
	if err != nil {
		return false, err
	}
	defer inf.end(&err)
	c := s.opts.Client
	err = c.Do(ctx, c.B().Set().Key(s.leaseKey(key)).Value(token).Nx().PxMilliseconds(s.opts.LeaseTTL.Milliseconds()).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, err
}

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
