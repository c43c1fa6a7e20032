package tiered

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// hitCounter counts local hits exactly, the one event on the hot path,
// without a contended cache line. One shared atomic costs as much as the
// hit itself when cores share its line; so each P counts in a shard of its
// own, handed out by a sync.Pool (which keeps one item per P, and takes no
// lock to give it back). The shards are made up front and never dropped:
// when the pool forgets one (at GC, or under the race detector) its New
// hands out an existing shard again, so no count is lost and no hit
// allocates. Two Ps may then share a shard for a while; its atomic keeps
// the count exact.
type hitCounter struct {
	pool   sync.Pool
	shards []hitShard
	next   atomic.Uint32
}

type hitShard struct {
	n atomic.Uint64
	_ [56]byte // a cache line of its own
}

func (h *hitCounter) init() {
	h.shards = make([]hitShard, 4*runtime.GOMAXPROCS(0))
	h.pool.New = func() any { return &h.shards[int(h.next.Add(1))%len(h.shards)] }
}

func (h *hitCounter) inc() {
	s := h.pool.Get().(*hitShard)
	s.n.Add(1)
	h.pool.Put(s)
}

func (h *hitCounter) load() uint64 {
	var n uint64
	for i := range h.shards {
		n += h.shards[i].n.Load()
	}
	return n
}
