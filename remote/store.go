package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"
)

// ErrMiss reports a key absent from Redis.
var ErrMiss = errors.New("remote: miss")

// ErrInvalidOptions is returned by New for options that cannot work (and
// by Inspect for a nil client or an empty namespace).
var ErrInvalidOptions = errors.New("remote: invalid options")

// Options configures a Store. Zero values mean the documented defaults.
type Options struct {
	// Client is the caller's rueidis client. Required.
	Client rueidis.Client
	// Namespace prefixes every key. Required.
	Namespace string
	// TTL is how long values live in Redis. Required.
	TTL time.Duration
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
	// BreakerThreshold is how many consecutive failures (timeouts,
	// connection errors) open the circuit breaker. Default 5.
	BreakerThreshold int
	// BreakerCooldown is how long the breaker stays open before one probe
	// is let through. Default 1s.
	BreakerCooldown time.Duration
	// OnBreakerChange is told of every breaker state change ("closed",
	// "half-open", "open"). It must not block.
	OnBreakerChange func(from, to string)
	// WaitReplicas, when positive, makes Set, Delete, SetQueued and
	// BumpGeneration wait (WAIT) until that many replicas have the write,
	// or fail with ErrNotReplicated after WaitTimeout. Default 0: off.
	WaitReplicas int
	// WaitTimeout bounds that wait. Default half of Timeout.
	WaitTimeout time.Duration
	// InvalidationLog, when positive, appends every published message to
	// the namespace's invalidation log, capped at about this many entries
	// (see invlog.go). Default 0: off.
	InvalidationLog int
	// InvalidationLogAge is how long a Redis Cluster's per-slot
	// invalidation logs keep a message (a slot's log also expires after
	// this long without writes). Default 30s; unused on a single Redis.
	InvalidationLogAge time.Duration
	// GenerationMessage is the invalidation published, in the same script,
	// when the store moves the namespace to a new generation (whose
	// generation key value it is given; see generation.go). Default: none.
	GenerationMessage func(value string) Publication
	// WakeMessage is the invalidation of key that wakes the replicas
	// waiting for its fill, when a Fill (or a FillMany item) is given no
	// Publication of its own: built only when a waiter's marker was
	// there, which is rare, rather than for every fill. (Release takes
	// its Publication from the caller, as before.) Default: none (waiters
	// then look again by their own timers).
	WakeMessage func(key string) Publication
	// OnGeneration is told when Settle (or a fenced script refused under a
	// generation Redis no longer holds) moved the store: every value read
	// under the old generation must be dropped. It runs on the calling
	// goroutine and must not block.
	OnGeneration func(GenerationChange)
	// Warn is told, once per kind, of a problem the store works around
	// (an ACL that refuses INFO, say). Optional.
	Warn func(kind, msg string, err error)
}

func (o *Options) validate() error {
	switch {
	case o.Client == nil:
		return fmt.Errorf("%w: Client is nil", ErrInvalidOptions)
	case o.Namespace == "":
		return fmt.Errorf("%w: Namespace is empty", ErrInvalidOptions)
	case o.TTL <= 0:
		return fmt.Errorf("%w: TTL %v must be positive", ErrInvalidOptions, o.TTL)
	case o.LeaseTTL < 0:
		return fmt.Errorf("%w: LeaseTTL %v < 0", ErrInvalidOptions, o.LeaseTTL)
	case o.MaxValueBytes < 0:
		return fmt.Errorf("%w: MaxValueBytes %d < 0", ErrInvalidOptions, o.MaxValueBytes)
	case o.Timeout < 0:
		return fmt.Errorf("%w: Timeout %v < 0", ErrInvalidOptions, o.Timeout)
	case o.WaitReplicas < 0 || o.WaitTimeout < 0:
		return fmt.Errorf("%w: WaitReplicas and WaitTimeout must not be negative", ErrInvalidOptions)
	case o.BreakerThreshold < 0 || o.BreakerCooldown < 0:
		return fmt.Errorf("%w: BreakerThreshold and BreakerCooldown must not be negative", ErrInvalidOptions)
	case o.InvalidationLog < 0 || o.InvalidationLogAge < 0:
		return fmt.Errorf("%w: InvalidationLog and InvalidationLogAge must not be negative", ErrInvalidOptions)
	case o.InvalidationLogAge > 0 && o.InvalidationLogAge < time.Millisecond:
		return fmt.Errorf("%w: InvalidationLogAge %v is under a millisecond", ErrInvalidOptions, o.InvalidationLogAge)
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
	if o.WaitTimeout == 0 || o.WaitTimeout >= o.Timeout {
		// WAIT must end before the call's deadline does.
		o.WaitTimeout = o.Timeout / 2
	}
	if o.BreakerThreshold == 0 {
		o.BreakerThreshold = 5
	}
	if o.BreakerCooldown == 0 {
		o.BreakerCooldown = time.Second
	}
	if o.InvalidationLogAge == 0 {
		o.InvalidationLogAge = 30 * time.Second
	}
	if o.WakeMessage == nil {
		o.WakeMessage = func(string) Publication { return Publication{} }
	}
	if o.GenerationMessage == nil {
		o.GenerationMessage = func(string) Publication { return Publication{} }
	}
}

// Store is the Redis tier of one namespace. Safe for concurrent use.
type Store struct {
	opts         Options
	breaker      atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
	breakerOpens atomic.Uint64
	health       health
	ops          [numOps]opCounters
	genKey       string
	cluster      bool // a Redis Cluster client: multi-key scripts stay within a slot
	fenced       bool // scripts check the generation key (not on a Cluster)
	state        atomic.Pointer[genState]
	settling     sync.Mutex // one settle at a time
	noRunID      atomic.Bool
	lost         lostCounters
	warned       sync.Map    // kinds Warn was told of
	queueSeen    atomic.Bool // ReadQueue found the queue's group
	deadlines    *deadlines
	leaseMillis  string // Options.LeaseTTL, for PX
}

// New builds a Store over the caller's client; it does no I/O. Its first
// Settle (or its first write, on a single Redis) picks up the namespace's
// current generation, creating one if there is none.
func New(opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	cluster := opts.Client.Mode() == rueidis.ClientModeCluster
	s := &Store{opts: opts, genKey: generationKey(opts.Namespace), cluster: cluster, fenced: !cluster, deadlines: newDeadlines(opts.Timeout),
		leaseMillis: strconv.FormatInt(opts.LeaseTTL.Milliseconds(), 10)}
	s.breaker.Store(newBreaker(&s.opts, &s.breakerOpens))
	s.health.v.Store(1) // a new breaker is closed with no failure counted
	s.setState(0, "")
	return s, nil
}

// warn tells Options.Warn of a problem, once per kind.
func (s *Store) warn(kind, msg string, err error) {
	if _, seen := s.warned.LoadOrStore(kind, true); !seen && s.opts.Warn != nil {
		s.opts.Warn(kind, msg, err)
	}
}

// ValueKey is the Redis key holding key's value.
func (s *Store) ValueKey(key string) string { return s.state.Load().prefix + "{" + key + "}" }

// KeyOf returns the key whose value Redis holds under redisKey, if
// redisKey is a value key of the store's current generation.
func (s *Store) KeyOf(redisKey string) (string, bool) {
	rest, ok := strings.CutPrefix(redisKey, s.state.Load().prefix+"{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return "", false
	}
	return rest[:len(rest)-1], true
}

// Scan is one step of a SCAN walk of the value keys whose cache key
// matches glob, from cursor (0 to begin; the entry's Cursor is 0 at the
// end). Like every call of the store it is bounded by Options.Timeout
// and the breaker: a walk on a Redis that stopped answering ends.
func (s *Store) Scan(ctx context.Context, cursor uint64, glob string) (_ rueidis.ScanEntry, err error) {
	ctx, inf, err := s.begin(ctx, OpScan)
	if err != nil {
		return rueidis.ScanEntry{}, err
	}
	defer inf.end(&err)
	c := s.opts.Client
	pattern := escapeGlob(s.state.Load().prefix) + "{" + glob + "}"
	return c.Do(ctx, c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
}

// escapeGlob quotes the characters special to Redis's glob in s (a
// namespace may hold them: "a*" must not match namespace "ab"'s keys).
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := range len(s) { // bytes: a namespace need not be UTF-8
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// leaseKey is the Redis key holding key's fill lease.
func (s *Store) leaseKey(key string) string { return s.state.Load().prefix + "{" + key + "}:lease" }

// keys returns the value, lease and wait keys of key in generation g.
func (g *genState) keys(key string) []string {
	// One string holds the three names (a miss names them in two calls),
	// and the slice has room for the log and fence keys prepare adds.
	n := len(g.prefix) + len(key) + 2
	all := g.prefix + "{" + key + "}" + g.prefix + "{" + key + "}:lease" + g.prefix + "{" + key + "}:wait"
	out := make([]string, 3, 5)
	out[0], out[1], out[2] = all[:n], all[n:2*n+len(":lease")], all[2*n+len(":lease"):]
	return out
}

// MaxValueBytes is the payload limit in force.
func (s *Store) MaxValueBytes() int { return s.opts.MaxValueBytes }

// Publication is an invalidation message to publish with a write. Message
// is sent without a copy (a call abandoned by its ctx may still send it):
// do not change it once passed.
type Publication struct {
	Channel string
	Message []byte
}

// ttlMillis is ttl (the store's TTL when zero), in ms, rounded up: Redis
// must not drop a value before the expiry its envelope states, which the
// local tiers keep to (rounded down, a copy outlived Redis's by up to a
// millisecond). Jitter is the caller's: it stamps the envelope with the
// expiry it chose.
func (s *Store) ttlMillis(ttl time.Duration) string {
	if ttl <= 0 {
		ttl = s.opts.TTL
	}
	return strconv.FormatInt(max((ttl+time.Millisecond-1).Milliseconds(), 1), 10)
}

// Encode checks the size limit and returns the wire form of e.
func (s *Store) Encode(e *Envelope) ([]byte, error) {
	if len(e.Payload) > s.opts.MaxValueBytes {
		return nil, fmt.Errorf("%w: %d bytes over the %d limit", ErrTooLarge, len(e.Payload), s.opts.MaxValueBytes)
	}
	if len(e.Tags) > MaxTags {
		return nil, fmt.Errorf("%w: %d tags, at most %d", ErrTooLarge, len(e.Tags), MaxTags)
	}
	for _, t := range e.Tags {
		if len(t.Tag) > MaxTagBytes || len(t.Version) > MaxTagBytes {
			return nil, fmt.Errorf("%w: a tag or version of %d bytes, at most %d", ErrTooLarge, max(len(t.Tag), len(t.Version)), MaxTagBytes)
		}
	}
	return e.encode(s.opts.CompressAbove), nil
}

// decode decodes b, a view of a reply's string (rueidis's AsBytes), which
// nothing ever changes: its payload may be shared (Envelope.Unmarshal).
func (s *Store) decode(b []byte) (Envelope, error) {
	e, err := DecodeEnvelope(b, s.opts.MaxValueBytes)
	e.immutable = err == nil
	return e, err
}

// Get reads key's envelope: ErrMiss when absent, ErrCorrupt when unreadable.
func (s *Store) Get(ctx context.Context, key string) (_ Envelope, err error) {
	ctx, inf, err := s.begin(ctx, OpGet)
	if err != nil {
		return Envelope{}, err
	}
	defer inf.end(&err)
	c := s.opts.Client
	res := c.Do(ctx, s.getOnce(s.ValueKey(key)))
	// A connection found closed as the GET was written (a network cut
	// since the last call), or that reads EOF (closed by a Redis that has
	// restarted since), never had the GET answered, and rueidis retires it
	// and dials anew for the next call. It keeps several connections, each
	// found dead only when used: so try again, a few times at most, each
	// failing at once, to tell a cut that has healed, or a Redis that is
	// back, from a Redis that is down. (A GET is safe to send twice.)
	for try := 0; try < maxDeadConnections && deadConnection(res.Error()) && ctx.Err() == nil; try++ {
		res = c.Do(ctx, s.getOnce(s.ValueKey(key)))
	}
	b, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return Envelope{}, ErrMiss
	}
	if err != nil {
		return Envelope{}, err
	}
	e, err := s.decode(b)
	if err != nil {
		return Envelope{}, err
	}
	return s.checkTags(ctx, e)
}

var setScript = newScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
publish(ARGV[3], ARGV[4])
return 1
`)

// Set writes key, voids any fill lease on it, and publishes p, atomically.
func (s *Store) Set(ctx context.Context, key string, e *Envelope, p Publication) (err error) {
	b, err := s.Encode(e)
	if err != nil {
		return err
	}
	ctx, inf, err := s.begin(ctx, OpSet)
	if err != nil {
		return err
	}
	defer inf.end(&err)
	ttl := s.ttlMillis(e.TTL())
	return s.exec(ctx, setScript, func(g *genState) call {
		// b and the message are fresh and never changed: sent without a copy.
		return call{keys: g.keys(key)[:2], args: []string{rueidis.BinaryString(b), ttl, p.Channel, rueidis.BinaryString(p.Message)}, write: true}
	}).Error()
}

var deleteScript = newScript(`
for i = 1, nkeys do redis.call('DEL', KEYS[i]) end
if ARGV[1] ~= '' then publish(ARGV[1], ARGV[2]) end
return 1
`)

// Delete removes keys and their fill leases and publishes p, atomically.
//
// On a Cluster client the keys are deleted one hash slot at a time (a
// script may only touch one slot), and p is published with the last
// group: when a replica hears it, every key is already gone.
func (s *Store) Delete(ctx context.Context, keys []string, p Publication) (err error) {
	ctx, inf, err := s.begin(ctx, OpDelete)
	if err != nil {
		return err
	}
	defer inf.end(&err)
	groups := s.bySlot(keys, func(k string) string { return "{" + k + "}" })
	for i, g := range groups {
		pub := Publication{}
		if i == len(groups)-1 {
			pub = p
		}
		err := s.exec(ctx, deleteScript, func(gen *genState) call {
			rk := make([]string, 0, 2*len(g))
			for _, k := range g {
				rk = append(rk, gen.keys(k)[:2]...)
			}
			return call{keys: rk, args: []string{pub.Channel, string(pub.Message)}, write: true}
		}).Error()
		if err != nil {
			return err
		}
	}
	return nil
}

// Cluster reports whether the store talks to a Redis Cluster.
func (s *Store) Cluster() bool { return s.cluster }

// Found is one result of GetMany.
type Found struct {
	Envelope Envelope
	Err      error // ErrMiss, an ErrCorrupt, or nil
}

// GetMany reads keys with MGET (split by slot on a Cluster client). The
// result has one entry per key, in order.
func (s *Store) GetMany(ctx context.Context, keys []string) (_ []Found, err error) {
	rk := make([]string, len(keys))
	for i, k := range keys {
		rk[i] = s.ValueKey(k)
	}
	ctx, inf, err := s.begin(ctx, OpMGet)
	if err != nil {
		return nil, err
	}
	defer inf.end(&err)
	msgs, err := s.mget(ctx, rk)
	if err != nil {
		return nil, err
	}
	out := make([]Found, len(keys))
	for i := range rk {
		msg := msgs[i]
		if msg == nil || msg.IsNil() {
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
	var tagged []*Envelope
	var at []int
	for i := range out {
		if out[i].Err == nil && len(out[i].Envelope.Tags) > 0 {
			tagged, at = append(tagged, &out[i].Envelope), append(at, i)
		}
	}
	if len(tagged) > 0 {
		valid, err := s.tagsValid(ctx, tagged)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			if !valid[j] {
				out[i] = Found{Err: errTagInvalidated}
			}
		}
	}
	return out, nil
}

// mget reads rk, one message per key in order (nil for a key the reply
// lacks). Outside a Cluster it is one MGET read by position: rueidis.MGet
// would also build a map of the replies by key, which cost a warm-up more
// than the rest of reading them. On a Cluster, rueidis.MGet splits the
// keys by slot.
func (s *Store) mget(ctx context.Context, rk []string) ([]*rueidis.RedisMessage, error) {
	out := make([]*rueidis.RedisMessage, len(rk))
	if len(rk) == 0 {
		return out, nil
	}
	if s.cluster {
		m, err := rueidis.MGet(s.opts.Client, ctx, rk)
		if err != nil {
			return nil, err
		}
		for i, k := range rk {
			if msg, ok := m[k]; ok {
				out[i] = &msg
			}
		}
		return out, nil
	}
	cl := s.opts.Client
	arr, err := cl.Do(ctx, cl.B().Mget().Key(rk...).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	for i := range min(len(arr), len(rk)) {
		out[i] = &arr[i]
	}
	return out, nil
}

// deadConnection reports whether err is a connection's found dead: closed
// locally, or by the server (EOF).
func deadConnection(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

// maxDeadConnections bounds the retries of a read over connections found
// closed: rueidis keeps 2^PipelineMultiplex of them, at most 4 unless
// ClientOption.PipelineMultiplex asks for more (then a read right after a
// cut may still fail, as any read of an unreachable Redis does).
const maxDeadConnections = 8

// getOnce is GET without rueidis's retries: rueidis retries a read-only
// command on a connection error until its ctx ends, which would make a
// read of a Redis that is down wait out the whole timeout instead of
// failing open at once (the breaker then takes over).
func (s *Store) getOnce(redisKey string) rueidis.Completed {
	return s.opts.Client.B().Arbitrary("GET").Keys(redisKey).Build()
}
