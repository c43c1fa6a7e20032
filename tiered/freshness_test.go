package tiered

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The refresh policy, tested with a given clock and given draws: no Redis,
// no waiting.

func fixedDraw(u float64) func() float64 { return func() float64 { return u } }

func TestXFetchDecidesFromTheDraw(t *testing.T) {
	const now = int64(1_000_000_000_000)
	const loadMicros = 10_000 // δ = 10 ms
	f := freshness{beta: 1, draw: fixedDraw(0.5)}
	assert.False(t, f.xfetch(now+int64(time.Hour), loadMicros, now), "far from the target: never")
	assert.True(t, f.xfetch(now, loadMicros, now), "at the target: always")
	// −ln(u)·δ·β ≥ target − now: with u = e^−1 the reach is exactly 1 δ.
	f.draw = fixedDraw(math.Exp(-1) * 0.999)
	assert.True(t, f.xfetch(now+int64(10*time.Millisecond), loadMicros, now), "a draw just under e^-1 reaches 1 δ")
	f.draw = fixedDraw(math.Exp(-1) * 1.001)
	assert.False(t, f.xfetch(now+int64(10*time.Millisecond), loadMicros, now), "a draw just over e^-1 does not")
	f.beta = 2
	assert.True(t, f.xfetch(now+int64(10*time.Millisecond), loadMicros, now), "β = 2 doubles the reach")
	f.beta = 0
	assert.False(t, f.xfetch(now, loadMicros, now), "β ≤ 0 turns it off")
	f.beta = 1
	assert.False(t, f.xfetch(0, loadMicros, now), "no target: nothing to refresh ahead of")
}

func TestXFetchProbability(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	f := freshness{beta: 1, draw: r.Float64}
	const now = int64(1_000_000_000_000)
	hits := 0
	for range 10_000 {
		if f.xfetch(now+int64(10*time.Millisecond), 10_000, now) {
			hits++
		}
	}
	assert.InDelta(t, 3679, hits, 300, "1 δ before the target the probability is e^-1")
}

func TestFreshnessDue(t *testing.T) {
	const now = int64(1_000_000_000_000)
	never := freshness{beta: 1, draw: fixedDraw(0.999999)}
	always := freshness{beta: 1, draw: fixedDraw(1e-300)}
	s := stamps{freshUntil: now + int64(time.Second), expiresAt: now + int64(time.Minute), loadMicros: 100_000}
	assert.Equal(t, refreshNone, never.due(s, now), "fresh, and XFetch does not pick it")
	assert.Equal(t, refreshEarly, always.due(s, now), "fresh, but XFetch picks it")
	assert.Equal(t, refreshStale, never.due(s, now+int64(time.Second)), "at fresh-until it is stale")
	noSWR := stamps{expiresAt: now + int64(time.Minute), loadMicros: 100_000}
	assert.Equal(t, refreshNone, never.due(noSWR, now+int64(59*time.Second)), "without fresh-until it never goes stale")
	assert.Equal(t, refreshEarly, always.due(noSWR, now), "XFetch aims at the expiry then")
}

func TestFreshnessFrom(t *testing.T) {
	const now = int64(1_000_000_000_000)
	f := freshness{beta: 1, draw: fixedDraw(0.5)}
	s := stamps{freshUntil: now + int64(time.Minute), expiresAt: now + int64(time.Hour), loadMicros: 1000}
	horizon := int64(xfetchHorizon * 1000 * 1e3) // 20 δ, δ = 1 ms
	assert.Equal(t, s.freshUntil-horizon, f.from(s, s.expiresAt), "XFetch's horizon before fresh-until")
	assert.Zero(t, f.from(s, now+int64(time.Second)), "the copy expires first: hits never ask")
	f.beta = 0
	assert.Equal(t, s.freshUntil, f.from(s, s.expiresAt), "without XFetch: at fresh-until")
	assert.Zero(t, f.from(stamps{expiresAt: s.expiresAt}, s.expiresAt), "nothing to refresh for")
	f.beta = 1
	assert.Equal(t, int64(1), f.from(stamps{expiresAt: 5, loadMicros: 1000}, 10), "never before the epoch's first ns")
}
