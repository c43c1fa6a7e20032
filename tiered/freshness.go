package tiered

import (
	"context"
	"math"
	"time"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// stamps are what a value's envelope says about its age, in Unix ns: when
// it goes stale (0: never before it expires), when it expires in Redis (0:
// unknown), and how long its last load took.
type stamps struct {
	freshUntil, expiresAt int64
	loadMicros            uint32
}

// target is when the value should have been refreshed: when it goes
// stale, or else when it expires.
func (s stamps) target() int64 {
	if s.freshUntil != 0 {
		return s.freshUntil
	}
	return s.expiresAt
}

// refreshKind is what a read of a value should set off.
type refreshKind uint8

const (
	refreshNone  refreshKind = iota
	refreshStale             // past its fresh time: serve it, refresh it
	refreshEarly             // XFetch picked this read to refresh ahead of time
)

// freshness is the refresh policy: stale-while-revalidate and XFetch's
// probabilistic early refresh. It reads no clock and draws nothing itself:
// now and draw are given, so the policy is tested without Redis or
// waiting.
type freshness struct {
	beta float64        // XFetch's β; ≤ 0 turns early refresh off
	draw func() float64 // uniform in [0, 1)
}

// xfetchHorizon: −ln(draw) exceeds it with probability e^−20, so a value
// further than horizon·δ·β from its target needs no draw.
const xfetchHorizon = 20

// due is what a read at now of a value with stamps s should set off.
func (f freshness) due(s stamps, now int64) refreshKind {
	if s.freshUntil != 0 && now >= s.freshUntil {
		return refreshStale
	}
	if f.xfetch(s.target(), s.loadMicros, now) {
		return refreshEarly
	}
	return refreshNone
}

// xfetch is the early-refresh test: now − δ·β·ln(draw) ≥ target.
func (f freshness) xfetch(target int64, loadMicros uint32, now int64) bool {
	if f.beta <= 0 || target == 0 {
		return false
	}
	delta := float64(loadMicros) * 1e3
	return float64(now)-delta*f.beta*math.Log(f.draw()) >= float64(target)
}

// from is when reads of a value must start asking due: when it goes stale,
// or XFetch's horizon before its target. Zero when the copy read expires
// (at expiry) before that, so most hits skip the question entirely.
func (f freshness) from(s stamps, expiry int64) int64 {
	from := s.freshUntil
	if target := s.target(); f.beta > 0 && target != 0 {
		early := target - int64(xfetchHorizon*f.beta*float64(s.loadMicros)*1e3)
		if from == 0 || early < from {
			from = early
		}
	}
	if from == 0 || from >= expiry {
		return 0
	}
	return max(from, 1)
}

// fillKind says what a local fill replaces.
type fillKind uint8

const (
	afterMiss fillKind = iota // a key the local tier did not serve: Fill
	overHeld                  // a refresh of a copy still served: Refill
	ownWrite                  // the replica's own write: Replace
)

// fillLocal stores a value read or written with envelope env. Its local TTL
// never outlives the Redis copy, and it records when hits must start
// considering a refresh. It returns the clock reading (UnixNano) it used
// as now, for the caller's refresh check: one clock read per miss, not two
// (a warm-up makes 100,000).
func (c *Cache[V]) fillLocal(fence local.Fence, key string, v V, env *remote.Envelope, payloadCost int64, kind fillKind) (now int64) {
	now = time.Now().UnixNano()
	ttl := c.jitter(c.opts.LocalTTL)
	if env.ExpiresAt != 0 {
		ttl = min(ttl, time.Duration(env.ExpiresAt-now))
	}
	e := local.Entry[V]{Value: v, FreshUntil: env.FreshUntil, ExpiresAt: env.ExpiresAt, LoadMicros: env.LoadMicros, Negative: env.Negative}
	e.Tags = tagNames(env.Tags)
	if !env.Negative {
		e.RefreshFrom = c.fresh.from(envelopeStamps(env), now+int64(ttl))
	}
	switch kind {
	case ownWrite:
		c.local.Replace(fence, key, e, payloadCost, ttl)
	case overHeld:
		c.local.Refill(fence, key, e, payloadCost, ttl)
	default:
		c.local.Fill(fence, key, e, payloadCost, ttl)
	}
	return now
}

func envelopeStamps(e *remote.Envelope) stamps {
	return stamps{freshUntil: e.FreshUntil, expiresAt: e.ExpiresAt, loadMicros: e.LoadMicros}
}

// considerRefresh runs on a hit past e.RefreshFrom.
func (c *Cache[V]) considerRefresh(key string, e *local.Entry[V], load func(context.Context) (V, error)) {
	now := time.Now().UnixNano()
	if now < e.RefreshFrom {
		return
	}
	c.refreshIfDue(key, stamps{e.FreshUntil, e.ExpiresAt, e.LoadMicros}, now, load, e.Tags)
}

// refreshIfDue starts a refresh of a value that is stale, or that XFetch
// picks for an early one.
func (c *Cache[V]) refreshIfDue(key string, s stamps, now int64, load func(context.Context) (V, error), tags []string) {
	switch c.fresh.due(s, now) {
	case refreshStale:
		c.stats.staleHits.Add(1)
	case refreshEarly:
		c.stats.earlyRefreshes.Add(1)
	default:
		return
	}
	c.refresh(key, load, s.expiresAt, tags)
}
