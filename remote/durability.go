package remote

import (
	"context"
	"strings"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/replies"
)

// Durability is what Redis says about keeping the write-behind queue: a
// stream with no TTL, so only an allkeys-* eviction policy can evict it,
// and only persistence keeps it across a restart.
type Durability struct {
	// Policy is maxmemory-policy, "" when it could not be read.
	Policy string
	// AOF reports appendonly on (on every node of a Cluster).
	AOF bool
	// Known reports that Policy and AOF were read, through CONFIG GET or,
	// where an ACL or a managed Redis forbids CONFIG, through INFO.
	Known bool
}

// CanEvictQueue reports a policy under which Redis may evict the queue
// (allkeys-*: any key; volatile-* evicts only keys with a TTL, and the
// queue has none).
func (d Durability) CanEvictQueue() bool { return strings.HasPrefix(d.Policy, "allkeys-") }

// Durability reads the eviction policy and persistence of the store's
// Redis (ReadDurability), through its breaker.
func (s *Store) Durability(ctx context.Context) (_ Durability, err error) {
	ctx, inf, err := s.begin(ctx, OpQueue)
	if err != nil {
		return Durability{}, err
	}
	defer inf.end(&err)
	return ReadDurability(ctx, s.opts.Client)
}

// ReadDurability reads the eviction policy and persistence of the Redis
// behind c (of every master, on a Cluster: the worst wins).
func ReadDurability(ctx context.Context, c rueidis.Client) (Durability, error) {
	nodes := map[string]rueidis.Client{"": c}
	if c.Mode() == rueidis.ClientModeCluster {
		nodes = c.Nodes()
	}
	out := Durability{Known: true, AOF: true}
	for _, c := range nodes {
		d, err := nodeDurability(ctx, c)
		if err != nil {
			return Durability{}, err
		}
		if !d.Known {
			return d, nil
		}
		if out.Policy == "" || d.CanEvictQueue() {
			out.Policy = d.Policy
		}
		out.AOF = out.AOF && d.AOF
	}
	return out, nil
}

func nodeDurability(ctx context.Context, c rueidis.Client) (Durability, error) {
	m, err := c.Do(ctx, c.B().ConfigGet().Parameter("maxmemory-policy", "appendonly").Build()).AsStrMap()
	if err == nil {
		return Durability{Policy: m["maxmemory-policy"], AOF: m["appendonly"] == "yes", Known: true}, nil
	}
	if !refusedForGood(err) {
		return Durability{}, err // not answered, or "later": not judged
	}
	// CONFIG refused (an ACL, or renamed by a managed Redis): INFO says it
	// too.
	info, err := c.Do(ctx, c.B().Info().Section("memory").Section("persistence").Build()).ToString()
	if err != nil {
		if refusedForGood(err) {
			return Durability{}, nil // neither: unknown
		}
		return Durability{}, err
	}
	policy := InfoField(info, "maxmemory_policy")
	return Durability{Policy: policy, AOF: InfoField(info, "aof_enabled") == "1", Known: policy != ""}, nil
}

// refusedForGood reports an error reply that asking again will not change
// (a permission, a renamed command), as against one that says "later" (a
// busy script, a dataset loading), which must not pass for "CONFIG is
// forbidden here": the answer "unknown" is kept for a while.
func refusedForGood(err error) bool {
	re, ok := replies.Of(err)
	return ok && !replies.Transient(re)
}

// infoValue is one field of an INFO reply.
func InfoField(info, field string) string {
	_, rest, ok := strings.Cut(info, "\n"+field+":")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "\n")
	return strings.TrimSpace(v)
}
