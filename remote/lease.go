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

// maxLeaseWait bounds the figures a waiter paces itself by (how long a
// lease still holds, how long its holder expects to load). They are read
// back from Redis, where anything may have written them: a figure past
// any real load must neither overflow a waiter's pacing (waitFor doubles
// it) nor make it wait for ever.
const maxLeaseWait = time.Hour

// waitMillis is ms milliseconds, read from Redis, as a waiter's figure:
// zero when negative (no TTL, or gone), at most maxLeaseWait.
func waitMillis(ms int64) time.Duration {
	return time.Duration(min(max(ms, 0), maxLeaseWait.Milliseconds())) * time.Millisecond
}

// holderExpects reads the load time a lease token states (LeaseToken):
// zero when it states none, at most maxLeaseWait.
func holderExpects(token string) time.Duration {
	i := strings.LastIndexByte(token, ':')
	if i < 0 {
		return 0
	}
	ms, err := strconv.ParseInt(token[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return waitMillis(ms)
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
	// see it, and will not wake us, but it is read here. A lease with no
	// TTL would never end, and the key would wait for ever: given one by
	// PERSIST, by a copy made with DUMP and RESTORE at TTL 0, or written by
	// another program. It gets a lease's life (NX: a no-op on a key with a
	// TTL, as every key tiercache writes has).
	res := c.DoMulti(ctx,
		c.B().Set().Key(keys[2]).Value("1").PxMilliseconds(s.opts.LeaseTTL.Milliseconds()).Build(),
		s.expireIfEndless(keys[0]),
		c.B().Pttl().Key(keys[0]).Build(),
		s.getOnce(keys[0]))
	if err := res[0].Error(); err != nil {
		return LeaseResult{}, err
	}
	left, err := res[2].AsInt64()
	if err != nil || left == -1 {
		// Refused (an ACL without PTTL), or a TTL-less lease that would
		// not take one: without a figure a waiter would look again
		// every millisecond; it assumes a whole lease instead (the
		// fill's wake-up still ends its wait).
		left = s.opts.LeaseTTL.Milliseconds()
	}
	r.HeldFor = waitMillis(left)
	b, err := res[3].AsBytes()
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
	var failed error
	for i, r := range res {
		var err error
		if out[i], err = s.leaseReply(r); err != nil {
			if !wrongType(err) {
				failed = err
			}
			// A value of another type in the key's place: neither found
			// nor leased, resolved alone (as a corrupt value is).
			out[i] = LeaseResult{}
			continue
		}
		if out[i].Found && len(out[i].Envelope.Tags) > 0 {
			tagged, at = append(tagged, &out[i].Envelope), append(at, i)
		}
	}
	if failed != nil {
		// Redis (or a node) did not answer, or refused for its state
		// (out of memory, loading, read-only, busy): the caller loads
		// the batch without Redis, and the leases taken here are given
		// back, or the other replicas would wait them out.
		s.releaseLeased(ctx, keys, out, token)
		return nil, failed
	}
	if len(tagged) == 0 {
		return out, nil
	}
	valid, err := s.tagsValid(ctx, tagged)
	for j, i := range at {
		if err != nil || !valid[j] {
			// Neither found nor leased: the caller resolves it alone
			// (getOrLease), which removes it and takes the lease. (When
			// the tags could not be read, the leases taken stay in play.)
			out[i] = LeaseResult{}
		}
	}
	return out, nil
}

// wrongType reports Redis's refusal of a command on a key that holds
// another type: a refusal of that key alone, not of the node's state.
func wrongType(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), "WRONGTYPE")
}

// releaseLeased gives back the leases GetOrLeaseMany took with token.
func (s *Store) releaseLeased(ctx context.Context, keys []string, got []LeaseResult, token string) {
	for i, r := range got {
		if r.Leased {
			s.Release(context.WithoutCancel(ctx), keys[i], token, 0, s.opts.WakeMessage(keys[i]))
		}
	}
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
		return LeaseResult{HeldFor: waitMillis(held), Holder: holder, HolderExpects: holderExpects(holder)}, nil
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
	lk := s.leaseKey(key)
	// A lease with no TTL (see LeaseOrRead) is given a lease's life, so
	// that it ends and a later caller takes it.
	res := c.DoMulti(ctx, c.B().Set().Key(lk).Value(token).Nx().PxMilliseconds(s.opts.LeaseTTL.Milliseconds()).Build(), s.expireIfEndless(lk))
	err = res[0].Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, err
}

// expireIfEndless gives key a lease's life if it has no TTL (PEXPIRE NX).
func (s *Store) expireIfEndless(key string) rueidis.Completed {
	c := s.opts.Client
	return c.B().Pexpire().Key(key).Milliseconds(s.opts.LeaseTTL.Milliseconds()).Nx().Build()
}
