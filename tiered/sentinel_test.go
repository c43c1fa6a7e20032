package tiered

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestSentinelFailoverDuringAWriteStorm runs the staleness ledger on four
// replicas with Sentinel clients and SIGKILLs the master a second in. The
// cache must keep serving (fail-open) while Sentinel promotes the replica,
// follow the new master, flush its local tier (the subscription moved), and
// serve no stale read once the failover is over. The failover window runs
// from the kill until a client can write to the new master, plus the
// ledger's grace.
func TestSentinelFailoverDuringAWriteStorm(t *testing.T) {
	g := redistest.StartSentinel(t, 500*time.Millisecond)
	probe := g.Client(t)
	var killedAt, writableAt, syncedAt, followedAt atomic.Int64
	// followed notes when every replica has resubscribed (to the new
	// master) since the kill: until then a replica may hold what it has
	// not been told was overwritten.
	followed := func(rs []*Cache[int64], stop <-chan struct{}) {
		var base []uint64
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if killedAt.Load() == 0 {
				continue
			}
			if base == nil {
				for _, r := range rs {
					base = append(base, r.Stats().Bus.Resubscribes)
				}
			}
			all := true
			for i, r := range rs {
				all = all && r.Stats().Bus.Resubscribes > base[i]
			}
			if all {
				followedAt.Store(time.Now().UnixNano())
				return
			}
		}
	}
	chaos := func(stop <-chan struct{}) {
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
		killedAt.Store(time.Now().UnixNano())
		g.Master.Kill()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err := probe.Do(ctx, probe.B().Set().Key("probe").Value("1").Build()).Error()
			cancel()
			if err == nil {
				writableAt.Store(time.Now().UnixNano())
				break
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		// A replacement replica of the new master joins, as an operator
		// would add one, and writes can be confirmed again. (Sentinel
		// would reconfigure the old master when it comes back, but only on
		// its next INFO round, up to 10 s later.)
		spare := redistest.Start(t, "--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", strconv.Itoa(g.Replica.Port()))
		old := redistest.Client(t, spare)
		for {
			if ok, _ := redistest.InSync(context.Background(), old); ok {
				syncedAt.Store(time.Now().UnixNano())
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	res := runLedger(t, nil, ledgerRun{
		replicas: 4, keys: 64, minReads: 50_000, minDuration: 10 * time.Second, maxDuration: 60 * time.Second,
		chaos: chaos,
		// Writes complete once the replica has them, so the failover
		// cannot lose one (see Options.WaitReplicas).
		waitReplicas: 1,
		client:       func(tb testing.TB) rueidis.Client { return g.Client(tb) },
		observe:      followed,
		windowEnd:    func() time.Time { return time.Unix(0, max(writableAt.Load(), followedAt.Load())).Add(grace) },
	})
	require.NotZero(t, writableAt.Load(), "the new master never accepted a write")
	require.NotZero(t, followedAt.Load(), "some replica never followed the new master")
	window := time.Duration(max(writableAt.Load(), followedAt.Load())-killedAt.Load()) + grace
	t.Logf("a replacement replica was in sync %v after the kill", time.Duration(syncedAt.Load()-killedAt.Load()).Round(time.Millisecond))
	t.Logf("every replica resubscribed %v after the kill", time.Duration(followedAt.Load()-killedAt.Load()).Round(time.Millisecond))
	t.Logf("sentinel failover: window %v (kill → new master writable %v, + %v grace); reads=%d stale-in-window=%d stale-after=%d writes=%d resubscribe-flushes=%d",
		window.Round(time.Millisecond), time.Duration(writableAt.Load()-killedAt.Load()).Round(time.Millisecond), grace,
		res.reads, res.staleInWindow, res.stale, res.writes, res.resubscribeFlushes)
	assert.Zero(t, res.stale, "no stale read after the failover window")
	assert.Greater(t, res.lastWrite, writableAt.Load()+int64(time.Second),
		"writes went on well after the failover, so reads after the window were judged against them")
	assert.Positive(t, res.resubscribeFlushes, "the replicas followed the new master and flushed by epoch")
}
