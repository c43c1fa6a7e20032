package tiered

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache/remote"
)

// Op names a step of a call that leaves the process, as an Observer sees
// it. Local hits are never observed: they do no I/O.
type Op string

const (
	// OpRedisRead: a local miss read from Redis (a plain GET, or a lease
	// round). Results: hit, miss, leased (this replica loads), held
	// (another replica loads), error; for a read of several keys
	// (GetMany, GetOrLoadMany): ok, error.
	OpRedisRead Op = "redis.read"
	// OpLeaseWait: waiting for another replica's load of the key. Results:
	// woken, expired (the holder's expected time passed), cancelled.
	OpLeaseWait Op = "lease.wait"
	// OpLoad: a loader call (GetOrLoad's, GetOrLoadMany's, Options.Loader,
	// a background refresh). Results: ok, not-found, error, panic.
	OpLoad Op = "load"
	// OpFill: a loaded value written to Redis under the key's lease.
	// Results: stored, voided (a write landed during the load), error.
	// A fill of several keys (GetOrLoadMany): stored, error.
	OpFill Op = "fill"
	// OpWrite: Set, SetBehind, Delete, InvalidateTags, InvalidateAll.
	// Results: ok, error.
	OpWrite Op = "write"
)

// Call is what an Observer is told of a step.
type Call struct {
	Op Op
	// Key is the key of a step over one key, and empty for several or none.
	Key string
	// Keys is how many keys the step covers (tags, for InvalidateTags).
	Keys int
	// Name is the method for OpWrite ("Set", "SetBehind", "Delete",
	// "InvalidateTags", "InvalidateAll"), and empty otherwise.
	Name string
}

// Observer is told when the steps of a call that leave the process start,
// and how they end: the seam for tracing (package tieredotel, for
// OpenTelemetry) and for any other hooks. Start returns the context the
// step runs with (a span's, say: rueidis's own tracing then nests under
// it) and the function the cache calls once when the step ends, with its
// result (see each Op) and error. Both run on the caller's goroutine and
// must not block. Keys are given as the cache has them: an Observer that
// exports them decides whether it may.
type Observer interface {
	Start(ctx context.Context, call Call) (context.Context, func(result string, err error))
}

// endStep ends an observed step; it is nil when no Observer is set, so an
// unobserved step costs a nil check and nothing else.
type endStep func(result string, err error)

func (end endStep) with(result string, err error) {
	if end != nil {
		end(result, err)
	}
}

// observe starts an observed step.
func (c *Cache[V]) observe(ctx context.Context, op Op, key string, keys int) (context.Context, endStep) {
	if c.opts.Observer == nil {
		return ctx, nil
	}
	return c.opts.Observer.Start(ctx, Call{Op: op, Key: key, Keys: keys})
}

// observeWrite starts an observed write named name.
func (c *Cache[V]) observeWrite(ctx context.Context, name, key string, keys int) (context.Context, endStep) {
	if c.opts.Observer == nil {
		return ctx, nil
	}
	return c.opts.Observer.Start(ctx, Call{Op: OpWrite, Key: key, Keys: keys, Name: name})
}

// endRead ends an observed plain Redis read.
func endRead(end endStep, err error) {
	if end == nil {
		return
	}
	switch {
	case err == nil:
		end.with("hit", nil)
	case errors.Is(err, remote.ErrMiss):
		end.with("miss", nil)
	default:
		end.with("error", err)
	}
}

// endLease ends an observed lease round.
func endLease(end endStep, r *remote.LeaseResult, err error) {
	if end == nil {
		return
	}
	switch {
	case err != nil:
		end.with("error", err)
	case r.Found:
		end.with("hit", nil)
	case r.Leased:
		end.with("leased", nil)
	default:
		end.with("held", nil)
	}
}

// oneKey is the key of a step over one key, and "" for several.
func oneKey(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	return ""
}

// endLoad ends an observed loader call.
func endLoad(end endStep, err error) {
	if end == nil {
		return
	}
	var lp *LoaderPanic
	switch {
	case err == nil:
		end.with("ok", nil)
	case errors.Is(err, ErrNotFound):
		end.with("not-found", nil)
	case errors.As(err, &lp):
		end.with("panic", err)
	default:
		end.with("error", err)
	}
}

// endFill ends an observed fill.
func endFill(end endStep, stored bool, err error) {
	if end == nil {
		return
	}
	switch {
	case err != nil:
		end.with("error", err)
	case stored:
		end.with("stored", nil)
	default:
		end.with("voided", nil)
	}
}

// endWrite ends an observed write, or a step over several keys.
func endWrite(end endStep, err error) {
	if end == nil {
		return
	}
	if err != nil {
		end.with("error", err)
		return
	}
	end.with("ok", nil)
}
