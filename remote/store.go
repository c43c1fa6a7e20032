package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// ErrMiss reports a key absent from Redis.
var ErrMiss = errors.New("remote: miss")

// ErrInvalidOptions is returned by New for options that cannot work.
var ErrInvalidOptions = errors.New("remote: invalid options")

// Options configures a Store. Zero values mean the documented defaults.
type Options struct {
	// Client is the caller's rueidis client. Required.
	Client rueidis.Client
	// Namespace prefixes every key. Required.
	Namespace string
	// TTL is how long values live in Redis. Required.
	TTL time.Duration
	// TTLJitter shortens each TTL by a random fraction in [0, TTLJitter).
	// Must be in [0, 1). Default 0.
	TTLJitter float64
	// LeaseTTL bounds how long a fill lease holds. Default 5s.
	LeaseTTL time.Duration
	// MaxValueBytes bounds a payload before compression. Default 1 MiB.
	MaxValueBytes int
	// CompressAbove compresses payloads of at least this many bytes (s2).
	// Default 1024; negative disables compression.
	CompressAbove int
	// Timeout is the deadline given to every Redis call whose ctx has none
	// sooner. Default 1s.
	Timeout time.Duration
}

func (o *Options) validate() error {
	switch {
	case o.Client == nil:
		return fmt.Errorf("%w: Client is nil", ErrInvalidOptions)
	case o.Namespace == "":
		return fmt.Errorf("%w: Namespace is empty", ErrInvalidOptions)
	case o.TTL <= 0:
		return fmt.Errorf("%w: TTL %v must be positive", ErrInvalidOptions, o.TTL)
	case o.TTLJitter < 0 || o.TTLJitter >= 1:
		return fmt.Errorf("%w: TTLJitter %v not in [0, 1)", ErrInvalidOptions, o.TTLJitter)
	case o.LeaseTTL < 0:
		return fmt.Errorf("%w: LeaseTTL %v < 0", ErrInvalidOptions, o.LeaseTTL)
	case o.MaxValueBytes < 0:
		return fmt.Errorf("%w: MaxValueBytes %d < 0", ErrInvalidOptions, o.MaxValueBytes)
	case o.Timeout < 0:
		return fmt.Errorf("%w: Timeout %v < 0", ErrInvalidOptions, o.Timeout)
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 5 * time.Second
	}
	if o.MaxValueBytes == 0 {
		o.MaxValueBytes = 1 << 20
	}
	if o.CompressAbove == 0 {
		o.CompressAbove = 1024
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
}

// Store is the Redis tier of one namespace. Safe for concurrent use.
type Store struct {
	opts   Options
	prefix string
}

// New builds a Store over the caller's client; it does no I/O.
func New(opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &Store{opts: opts, prefix: opts.Namespace + ":v1:{"}, nil
}

// ValueKey is the Redis key holding key's value.
func (s *Store) ValueKey(key string) string { return s.prefix + key + "}" }

// LeaseKey is the Redis key holding key's fill lease.
func (s *Store) LeaseKey(key string) string { return s.prefix + key + "}:lease" }

// MaxValueBytes is the payload limit in force.
func (s *Store) MaxValueBytes() int { return s.opts.MaxValueBytes }

// Publication is an invalidation message to publish with a write.
type Publication struct {
	Channel string
	Message []byte
}

// NewToken returns a random lease token.
func NewToken() string {
	return strconv.FormatUint(rand.Uint64(), 36) + "." + strconv.FormatUint(rand.Uint64(), 36)
}

func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.opts.Timeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.Timeout)
}

func (s *Store) ttlMillis() string {
	ttl := s.opts.TTL
	if s.opts.TTLJitter > 0 {
		ttl -= time.Duration(rand.Float64() * s.opts.TTLJitter * float64(ttl))
	}
	return strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)
}

// Encode checks the size limit and returns the wire form of e.
func (s *Store) Encode(e *Envelope) ([]byte, error) {
	if len(e.Payload) > s.opts.MaxValueBytes {
		return nil, fmt.Errorf("%w: %d bytes over the %d limit", ErrTooLarge, len(e.Payload), s.opts.MaxValueBytes)
	}
	return e.encode(s.opts.CompressAbove), nil
}

func (s *Store) decode(b []byte) (Envelope, error) {
	return DecodeEnvelope(b, s.opts.MaxValueBytes)
}

// Get reads key's envelope: ErrMiss when absent, ErrCorrupt when unreadable.
func (s *Store) Get(ctx context.Context, key string) (Envelope, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	c := s.opts.Client
	b, err := c.Do(ctx, c.B().Get().Key(s.ValueKey(key)).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return Envelope{}, ErrMiss
	}
	if err != nil {
		return Envelope{}, err
	}
	return s.decode(b)
}

var getOrLease = rueidis.NewLuaScript(`
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0, 1} end
return {0, 0}
`)

// LeaseResult is what GetOrLease found.
type LeaseResult struct {
	Envelope Envelope
	Found    bool  // a readable value was present
	Corrupt  error // a value was present but unreadable (wraps ErrCorrupt)
	Leased   bool  // no value was present and the caller now holds the lease
}

// GetOrLease reads key and, when it is absent, takes its fill lease with
// token, in one round trip. A corrupt value is reported in Corrupt (not as
// an error) so the caller can treat it as a miss and take the lease with
// Lease.
func (s *Store) GetOrLease(ctx context.Context, key, token string) (LeaseResult, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	arr, err := getOrLease.Exec(ctx, s.opts.Client,
		[]string{s.ValueKey(key), s.LeaseKey(key)},
		[]string{token, strconv.FormatInt(s.opts.LeaseTTL.Milliseconds(), 10)}).ToArray()
	if err != nil {
		return LeaseResult{}, err
	}
	if len(arr) != 2 {
		return LeaseResult{}, fmt.Errorf("remote: GetOrLease: unexpected reply of %d elements", len(arr))
	}
	found, err := arr[0].AsInt64()
	if err != nil {
		return LeaseResult{}, err
	}
	if found == 0 {
		leased, err := arr[1].AsInt64()
		return LeaseResult{Leased: leased == 1}, err
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
func (s *Store) Lease(ctx context.Context, key, token string) (bool, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	c := s.opts.Client
	err := c.Do(ctx, c.B().Set().Key(s.LeaseKey(key)).Value(token).Nx().PxMilliseconds(s.opts.LeaseTTL.Milliseconds()).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil
	}
	return err == nil, err
}

var fillScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`)

// Fill writes a loaded value if the lease taken with token still holds,
// and releases the lease. It reports whether the value was written; false
// means a write (or lease expiry) came first and the loaded value may be
// older than what Redis now holds.
func (s *Store) Fill(ctx context.Context, key, token string, e *Envelope) (bool, error) {
	b, err := s.Encode(e)
	if err != nil {
		return false, err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	n, err := fillScript.Exec(ctx, s.opts.Client,
		[]string{s.ValueKey(key), s.LeaseKey(key)},
		[]string{token, string(b), s.ttlMillis()}).AsInt64()
	return n == 1, err
}

var setScript = rueidis.NewLuaScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

// Set writes key, voids any fill lease on it, and publishes p, atomically.
func (s *Store) Set(ctx context.Context, key string, e *Envelope, p Publication) error {
	b, err := s.Encode(e)
	if err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return setScript.Exec(ctx, s.opts.Client,
		[]string{s.ValueKey(key), s.LeaseKey(key)},
		[]string{string(b), s.ttlMillis(), p.Channel, string(p.Message)}).Error()
}

var deleteScript = rueidis.NewLuaScript(`
for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`)

// Delete removes keys and their fill leases and publishes p, atomically.
func (s *Store) Delete(ctx context.Context, keys []string, p Publication) error {
	rk := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		rk = append(rk, s.ValueKey(k), s.LeaseKey(k))
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return deleteScript.Exec(ctx, s.opts.Client, rk, []string{p.Channel, string(p.Message)}).Error()
}

// Publish sends a message on channel.
func (s *Store) Publish(ctx context.Context, p Publication) error {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	c := s.opts.Client
	return c.Do(ctx, c.B().Publish().Channel(p.Channel).Message(rueidis.BinaryString(p.Message)).Build()).Error()
}

// Found is one result of GetMany.
type Found struct {
	Envelope Envelope
	Err      error // ErrMiss, an ErrCorrupt, or nil
}

// GetMany reads keys with MGET (split by slot on a Cluster client). The
// result has one entry per key, in order.
func (s *Store) GetMany(ctx context.Context, keys []string) ([]Found, error) {
	rk := make([]string, len(keys))
	for i, k := range keys {
		rk[i] = s.ValueKey(k)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	m, err := rueidis.MGet(s.opts.Client, ctx, rk)
	if err != nil {
		return nil, err
	}
	out := make([]Found, len(keys))
	for i, k := range rk {
		msg, ok := m[k]
		if !ok || msg.IsNil() {
			out[i].Err = ErrMiss
			continue
		}
		b, err := msg.AsBytes()
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].Envelope, out[i].Err = s.decode(b)
	}
	return out, nil
}

var releaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Release gives up key's fill lease if token still holds it, so the next
// reader need not wait for it to expire. Errors are ignored: the lease
// expires by itself.
func (s *Store) Release(ctx context.Context, key, token string) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	releaseScript.Exec(ctx, s.opts.Client, []string{s.LeaseKey(key)}, []string{token})
}
