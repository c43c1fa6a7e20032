package coherence

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/replies"
)

// Both transports receive on connections they own: rueidis's Dedicate takes
// a connection out of the client's pool for the transport alone, and the
// transport closes it (never returns it to the pool) when it is done with
// it. So whatever the connection was made to do — SUBSCRIBE, CLIENT
// TRACKING — ends with it: two caches of one namespace on one client hold
// two connections and two Redis-level subscriptions, and closing one cannot
// unsubscribe the other or leave a channel subscribed.
//
// A Dedicate dials at once, outside any ctx, bounded by the client's
// ClientOption.Dialer.Timeout (5 s by default); Close may wait for a dial in
// flight.

// errRefused means Redis answered a command a transport needs with an error
// reply that retrying will not change: usually NOPERM, from an ACL user
// without the command or the channel. It is a configuration error, wrapped
// with Redis's own reply. At start, Subscribe and Track fail with it at once;
// afterwards it is reported to OnRefused, once per episode.
var errRefused = errors.New("coherence: redis refused a command")

// refusedRetry is how often a refused command is tried again after start:
// the ACL may be fixed, but not within milliseconds.
const refusedRetry = time.Second

// refusal returns err wrapped in errRefused when it is (or wraps) a Redis
// error reply that retrying will not change, and nil otherwise: success, a
// connection error or timeout, or a reply that says "later". err names the
// command refused.
func refusal(err error) error {
	re, ok := replies.Of(err)
	if !ok || replies.Transient(re) {
		return nil
	}
	return fmt.Errorf("%w: %w", errRefused, err)
}

// isReply reports whether err is (or wraps) an error reply from Redis: the
// connection that carried it is alive.
func isReply(err error) bool {
	_, ok := replies.Of(err)
	return ok
}

// refusals counts refused commands and reports each to a callback once per
// episode: the first refusal of a command since the start or since it last
// succeeded, not every retry of it.
type refusals struct {
	on     func(error) // nil: count only
	count  atomic.Uint64
	mu     sync.Mutex
	active map[string]bool // commands refused on their last attempt
}

func (r *refusals) refused(cmd string, err error) {
	r.count.Add(1)
	r.mu.Lock()
	first := !r.active[cmd]
	if r.active == nil {
		r.active = map[string]bool{}
	}
	r.active[cmd] = true
	r.mu.Unlock()
	if first && r.on != nil {
		r.on(err)
	}
}

func (r *refusals) accepted(cmd string) {
	r.mu.Lock()
	delete(r.active, cmd)
	r.mu.Unlock()
}

// lastError keeps the error of a transport's latest failed attempt, for the
// error a start that ran out of time returns.
type lastError struct{ p atomic.Pointer[error] }

func (l *lastError) store(err error) { l.p.Store(&err) }

// wrap returns ctxErr, and the last attempt's error if there was one.
func (l *lastError) wrap(ctxErr error) error {
	if p := l.p.Load(); p != nil {
		return fmt.Errorf("%w (last attempt: %w)", ctxErr, *p)
	}
	return ctxErr
}

// dedicate opens a connection of the bus's own. Sentinel clients dedicate
// a connection to the current master. On a Cluster, where a message
// published on any node reaches subscribers on every node, it dials the
// node-th of the client's nodes (in address order), so that a caller that
// moves on after a failure tries each node in turn. The connection may be
// dead already: its first command then fails.
func dedicate(c rueidis.Client, node int) rueidis.DedicatedClient {
	if c.Mode() == rueidis.ClientModeCluster {
		nodes := c.Nodes()
		if addrs := slices.Sorted(maps.Keys(nodes)); len(addrs) > 0 {
			c = nodes[addrs[node%len(addrs)]]
		}
	}
	d, _ := c.Dedicate() // Close releases it
	return d
}
