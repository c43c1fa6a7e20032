package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The namespace generation is part of every key: moving to a new one makes
// every existing key of the namespace unreachable at once (they expire by
// their TTL), with no KEYS, SCAN or FLUSH.
//
// Redis forgets: an eviction, an empty restart or a failover to a replica
// that missed the last writes can lose the generation key or turn it back.
// So a generation is never derived from what the key holds alone:
//
//   - a new generation is max(now in ms, the newest the caller knows + 1,
//     the stored one + 1), set by compare-and-set, so generations are unique
//     and increasing by construction and never move backwards, whatever was
//     lost;
//   - the key's value is "<generation>@<run id>": the run id of the Redis
//     process that held it when it was set. A store that finds the key
//     missing, older than the generation it uses, or set under another
//     Redis process (a restart, which may have lost writes, or a failover)
//     moves the namespace to a new generation and publishes it, so every
//     replica drops what Redis may no longer back; one that finds it newer
//     follows it;
//   - on a single Redis (or Sentinel) every script that writes a
//     generation's keys is fenced by the key's value (script.go), so nothing
//     is written among the keys of a generation Redis no longer holds. A
//     Cluster cannot fence (the key lives in one slot); there the caller
//     settles the generation at every gap and every ping interval.
//
// Settle is the one place that compares and moves.

// genState is the generation a store's keys use now.
type genState struct {
	gen    int64
	value  string // the generation key's value it was read or set as; "" before the first settle
	prefix string // "<namespace>:v1:g<gen>:"
}

// fenceValue is what fenced scripts compare the generation key with. A
// store that never settled fences with a value no key holds, so its first
// write settles it.
func (g *genState) fenceValue() string {
	if g.value == "" {
		return "?"
	}
	return g.value
}

// maxGeneration bounds the generations a store reads or makes. They are
// milliseconds since the epoch, or one past the newest seen, so one at or
// beyond it (some 146 million years on) is another program's, and moving
// on from it (+1) would overflow and go backwards.
const maxGeneration = 1 << 62

// parseGeneration reads a generation key's value: "<gen>@<run id>", or a
// bare number (written before run ids were recorded). A generation outside
// [0, maxGeneration) is unreadable (gen 0, !ok).
func parseGeneration(v string) (gen int64, runID string, ok bool) {
	num, runID, _ := strings.Cut(v, "@")
	gen, err := strconv.ParseInt(num, 10, 64)
	if err != nil || gen < 0 || gen >= maxGeneration {
		return 0, runID, false
	}
	return gen, runID, true
}

// newGenState is generation gen of namespace ns, whose key was read or set
// as value. Every key of a generation is named from its prefix.
func newGenState(ns string, gen int64, value string) *genState {
	return &genState{gen: gen, value: value, prefix: ns + ":v1:g" + strconv.FormatInt(gen, 10) + ":"}
}

// generationKey is the Redis key holding namespace ns's generation.
func generationKey(ns string) string { return ns + ":v1:gen" }

func (s *Store) setState(gen int64, value string) {
	s.state.Store(newGenState(s.opts.Namespace, gen, value))
}

// Generation is the generation the store's keys use now.
func (s *Store) Generation() int64 { return s.state.Load().gen }

// generationValue is the generation key's value the store is at: what a
// namespace-wide invalidation message carries, for AdoptGeneration.
func (s *Store) generationValue() string { return s.state.Load().value }

// AdoptGeneration moves the store to the generation a peer's message
// announced (a generationValue), if it is newer than the one in use. It
// reports whether the store moved.
func (s *Store) AdoptGeneration(value string) bool {
	gen, _, ok := parseGeneration(value)
	if !ok {
		return false
	}
	for {
		cur := s.state.Load()
		if gen <= cur.gen {
			return false
		}
		next := newGenState(s.opts.Namespace, gen, value)
		if s.state.CompareAndSwap(cur, next) {
			return true
		}
	}
}

// GenerationChange is what Settle did, told to Options.OnGeneration.
type GenerationChange struct {
	From, To int64
	// Lost names what Redis had forgotten, when that made the store move
	// the namespace to a new generation: LostGenerationKey (missing),
	// LostGenerationBehind (older than the one in use), LostRestart (set
	// under another Redis process). Empty when the store only followed a
	// newer generation.
	Lost string
}

// What Redis can be found to have forgotten; see GenerationChange.Lost and
// Stats.Lost.
const (
	LostGenerationKey    = "generation-missing"
	LostGenerationBehind = "generation-behind"
	LostRestart          = "redis-restarted"
)

var checkGenerationScript = newScript(`
local g = redis.call('GET', KEYS[1]) or ''
local rid = ''
if ARGV[1] == '1' then
  rid = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
end
return {g, rid}
`)

var setGenerationScript = newScript(`
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[2])
publish(ARGV[3], ARGV[4])
return {1, ARGV[2]}
`)

// readGeneration reads the generation key and, unless the ACL user may not
// run INFO, the run id of the Redis process holding it.
func (s *Store) readGeneration(ctx context.Context) (value, runID string, err error) {
	withID := "1"
	if s.noRunID.Load() {
		withID = "0"
	}
	res := s.run(ctx, checkGenerationScript, nil, call{keys: []string{s.genKey}, args: []string{withID}, bare: true})
	if err := res.Error(); err != nil && withID == "1" && isPermissionError(err) {
		// INFO is refused: restarts are then detected by the key's loss
		// alone. Said once.
		if !s.noRunID.Swap(true) {
			s.warn("info-refused", "INFO is not allowed for this ACL user: a Redis restart that keeps the generation key (persistence, failover) cannot be detected; grant +info", err)
		}
		res = s.run(ctx, checkGenerationScript, nil, call{keys: []string{s.genKey}, args: []string{"0"}, bare: true})
	}
	arr, err := res.AsStrSlice()
	if err != nil {
		return "", "", err
	}
	if len(arr) != 2 {
		return "", "", fmt.Errorf("remote: generation check: unexpected reply of %d elements", len(arr))
	}
	return arr[0], arr[1], nil
}

// Settle checks the generation key against the generation in use and
// moves: to a newer generation it finds, or to a new one when the key is
// missing, older than the one in use, or was set under another Redis
// process. It returns the generation in use afterwards. Call it at start,
// after any gap in invalidations, and periodically: it is one small script.
func (s *Store) Settle(ctx context.Context) (_ int64, err error) {
	ctx, inf, err := s.begin(ctx, OpGeneration)
	if err != nil {
		return s.Generation(), err
	}
	defer inf.end(&err)
	_, err = s.move(ctx, nil, false)
	return s.Generation(), err
}

// settle is Settle for a fenced script refused under g: if another call
// settled since g was read, there is nothing to do.
func (s *Store) settle(ctx context.Context, g *genState) error {
	_, err := s.move(ctx, g, false)
	return err
}

// BumpGeneration moves the namespace to a new generation and publishes
// Options.GenerationMessage of it in the same script: InvalidateAll. It
// returns the new generation. Options.OnGeneration is not told: the caller
// knows.
func (s *Store) BumpGeneration(ctx context.Context) (_ int64, err error) {
	ctx, inf, err := s.begin(ctx, OpGeneration)
	if err != nil {
		return 0, err
	}
	defer inf.end(&err)
	return s.move(ctx, nil, true)
}

// move settles the generation (force: moves it to a new one in any case).
// seen, when set, is the state a fenced call was refused under: if another
// call moved the store since, there is nothing to do.
func (s *Store) move(ctx context.Context, seen *genState, force bool) (int64, error) {
	s.settling.Lock()
	defer s.settling.Unlock()
	if seen != nil && s.state.Load() != seen {
		return s.Generation(), nil
	}
	for range 8 {
		stored, runID, err := s.readGeneration(ctx)
		if err != nil {
			return 0, err
		}
		cur := s.state.Load()
		gen, storedID, ok := parseGeneration(stored)
		sameProcess := runID == "" || storedID == runID
		inStep := ok && sameProcess && gen >= cur.gen
		if inStep && !force {
			if stored != cur.value {
				s.setState(gen, stored)
				s.changed(GenerationChange{From: cur.gen, To: gen})
			}
			return gen, nil
		}
		lost := ""
		switch {
		case inStep:
		case !ok:
			lost = LostGenerationKey // missing, or unreadable: as good as missing
		case !sameProcess:
			lost = LostRestart
		default:
			lost = LostGenerationBehind
		}
		now := time.Now().UnixMilli()
		next := max(now, cur.gen+1, gen+1)
		if next >= maxGeneration {
			next = now // numbering starts again: the bound is no generation
		}
		value := strconv.FormatInt(next, 10) + "@" + runID
		set, err := s.compareAndSetGeneration(ctx, stored, value)
		if err != nil {
			return 0, err
		}
		if !set {
			continue // another store moved it meanwhile: look again
		}
		if lost != "" && cur.value != "" { // a store's first settle finds nothing lost
			s.lost[lostIndex(lost)].Add(1)
		}
		s.setState(next, value)
		if !force {
			s.changed(GenerationChange{From: cur.gen, To: next, Lost: lost})
		}
		return next, nil
	}
	return 0, errors.New("remote: the generation key kept changing while settling")
}

// compareAndSetGeneration sets the generation key to value if it still
// holds expected ("": missing), publishing the namespace-wide invalidation
// in the same script.
func (s *Store) compareAndSetGeneration(ctx context.Context, expected, value string) (bool, error) {
	p := s.opts.GenerationMessage(value)
	res := s.run(ctx, setGenerationScript, nil, call{keys: []string{s.genKey},
		args: []string{expected, value, p.Channel, string(p.Message)}, write: true, unfenced: true})
	arr, err := res.ToArray()
	if err != nil {
		return false, err
	}
	if len(arr) != 2 {
		return false, fmt.Errorf("remote: generation set: unexpected reply of %d elements", len(arr))
	}
	n, err := arr[0].AsInt64()
	return n == 1, err
}

func (s *Store) changed(c GenerationChange) {
	if c.From != 0 && s.opts.OnGeneration != nil {
		s.opts.OnGeneration(c)
	}
}

// GenerationKey is the Redis key holding the namespace's generation.
func (s *Store) GenerationKey() string { return s.genKey }

type lostCounters [3]atomic.Uint64

func lostIndex(what string) int {
	switch what {
	case LostGenerationKey:
		return 0
	case LostGenerationBehind:
		return 1
	}
	return 2 // LostRestart
}
