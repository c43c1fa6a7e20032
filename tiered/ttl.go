package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// MaxTTL is the longest TTL WithTTL and SetTTL accept.
const MaxTTL = 365 * 24 * time.Hour

// ErrInvalidTTL: a TTL given to WithTTL or SetTTL is not positive or is
// over MaxTTL.
var ErrInvalidTTL = errors.New("tiered: invalid TTL")

// WithTTL makes the value this call writes (Set, SetBehind, or the load of
// GetOrLoad, GetOrLoadMany or a read-through Get) live d in Redis, and
// min(LocalTTL, d) in the local tier, instead of RemoteTTL; jitter
// (Options.TTLJitter) still applies. A loader's own SetTTL takes
// precedence. d must be in (0, MaxTTL], or the call fails with
// ErrInvalidTTL. Tombstones keep Options.NegativeTTL unless the loader
// says otherwise.
func WithTTL(d time.Duration) CallOption {
	return func(o *callOptions) { o.ttl, o.hasTTL = d, true }
}

func checkTTL(d time.Duration) error {
	if d <= 0 || d > MaxTTL {
		return fmt.Errorf("%w: %v not in (0, %v]", ErrInvalidTTL, d, MaxTTL)
	}
	return nil
}

// ErrNotInLoad: SetTTL was given a context that is not a loader's.
var ErrNotInLoad = errors.New("tiered: SetTTL outside a loader")

// SetTTL, called by a loader with the ctx it was given, sets how long what
// it returns lives: its value (d in Redis, min(LocalTTL, d) locally, with
// jitter), or the tombstone when it returns ErrNotFound (instead of
// Options.NegativeTTL). A loader knows best how long a row stays true: a
// session's expiry, a price's validity. With keys, a GetOrLoadMany loader
// sets the TTL of those keys only; without, of every key it returns. It
// takes precedence over WithTTL. It fails with ErrInvalidTTL for d outside
// (0, MaxTTL], and with ErrNotInLoad when ctx is not a loader's.
func SetTTL(ctx context.Context, d time.Duration, keys ...string) error {
	if err := checkTTL(d); err != nil {
		return err
	}
	s, ok := ctx.Value(loadTTLKey{}).(*loadTTL)
	if !ok {
		return ErrNotInLoad
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(keys) == 0 {
		s.all = d
		return nil
	}
	if s.keys == nil {
		s.keys = make(map[string]time.Duration, len(keys))
	}
	for _, k := range keys {
		s.keys[k] = d
	}
	return nil
}

type loadTTLKey struct{}

// loadTTL is where a loader's SetTTL calls land: one per load, put in the
// ctx the loader is given. A loader may call SetTTL from goroutines of its
// own, hence the lock.
type loadTTL struct {
	mu   sync.Mutex
	all  time.Duration
	keys map[string]time.Duration
}

// withLoadTTL gives a loader's ctx a place for SetTTL.
func withLoadTTL(ctx context.Context) (context.Context, *loadTTL) {
	s := &loadTTL{}
	return context.WithValue(ctx, loadTTLKey{}, s), s
}

// of is the TTL the loader set for key, or 0.
func (s *loadTTL) of(key string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.keys[key]; ok {
		return d
	}
	return s.all
}

// valueTTL is the Redis TTL of a value written now: the loader's, else the
// call's, else RemoteTTL; jittered.
func (c *Cache[V]) valueTTL(loaderTTL time.Duration, co callOptions) time.Duration {
	switch {
	case loaderTTL > 0:
		return c.jitter(loaderTTL)
	case co.hasTTL:
		return c.jitter(co.ttl)
	}
	return c.jitter(c.opts.RemoteTTL)
}

// tombstoneTTL is the Redis TTL of a tombstone: the loader's, else
// NegativeTTL; jittered.
func (c *Cache[V]) tombstoneTTL(loaderTTL time.Duration) time.Duration {
	if loaderTTL > 0 {
		return c.jitter(loaderTTL)
	}
	return c.jitter(c.opts.NegativeTTL)
}
