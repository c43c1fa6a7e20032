package remote

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

// The namespace generation is part of every key: bumping it makes every
// existing key of the namespace unreachable at once (they expire by their
// TTL), with no KEYS, SCAN or FLUSH.

// Generation is the generation the store's keys use now.
func (s *Store) Generation() int64 { return s.gen.Load() }

// UseGeneration moves the store to generation g if g is newer.
func (s *Store) UseGeneration(g int64) {
	for {
		cur := s.gen.Load()
		if g <= cur {
			return
		}
		if s.gen.CompareAndSwap(cur, g) {
			s.storePrefix(g)
			return
		}
	}
}

// LoadGeneration reads the namespace's current generation from Redis and
// moves the store to it.
func (s *Store) LoadGeneration(ctx context.Context) (_ int64, err error) {
	ctx, done, err := s.begin(ctx, OpGeneration)
	if err != nil {
		return s.Generation(), err
	}
	defer done(&err)
	c := s.opts.Client
	g, err := c.Do(ctx, c.B().Get().Key(s.genKey).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		g, err = 0, nil
	}
	if err != nil {
		return s.Generation(), err
	}
	s.UseGeneration(g)
	return s.Generation(), nil
}

var bumpScript = newWriteScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur + 1 ~= tonumber(ARGV[1]) then return cur end
redis.call('SET', KEYS[1], ARGV[1])
publish(ARGV[2], ARGV[3])
return -1
`)

// BumpGeneration moves the namespace to its next generation and publishes
// the message publish(next) in the same script. The message names the new
// generation, so it is built for each attempt of the compare-and-set.
func (s *Store) BumpGeneration(ctx context.Context, publish func(next int64) Publication) (_ int64, err error) {
	ctx, done, err := s.begin(ctx, OpGeneration)
	if err != nil {
		return 0, err
	}
	defer done(&err)
	next := s.Generation() + 1
	for {
		p := publish(next)
		keys, args := s.withLog([]string{s.genKey}, []string{strconv.FormatInt(next, 10), p.Channel, string(p.Message)})
		cur, err := s.run(ctx, bumpScript, keys, args).AsInt64()
		if err != nil {
			return 0, err
		}
		if cur == -1 {
			s.UseGeneration(next)
			return next, nil
		}
		next = cur + 1
	}
}

// GenerationKey is the Redis key holding the namespace's generation.
func (s *Store) GenerationKey() string { return s.genKey }
