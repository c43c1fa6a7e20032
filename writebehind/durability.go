package writebehind

import (
	"context"
	"fmt"

	"github.com/tiercache/tiercache/remote"
)

// checkDurability refuses to flush a queue Redis may evict (allkeys-*)
// unless Options.AllowQueueEviction, and says when persistence is off. A
// Redis that cannot be asked (down, loading, busy) is not judged (judged
// false): Run asks again before each round until it answers.
func (f *Flusher[V]) checkDurability(ctx context.Context) (judged bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.RemoteTimeout)
	defer cancel()
	d, err := remote.ReadDurability(ctx, f.opts.Client)
	if err != nil {
		return false, nil
	}
	switch {
	case !d.Known:
		f.log.Warn("queue:unverified", "write-behind: cannot read the eviction policy (CONFIG and INFO refused): make sure it is noeviction or volatile-*, and that persistence is on")
	case d.CanEvictQueue() && !f.opts.AllowQueueEviction:
		err := fmt.Errorf("%w: Redis maxmemory-policy is %s, which can evict the queue and every acknowledged write it holds; use noeviction or a volatile-* policy, or a dedicated Redis, or set Options.AllowQueueEviction to accept losses", ErrQueueUnsafe, d.Policy)
		f.log.Error("queue:unsafe", "write-behind flusher refused", "err", err)
		return true, err
	case d.CanEvictQueue():
		f.log.Warn("queue:evictable", "write-behind on an evicting Redis (AllowQueueEviction): queued writes may be lost; losses are counted", "policy", d.Policy)
	}
	if d.Known && !d.AOF {
		f.log.Warn("queue:no-aof", "write-behind: Redis persistence (appendonly) is off: a restart loses the queued writes")
	}
	return true, nil
}
