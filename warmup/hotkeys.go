package warmup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ErrInvalidOptions is returned for options that cannot work.
var ErrInvalidOptions = errors.New("warmup: invalid options")

// HotKey is the Redis sorted set holding a namespace's hot keys.
func HotKey(namespace string) string { return namespace + ":v1:hot" }

func decayKey(namespace string) string { return namespace + ":v1:hot:decay" }

// HotKeysOptions configures a HotKeys. Zero values mean the defaults.
type HotKeysOptions struct {
	// Client is the caller's rueidis client. Required.
	Client rueidis.Client
	// Namespace is the cache's namespace. Required.
	Namespace string
	// PushInterval is how often counts are merged into Redis. Default
	// DefaultPushInterval.
	PushInterval time.Duration
	// MaxPending bounds the distinct keys counted between pushes; samples
	// of further keys are dropped until the next push. Default
	// DefaultMaxPending.
	MaxPending int
	// MaxKeys bounds the hot set in Redis. Default DefaultMaxHotKeys.
	MaxKeys int
	// HalfLife is how fast old counts fade: once per HalfLife, one replica
	// of the fleet halves every score. Default DefaultHalfLife.
	HalfLife time.Duration
	// Timeout bounds each push. Default DefaultPushTimeout.
	Timeout time.Duration
}

// The defaults of HotKeysOptions.
const (
	DefaultPushInterval = 10 * time.Second
	DefaultMaxPending   = 10_000
	DefaultMaxHotKeys   = 10_000
	DefaultHalfLife     = 10 * time.Minute
	DefaultPushTimeout  = 2 * time.Second
)

func (o *HotKeysOptions) validate() error {
	switch {
	case o.Client == nil || o.Namespace == "":
		return fmt.Errorf("%w: Client and Namespace are required", ErrInvalidOptions)
	case o.PushInterval < 0 || o.MaxPending < 0 || o.MaxKeys < 0 || o.HalfLife < 0 || o.Timeout < 0:
		return fmt.Errorf("%w: PushInterval, MaxPending, MaxKeys, HalfLife and Timeout must not be negative", ErrInvalidOptions)
	case o.HalfLife > 0 && o.HalfLife < time.Millisecond:
		// Its marker's PX would be 0, which Redis refuses: every push
		// failed before its trim, and the hot set grew without bound.
		return fmt.Errorf("%w: HalfLife %v is under 1ms", ErrInvalidOptions, o.HalfLife)
	}
	return nil
}

func (o *HotKeysOptions) setDefaults() {
	o.PushInterval = cmp.Or(o.PushInterval, DefaultPushInterval)
	o.MaxPending = cmp.Or(o.MaxPending, DefaultMaxPending)
	o.MaxKeys = cmp.Or(o.MaxKeys, DefaultMaxHotKeys)
	o.HalfLife = cmp.Or(o.HalfLife, DefaultHalfLife)
	o.Timeout = cmp.Or(o.Timeout, DefaultPushTimeout)
}

// HotKeys counts sampled reads and merges them into the fleet's hot set.
// It implements tiered.Sampler. Close it when done.
type HotKeys struct {
	opts    HotKeysOptions
	mu      sync.Mutex
	counts  map[string]uint32
	dropped atomic.Uint64
	pushed  atomic.Uint64
	errs    atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
	closed  sync.Once
}

// NewHotKeys starts counting; it pushes the counts every PushInterval.
func NewHotKeys(opts HotKeysOptions) (*HotKeys, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	t := &HotKeys{opts: opts, counts: map[string]uint32{}, cancel: cancel, done: make(chan struct{})}
	go t.loop(ctx)
	return t, nil
}

// Sample counts one sampled read of key. It does no I/O.
func (t *HotKeys) Sample(key string) {
	t.mu.Lock()
	if n, ok := t.counts[key]; ok || len(t.counts) < t.opts.MaxPending {
		t.counts[key] = n + 1
	} else {
		t.dropped.Add(1)
	}
	t.mu.Unlock()
}

func (t *HotKeys) loop(ctx context.Context) {
	defer close(t.done)
	tick := time.NewTicker(t.opts.PushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Push(ctx)
		}
	}
}

// trimScript halves the hot set's scores when ARGV[1] is '1' and trims it
// to ARGV[2] keys. It touches the hot set alone: on a Redis Cluster the
// half-life marker is in another slot, taken by a command of its own.
var trimScript = rueidis.NewLuaScript(`
if ARGV[1] == '1' then
  redis.call('ZUNIONSTORE', KEYS[1], 1, KEYS[1], 'WEIGHTS', '0.5')
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '0.5')
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))
return 1
`)

// Push merges the counts gathered since the last push into Redis now,
// halving the fleet's scores when a half-life has passed (once for the
// whole fleet) and trimming the set to MaxKeys.
func (t *HotKeys) Push(ctx context.Context) error {
	t.mu.Lock()
	counts := t.counts
	t.counts = make(map[string]uint32, len(counts))
	t.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	c := t.opts.Client
	hot := HotKey(t.opts.Namespace)
	cmds := make(rueidis.Commands, 0, len(counts)+1)
	for k, n := range counts {
		cmds = append(cmds, c.B().Zincrby().Key(hot).Increment(float64(n)).Member(k).Build())
	}
	// The half-life marker: the push that sets it halves the scores, once
	// for the fleet. (A push that dies between taking it and halving skips
	// one halving: harmless.)
	cmds = append(cmds, c.B().Set().Key(decayKey(t.opts.Namespace)).Value("1").Nx().PxMilliseconds(t.opts.HalfLife.Milliseconds()).Build())
	halve := "0"
	for i, r := range c.DoMulti(ctx, cmds...) {
		err := r.Error()
		if i == len(cmds)-1 {
			if err == nil {
				halve = "1"
			} else if rueidis.IsRedisNil(err) {
				err = nil // taken within the half-life: no halving
			}
		}
		if err != nil {
			t.errs.Add(1)
			return fmt.Errorf("warmup: push hot keys: %w", err)
		}
	}
	err := trimScript.Exec(ctx, c, []string{hot}, []string{halve, strconv.Itoa(t.opts.MaxKeys)}).Error()
	if err != nil {
		t.errs.Add(1)
		return fmt.Errorf("warmup: trim hot keys: %w", err)
	}
	t.pushed.Add(uint64(len(counts)))
	return nil
}

// HotKeysStats counts what a tracker did.
type HotKeysStats struct {
	Pushed  uint64 // key counts merged into Redis
	Dropped uint64 // samples dropped: MaxPending distinct keys reached
	Errors  uint64 // failed pushes
}

// Stats returns the counters.
func (t *HotKeys) Stats() HotKeysStats {
	return HotKeysStats{Pushed: t.pushed.Load(), Dropped: t.dropped.Load(), Errors: t.errs.Load()}
}

// Close stops counting after a last push (bounded by Timeout).
func (t *HotKeys) Close() {
	t.closed.Do(func() {
		t.cancel()
		<-t.done
		t.Push(context.Background())
	})
}

// Scored is a hot key and its score.
type Scored struct {
	Key   string
	Score float64
}

// Top returns the namespace's n hottest keys, hottest first.
func Top(ctx context.Context, c rueidis.Client, namespace string, n int) ([]Scored, error) {
	if n <= 0 {
		return nil, nil
	}
	zs, err := c.Do(ctx, c.B().Zrange().Key(HotKey(namespace)).Min("0").Max(strconv.Itoa(n-1)).Rev().Withscores().Build()).AsZScores()
	if err != nil {
		return nil, fmt.Errorf("warmup: read hot keys: %w", err)
	}
	out := make([]Scored, len(zs))
	for i, z := range zs {
		out[i] = Scored{Key: z.Member, Score: z.Score}
	}
	return out, nil
}
