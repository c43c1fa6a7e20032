package remote

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// changes records what OnGeneration was told.
type changes struct {
	mu  sync.Mutex
	all []GenerationChange
}

func (c *changes) add(g GenerationChange) { c.mu.Lock(); c.all = append(c.all, g); c.mu.Unlock() }
func (c *changes) list() []GenerationChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]GenerationChange(nil), c.all...)
}

func genMessage(v string) Publication {
	return Publication{Channel: "inv", Message: []byte("gen " + v)}
}

func TestGenerationBumpHidesEveryKeyAndPeersFollow(t *testing.T) {
	srv := redistest.Start(t)
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	var seenB changes
	a := newStore(t, redistest.Client(t, srv), Options{GenerationMessage: genMessage})
	b := newStore(t, redistest.Client(t, srv), Options{GenerationMessage: genMessage, OnGeneration: seenB.add})
	ctx := context.Background()
	g0, err := a.Settle(ctx)
	require.NoError(t, err)
	assert.Greater(t, g0, int64(1_700_000_000_000), "a first generation is the time in ms")
	<-msgs // the first settle created it and said so
	_, err = b.Settle(ctx)
	require.NoError(t, err)
	assert.Equal(t, g0, b.Generation(), "a second store joins the same generation")
	assert.Empty(t, seenB.list(), "joining at start is no change")
	require.NoError(t, a.Set(ctx, "k", &Envelope{Payload: []byte("v")}, Publication{}))

	g1, err := a.BumpGeneration(ctx)
	require.NoError(t, err)
	assert.Greater(t, g1, g0)
	assert.Equal(t, "gen "+a.generationValue(), <-msgs, "the bump publishes its value")
	_, err = a.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrMiss, "the bumping store moved on")

	// b is still at g0 until it learns of the bump, by message or Settle.
	_, err = b.Get(ctx, "k")
	require.NoError(t, err)
	assert.False(t, b.AdoptGeneration(strconv.FormatInt(g0, 10)+"@x"), "an older generation is ignored")
	assert.True(t, b.AdoptGeneration(a.generationValue()))
	_, err = b.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrMiss)
}

// TestLostGenerationMovesOnNeverBack: whatever Redis forgets, the
// generation only moves forward, every loss is counted, and peers follow.
func TestLostGenerationMovesOnNeverBack(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	var seen changes
	s := newStore(t, c, Options{GenerationMessage: genMessage, OnGeneration: seen.add})
	peer := newStore(t, redistest.Client(t, srv), Options{GenerationMessage: genMessage})
	ctx := context.Background()
	g, err := s.Settle(ctx)
	require.NoError(t, err)
	<-msgs
	require.NoError(t, peer.Set(ctx, "k", &Envelope{Payload: []byte("v")}, Publication{}))

	steps := []struct {
		name string
		do   func() // what Redis forgets
		lost string
		stat func(Stats) uint64
	}{
		{"evicted", func() { c.Do(ctx, c.B().Del().Key(s.GenerationKey()).Build()) }, LostGenerationKey, func(st Stats) uint64 { return st.Lost.GenerationMissing }},
		{"failover to a lagging replica", func() {
			c.Do(ctx, c.B().Set().Key(s.GenerationKey()).Value(strconv.FormatInt(g-1, 10)+"@"+runID(t, srv)).Build())
		}, LostGenerationBehind, func(st Stats) uint64 { return st.Lost.GenerationBehind }},
		{"restart with persistence", func() {
			c.Do(ctx, c.B().Set().Key(s.GenerationKey()).Value(s.generationValue()[:strings.IndexByte(s.generationValue(), '@')]+"@0123abcd").Build())
		}, LostRestart, func(st Stats) uint64 { return st.Lost.Restarts }},
	}
	for _, step := range steps {
		before := s.Generation()
		step.do()
		now, err := s.Settle(ctx)
		require.NoError(t, err, step.name)
		assert.Greater(t, now, before, "%s: a new generation, never an old one", step.name)
		assert.Equal(t, "gen "+s.generationValue(), <-msgs, "%s: the fleet is told", step.name)
		assert.Equal(t, uint64(1), step.stat(s.Stats()), "%s: counted", step.name)
		last := seen.list()[len(seen.list())-1]
		assert.Equal(t, GenerationChange{From: before, To: now, Lost: step.lost}, last, step.name)
		_, err = peer.Settle(ctx)
		require.NoError(t, err)
		assert.Equal(t, now, peer.Generation(), "%s: a peer that settles follows", step.name)
		g = now
	}
	// In step, Settle changes nothing.
	_, err = s.Settle(ctx)
	require.NoError(t, err)
	assert.Len(t, seen.list(), len(steps))
}

// TestFencedWritesNeverLandInALostGeneration: on a single Redis a write
// made while the generation key is gone is refused by its fence, the store
// settles, and the write lands in the new generation.
func TestFencedWritesNeverLandInALostGeneration(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	var seen changes
	s := newStore(t, c, Options{GenerationMessage: genMessage, OnGeneration: seen.add})
	ctx := context.Background()
	g0, err := s.Settle(ctx)
	require.NoError(t, err)
	oldKey := s.ValueKey("k")
	require.NoError(t, c.Do(ctx, c.B().Flushall().Build()).Error()) // an empty restart
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v")}, Publication{}))
	assert.Greater(t, s.Generation(), g0)
	n, err := c.Do(ctx, c.B().Exists().Key(oldKey).Build()).AsInt64()
	require.NoError(t, err)
	assert.Zero(t, n, "nothing was written under the lost generation")
	e, err := s.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(e.Payload))
	require.Len(t, seen.list(), 1)
	assert.Equal(t, LostGenerationKey, seen.list()[0].Lost)

	// The same for a fill's lease, a delete and a tag.
	for name, op := range map[string]func() error{
		"lease":  func() error { _, err := s.getOrLease(ctx, "x", "t"); return err },
		"delete": func() error { return s.Delete(ctx, []string{"k"}, Publication{}) },
		"tags":   func() error { _, err := s.TagVersions(ctx, []string{"t"}, time.Minute); return err },
	} {
		before := s.Generation()
		require.NoError(t, c.Do(ctx, c.B().Del().Key(s.GenerationKey()).Build()).Error())
		require.NoError(t, op(), name)
		assert.Greater(t, s.Generation(), before, name)
	}
}

// A generation no store makes (another program's, at the top of int64)
// is unreadable: the store moves to a new generation of its own, once,
// instead of adopting one whose successor would overflow backwards; and a
// flush message carrying one is not adopted.
func TestAnAbsurdGenerationIsUnreadable(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{GenerationMessage: genMessage})
	ctx := context.Background()
	g, err := s.Settle(ctx)
	require.NoError(t, err)
	require.NoError(t, c.Do(ctx, c.B().Set().Key(s.GenerationKey()).Value(strconv.FormatInt(math.MaxInt64, 10)+"@"+runID(t, srv)).Build()).Error())
	now, err := s.Settle(ctx)
	require.NoError(t, err)
	assert.Greater(t, now, g, "never back")
	assert.Less(t, now, int64(maxGeneration), "not the absurd one")
	again, err := s.Settle(ctx)
	require.NoError(t, err)
	assert.Equal(t, now, again, "settled: no move on every look")
	assert.Equal(t, uint64(1), s.Stats().Lost.GenerationMissing, "counted as unreadable")

	assert.False(t, s.AdoptGeneration(strconv.FormatInt(math.MaxInt64, 10)+"@x"))
	assert.Equal(t, now, s.Generation())

	// The last readable generation: the next is past the bound, so
	// numbering starts again, once, rather than write one no store reads.
	require.NoError(t, c.Do(ctx, c.B().Set().Key(s.GenerationKey()).Value(strconv.FormatInt(maxGeneration-1, 10)+"@"+runID(t, srv)).Build()).Error())
	g, err = s.Settle(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(maxGeneration-1), g, "followed: a readable generation")
	bumped, err := s.BumpGeneration(ctx)
	require.NoError(t, err)
	assert.Less(t, bumped, int64(maxGeneration))
	again, err = s.Settle(ctx)
	require.NoError(t, err)
	assert.Equal(t, bumped, again, "the bumped generation reads back")
}

// runID is the run id of the Redis at addr.
func runID(t *testing.T, srv *redisserver.Server) string {
	t.Helper()
	c := redistest.Client(t, srv)
	info, err := c.Do(context.Background(), c.B().Info().Section("server").Build()).ToString()
	require.NoError(t, err)
	_, rest, _ := strings.Cut(info, "run_id:")
	id, _, _ := strings.Cut(rest, "\r\n")
	return id
}

func TestTagsAreVersions(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	msgs := subscribe(t, redistest.Client(t, srv), "inv")
	s := newStore(t, c, Options{TTL: time.Minute})
	ctx := context.Background()
	tv, err := s.TagVersions(ctx, []string{"red", "blue"}, 0)
	require.NoError(t, err)
	require.Len(t, tv, 2)
	again, err := s.TagVersions(ctx, []string{"red"}, 0)
	require.NoError(t, err)
	assert.Equal(t, tv[0], again[0], "a version stays until the tag is invalidated")
	g := s.state.Load()
	pttl, err := c.Do(ctx, c.B().Pttl().Key(g.tagVersionKey("red")).Build()).AsInt64()
	require.NoError(t, err)
	assert.InDelta(t, 60_000, pttl, 7_000, "versions expire: they never pile up")

	require.NoError(t, s.Set(ctx, "k1", &Envelope{Payload: []byte("1"), Tags: tv}, Publication{}))
	require.NoError(t, s.Set(ctx, "k2", &Envelope{Payload: []byte("2"), Tags: tv[1:]}, Publication{}))
	_, err = s.Get(ctx, "k1")
	require.NoError(t, err)

	require.NoError(t, s.InvalidateTags(ctx, []string{"red"}, Publication{Channel: "inv", Message: []byte("tags")}))
	assert.Equal(t, "tags", <-msgs)
	_, err = s.Get(ctx, "k1")
	assert.ErrorIs(t, err, ErrMiss, "a value of an invalidated tag is a miss")
	_, err = s.Get(ctx, "k2")
	assert.NoError(t, err, "other tags are untouched")
	found, err := s.GetMany(ctx, []string{"k1", "k2"})
	require.NoError(t, err)
	assert.ErrorIs(t, found[0].Err, ErrMiss)
	assert.NoError(t, found[1].Err)

	// A version Redis lost (evicted) invalidates too: missing is never
	// "nothing to invalidate".
	require.NoError(t, c.Do(ctx, c.B().Del().Key(g.tagVersionKey("blue")).Build()).Error())
	_, err = s.Get(ctx, "k2")
	assert.ErrorIs(t, err, ErrMiss)

	// getOrLease removes the invalid value and takes the lease, so loads
	// and waiters work as for any miss.
	r, err := s.getOrLease(ctx, "k2", "tok")
	require.NoError(t, err)
	assert.True(t, r.Leased)
	assert.False(t, r.Found)
}

// A tag's version is read back from Redis, where anything may have
// written it: one longer than an envelope can carry would make every value
// recording it unreadable, so it is replaced as a missing one is; and
// Encode refuses an envelope it could not read back.
func TestATagVersionTooLongToCarryIsReplaced(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	s := newStore(t, c, Options{TTL: time.Minute})
	ctx := context.Background()
	_, err := s.Settle(ctx)
	require.NoError(t, err)
	g := s.state.Load()
	require.NoError(t, c.Do(ctx, c.B().Set().Key(g.tagVersionKey("t")).Value(strings.Repeat("v", MaxTagBytes+1)).Build()).Error())
	tv, err := s.TagVersions(ctx, []string{"t"}, 0)
	require.NoError(t, err)
	require.LessOrEqual(t, len(tv[0].Version), MaxTagBytes)
	require.NoError(t, s.Set(ctx, "k", &Envelope{Payload: []byte("v"), Tags: tv}, Publication{}))
	got, err := s.Get(ctx, "k")
	require.NoError(t, err, "a value written with the new version reads back")
	assert.Equal(t, tv, got.Tags)

	for name, tags := range map[string][]TagVersion{
		"long version": {{Tag: "t", Version: strings.Repeat("v", MaxTagBytes+1)}},
		"long tag":     {{Tag: strings.Repeat("t", MaxTagBytes+1), Version: "1"}},
		"many tags":    make([]TagVersion, MaxTags+1),
	} {
		_, err := s.Encode(&Envelope{Payload: []byte("v"), Tags: tags})
		assert.ErrorIs(t, err, ErrTooLarge, name)
	}
}

func TestEnvelopeCarriesTags(t *testing.T) {
	e := Envelope{WrittenAt: 1, Payload: []byte("p"), Tags: []TagVersion{{"a", "1"}, {"b", "2.x"}}}
	got, err := DecodeEnvelope(e.encode(-1), 100)
	require.NoError(t, err)
	assert.Equal(t, e.Tags, got.Tags)
	assert.Equal(t, "p", string(got.Payload))
}
