package warmup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/tiercache/tiercache/internal/carry"
)

// Options says what to preload and how. Zero values mean the defaults.
type Options[V any] struct {
	// Client reads the hot set and runs SCAN; required with TopN or
	// ScanMatch (use the cache's client).
	Client rueidis.Client
	// TopN preloads the hot set's N hottest keys. Default DefaultTopN;
	// negative reads no hot set.
	TopN int
	// Keys are preloaded as given.
	Keys []string
	// KeySource yields more keys, e.g. from a database query. It is read
	// within the budget too: a source still running when the budget ends
	// is left behind (Preload returns, with BudgetExceeded), and its
	// iteration stops at its next key.
	KeySource iter.Seq[string]
	// ScanMatch, when set, SCANs Redis for this namespace's keys matching
	// the glob (never KEYS).
	ScanMatch string
	// MaxKeys bounds the keys gathered from all sources. Default
	// DefaultMaxKeys.
	MaxKeys int
	// BatchSize is the keys per MGET. Default DefaultBatchSize.
	BatchSize int
	// Concurrency bounds the batches in flight. Default DefaultConcurrency.
	Concurrency int
	// Budget bounds the whole preload; past it, it stops and reports what
	// it did. Default DefaultBudget.
	Budget time.Duration
	// Load, when set, loads keys Redis lacks from the origin (through the
	// fleet-wide single flight), at most LoadRate keys per second.
	Load func(ctx context.Context, keys []string) (map[string]V, error)
	// LoadRate bounds origin loads, in keys per second: none at once more
	// than one second's worth, and none before their time (the first
	// second loads at most LoadRate keys, not a burst on top). Default
	// DefaultLoadRate; math.Inf(1) (or 2^30 and more) sets no limit.
	LoadRate float64
	// Progress, when set, is called after each batch.
	Progress func(Report)
}

// Report says what a preload did.
type Report struct {
	Requested      int           // keys gathered
	Found          int           // read from Redis into the local tier
	Loaded         int           // loaded from the origin
	Failed         int           // keys whose batch failed
	Bytes          int64         // local tier growth, in bytes
	Elapsed        time.Duration //
	BudgetExceeded bool          // stopped by the budget
}

// The defaults of Options.
const (
	DefaultTopN        = 1000
	DefaultMaxKeys     = 100_000
	DefaultBatchSize   = 500
	DefaultConcurrency = 4
	DefaultBudget      = 10 * time.Second
	DefaultLoadRate    = 500
)

func (o *Options[V]) validate() error {
	switch {
	case (o.TopN >= 0 || o.ScanMatch != "") && o.Client == nil:
		return fmt.Errorf("%w: Client is required to read the hot set or SCAN (a negative TopN reads none)", ErrInvalidOptions)
	case o.MaxKeys < 0 || o.BatchSize < 0 || o.Concurrency < 0 || o.Budget < 0 || o.LoadRate < 0:
		return fmt.Errorf("%w: MaxKeys, BatchSize, Concurrency, Budget and LoadRate must not be negative", ErrInvalidOptions)
	}
	return nil
}

func (o *Options[V]) setDefaults() {
	o.TopN = cmp.Or(o.TopN, DefaultTopN)
	o.MaxKeys = cmp.Or(o.MaxKeys, DefaultMaxKeys)
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatchSize)
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	o.Budget = cmp.Or(o.Budget, DefaultBudget)
	o.LoadRate = cmp.Or(o.LoadRate, DefaultLoadRate)
}

// Preload fills cache's local tier (and, with Load, Redis) from the
// configured sources, within the budget. The error reports a source that
// could not be read; the Report says what was done either way.
func Preload[V any](ctx context.Context, cache Cache[V], opts Options[V]) (Report, error) {
	start := time.Now()
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	opts.setDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Budget)
	defer cancel()
	costBefore := cache.Stats().LocalCost

	keys, gathered, gatherErr := gatherWithin(ctx, cache, &opts)
	rep := Report{Requested: len(keys), BudgetExceeded: !gathered}
	var limiter *rate.Limiter // nil: no limit
	if opts.Load != nil && opts.LoadRate < maxLoadRate {
		// One second's worth at once at most, and the bucket starts
		// empty: a burst would load that much more before its time.
		burst := max(1, int(opts.LoadRate))
		limiter = rate.NewLimiter(rate.Limit(opts.LoadRate), burst)
		limiter.AllowN(time.Now(), burst)
	}
	var mu sync.Mutex
	// A panic in a batch (a codec's) is carried to the caller's goroutine,
	// where its recover can see it: on the group's it would end the process.
	var panics carry.Panics
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for i := 0; i < len(keys) && gctx.Err() == nil; i += opts.BatchSize {
		batch := keys[i:min(i+opts.BatchSize, len(keys))]
		g.Go(func() (err error) {
			defer panics.Guard(&err)
			found, loaded, err := preloadBatch(gctx, cache, batch, &opts, limiter)
			mu.Lock()
			defer mu.Unlock()
			rep.Found += found
			rep.Loaded += loaded
			if err != nil {
				rep.Failed += len(batch) - found - loaded
				rep.BudgetExceeded = rep.BudgetExceeded || errors.Is(err, errOutOfBudget)
			}
			if opts.Progress != nil {
				p := rep
				p.Elapsed = time.Since(start)
				opts.Progress(p)
			}
			return nil // one failed batch does not stop the others
		})
	}
	g.Wait()
	panics.Raise()
	rep.Elapsed = time.Since(start)
	// By the clock, not only ctx.Err(): a Redis call can fail with its
	// deadline a moment before the context reports it.
	deadline, _ := ctx.Deadline()
	rep.BudgetExceeded = rep.BudgetExceeded || rep.Found+rep.Loaded < rep.Requested &&
		(errors.Is(ctx.Err(), context.DeadlineExceeded) || !time.Now().Before(deadline))
	rep.Bytes = max(cache.Stats().LocalCost-costBefore, 0)
	return rep, gatherErr
}

// maxLoadRate and above (math.Inf(1) included) is no limit at all.
const maxLoadRate = 1 << 30

// errOutOfBudget: loading more at LoadRate would take past the budget.
var errOutOfBudget = errors.New("warmup: the budget ends before LoadRate allows more loads")

func preloadBatch[V any](ctx context.Context, cache Cache[V], batch []string, opts *Options[V], limiter *rate.Limiter) (found, loaded int, err error) {
	found, missing, err := read(ctx, cache, batch)
	if err != nil || opts.Load == nil || len(missing) == 0 {
		return found, 0, err
	}
	if limiter == nil {
		more, err := cache.GetOrLoadMany(ctx, missing, opts.Load)
		return found, len(more), err
	}
	// In steps of a tenth of a second's worth, so loads flow from the start
	// (a whole second's worth would wait a second first).
	step := max(1, limiter.Burst()/10)
	for len(missing) > 0 {
		n := min(len(missing), step)
		if err := limiter.WaitN(ctx, n); err != nil {
			if ctx.Err() == nil { // the wait would outlast the budget
				err = errOutOfBudget
			}
			return found, loaded, err
		}
		more, err := cache.GetOrLoadMany(ctx, missing[:n], opts.Load)
		loaded += len(more)
		if err != nil {
			return found, loaded, err
		}
		missing = missing[n:]
	}
	return found, loaded, nil
}

// warmer is a Cache that reads a batch into its local tier without
// returning it (tiered.Cache.Warm, which also skips the local look-up a
// fresh replica has no use for): a preload's fast path.
type warmer interface {
	Warm(ctx context.Context, keys []string) (found int, missing []string, err error)
}

// read reads batch into cache's local tier, and returns how many keys it
// found and the keys it did not.
func read[V any](ctx context.Context, cache Cache[V], batch []string) (found int, missing []string, err error) {
	if w, ok := cache.(warmer); ok {
		return w.Warm(ctx, batch)
	}
	got, err := cache.GetMany(ctx, batch)
	for _, k := range batch {
		if _, ok := got[k]; !ok {
			missing = append(missing, k)
		}
	}
	return len(got), missing, err
}

// gatherWithin is gather bounded by ctx (the budget): a KeySource cannot
// be told to stop, so it is read on a goroutine of its own and left
// behind when ctx ends first (gathered false); it stops at its next key.
func gatherWithin[V any](ctx context.Context, cache Cache[V], opts *Options[V]) (keys []string, gathered bool, err error) {
	type result struct {
		keys []string
		err  error
	}
	done := make(chan result, 1)
	var left atomic.Bool
	// A KeySource's (or Cache's) panic is raised on the caller's
	// goroutine, where it can be recovered (Start turns it into the
	// warm-up's error); on this one it would end the process.
	var panics carry.Panics
	go func() {
		var r result
		defer func() { done <- r }()
		defer panics.Guard(&r.err)
		r.keys, r.err = gather(ctx, cache, opts, &left)
	}()
	select {
	case r := <-done:
		panics.Raise()
		return r.keys, true, r.err
	case <-ctx.Done():
		left.Store(true)
		return nil, false, fmt.Errorf("warmup: gathering keys: %w", ctx.Err())
	}
}

// gather collects the keys of every source, deduplicated, up to MaxKeys,
// until left is set.
func gather[V any](ctx context.Context, cache Cache[V], opts *Options[V], left *atomic.Bool) ([]string, error) {
	seen := make(map[string]struct{})
	var keys []string
	add := func(k string) bool {
		if len(keys) >= opts.MaxKeys || left.Load() {
			return false
		}
		if _, dup := seen[k]; !dup && k != "" {
			seen[k] = struct{}{}
			keys = append(keys, k)
		}
		return true
	}
	var errs []error
	if opts.TopN > 0 {
		// No more than MaxKeys: the rest would be read only to be dropped.
		top, err := Top(ctx, opts.Client, cache.Namespace(), min(opts.TopN, opts.MaxKeys))
		errs = append(errs, err)
		for _, s := range top {
			add(s.Key)
		}
	}
	for _, k := range opts.Keys {
		add(k)
	}
	if opts.KeySource != nil {
		for k := range opts.KeySource {
			if !add(k) || ctx.Err() != nil {
				break
			}
		}
	}
	if opts.ScanMatch != "" {
		errs = append(errs, scan(ctx, cache, opts.ScanMatch, add))
	}
	return keys, errors.Join(errs...)
}

// scan walks the namespace's keys in Redis matching glob until add
// refuses more.
func scan[V any](ctx context.Context, cache Cache[V], glob string, add func(string) bool) error {
	for k, err := range cache.Keys(ctx, glob) {
		if err != nil {
			return fmt.Errorf("warmup: %w", err)
		}
		if !add(k) {
			return nil
		}
	}
	return nil
}
