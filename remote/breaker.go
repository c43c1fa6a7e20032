package remote

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/redis/rueidis"
	"github.com/sony/gobreaker/v2"
)

// errUnavailable reports a call not sent because the circuit breaker is
// open: Redis failed repeatedly, and only a probe is let through after
// Options.BreakerCooldown.
var errUnavailable = errors.New("remote: redis unavailable (circuit open)")

// Op names a kind of Redis call, for the per-operation counters.
type Op int

// The operations of a Store.
const (
	OpGet Op = iota
	OpGetOrLease
	OpLease
	OpFill
	OpRelease
	OpSet
	OpDelete
	OpMGet
	OpTags
	OpGeneration
	OpQueue // the write-behind queue and its flusher
	OpScan  // Scan: a walk of the namespace's keys
	numOps
)

var opNames = [numOps]string{"get", "get_or_lease", "lease", "fill", "release", "set", "delete", "mget", "tags", "generation", "queue", "scan"}

func (o Op) String() string { return opNames[o] }

// Ops lists every operation, in order.
func Ops() []Op {
	out := make([]Op, numOps)
	for i := range out {
		out[i] = Op(i)
	}
	return out
}

// OpStats counts one operation's calls.
type OpStats struct {
	Calls    uint64 // sent to Redis
	Errors   uint64 // failed, timeouts included
	Timeouts uint64 // failed by deadline
	Rejected uint64 // not sent: the breaker was open
}

// Stats is a snapshot of a Store's counters.
type Stats struct {
	Ops          [numOps]OpStats // by Op
	BreakerState string          // "closed", "half-open" or "open"
	BreakerOpens uint64          // times the breaker opened
	Lost         LostStats
}

// LostStats counts state the store found Redis had forgotten, each answered
// safely (see generation.go and queue.go).
type LostStats struct {
	GenerationMissing uint64 // the generation key was gone: a new generation
	GenerationBehind  uint64 // it held an older generation: a new one
	Restarts          uint64 // it was set under another Redis process: a new one
}

type opCounters struct {
	calls, errors, timeouts, rejected atomic.Uint64
}

func newBreaker(o *Options, opens *atomic.Uint64) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        o.Namespace,
		MaxRequests: 1, // one probe when half-open
		Timeout:     o.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(o.BreakerThreshold) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				opens.Add(1)
			}
			if o.OnBreakerChange != nil {
				o.OnBreakerChange(from.String(), to.String())
			}
		},
		IsSuccessful: answered,
		// The caller giving up says nothing about Redis.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
	})
}

// answered reports whether Redis was reachable: no error, a nil reply, or
// an error reply are all answers.
func answered(err error) bool {
	if err == nil || errors.Is(err, ErrMiss) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrNotReplicated) || rueidis.IsRedisNil(err) {
		return true
	}
	_, isReply := rueidis.IsRedisErr(err)
	return isReply
}

// Refused reports whether a call was refused by Redis with an error reply
// (out of memory, read-only, busy, a refused permission) or by the store
// before it was sent (ErrTooLarge): Redis is reachable. A command refused
// wrote nothing; a script refused part-way may have written before the
// refusal (Redis does not roll scripts back), so what follows must hold
// either way (a release checks its token).
func Refused(err error) bool {
	if errors.Is(err, ErrTooLarge) {
		return true
	}
	_, isReply := rueidis.IsRedisErr(err)
	return isReply
}

// ResetBreaker closes the breaker at once: the caller has seen Redis answer
// (e.g. a resubscribe), so waiting out the cooldown would only delay
// recovery. gobreaker has no reset, so a fresh breaker replaces it.
func (s *Store) ResetBreaker() {
	if s.breaker.Load().State() == gobreaker.StateClosed {
		return
	}
	s.breaker.Store(newBreaker(&s.opts, &s.breakerOpens))
	if s.opts.OnBreakerChange != nil {
		s.opts.OnBreakerChange("open", "closed")
	}
}

// health lets calls skip the breaker while Redis answers. gobreaker takes
// a mutex and reads the clock twice per call and allocates the call's
// done func: on a miss, which makes two calls, that was a tenth of the
// replica's own CPU. While healthy, no call since the breaker last said
// it was closed with no failure counted has failed, and then a success
// changes nothing the breaker decides on (it trips on consecutive
// failures, which a success leaves at 0), so calls neither ask nor tell
// it. A failure is told to the breaker, then clears healthy; from then on
// every call goes through the breaker until a success finds it closed
// with no failure counted.
//
// The low bit is healthy; every failure adds 2, so a success that looked
// at the breaker before a failure was told cannot set healthy after it.
type health struct{ v atomic.Uint64 }

func (h *health) healthy() bool { return h.v.Load()&1 == 1 }

func (h *health) failed() {
	for {
		v := h.v.Load()
		if h.v.CompareAndSwap(v, v&^1+2) {
			return
		}
	}
}

// inflight is one Redis call under way: begin starts it, end counts it
// and tells the breaker. A value, so a call allocates no closure of its
// own.
type inflight struct {
	s       *Store
	op      Op
	allowed func(error) // the breaker's; nil when the call skipped it
	health  uint64      // the health the call began with, when it asked
}

// begin starts a call of op: it asks the breaker (unless healthy) and
// bounds ctx by Options.Timeout; the caller defers end with its result
// error.
func (s *Store) begin(ctx context.Context, op Op) (context.Context, inflight, error) {
	if s.health.healthy() {
		s.ops[op].calls.Add(1)
		return s.deadlines.bound(ctx), inflight{s: s, op: op}, nil
	}
	h := s.health.v.Load()
	allowed, err := s.breaker.Load().Allow()
	if err != nil {
		s.ops[op].rejected.Add(1)
		return ctx, inflight{}, errUnavailable
	}
	s.ops[op].calls.Add(1)
	return s.deadlines.bound(ctx), inflight{s: s, op: op, allowed: allowed, health: h}, nil
}

func (c inflight) end(errp *error) {
	err := *errp
	failed := err != nil && !answered(err) && !errors.Is(err, context.Canceled)
	switch {
	case c.allowed != nil:
		c.allowed(err)
		if !failed {
			c.s.healthyIfClosed(c.health)
		}
	case failed:
		if allowed, err2 := c.s.breaker.Load().Allow(); err2 == nil {
			allowed(err)
		}
	}
	if failed {
		c.s.health.failed()
		c.s.ops[c.op].errors.Add(1)
		if errors.Is(err, context.DeadlineExceeded) {
			c.s.ops[c.op].timeouts.Add(1)
		}
	}
}

// healthyIfClosed sets healthy if the breaker is closed with no failure
// counted and no failure was told since the health h was read.
func (s *Store) healthyIfClosed(h uint64) {
	cb := s.breaker.Load()
	if h&1 == 1 || cb.State() != gobreaker.StateClosed || cb.Counts().ConsecutiveFailures != 0 {
		return
	}
	s.health.v.CompareAndSwap(h, h|1)
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	var st Stats
	for i := range st.Ops {
		c := &s.ops[i]
		st.Ops[i] = OpStats{Calls: c.calls.Load(), Errors: c.errors.Load(), Timeouts: c.timeouts.Load(), Rejected: c.rejected.Load()}
	}
	st.BreakerState = s.breaker.Load().State().String()
	st.BreakerOpens = s.breakerOpens.Load()
	st.Lost = LostStats{
		GenerationMissing: s.lost[0].Load(), GenerationBehind: s.lost[1].Load(),
		Restarts: s.lost[2].Load(),
	}
	return st
}
