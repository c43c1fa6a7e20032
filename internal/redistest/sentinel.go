package redistest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
)

// SentinelGroup is a master, one replica and three Sentinels on loopback,
// watching the master as MasterSet.
type SentinelGroup struct {
	Master, Replica *redisserver.Server
	Sentinels       []*redisserver.Server
}

// MasterSet is the name the Sentinels know the master by.
const MasterSet = "tiercache"

// StartSentinel starts a SentinelGroup, stopped at cleanup. The Sentinels
// call the master down after downAfter without answers (quorum 2), so a
// killed master is replaced within about downAfter plus an election.
func StartSentinel(tb testing.TB, downAfter time.Duration) *SentinelGroup {
	tb.Helper()
	// No diskless-sync delay: the replica is in sync at once, not in 5 s.
	noDelay := []string{"--repl-diskless-sync-delay", "0"}
	g := &SentinelGroup{Master: Start(tb, noDelay...)}
	g.Replica = Start(tb, append(noDelay, "--replicaof", "127.0.0.1", strconv.Itoa(g.Master.Port()))...)
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2\n"+
		"sentinel down-after-milliseconds %s %d\n"+
		"sentinel failover-timeout %s 5000\n",
		MasterSet, g.Master.Port(), MasterSet, downAfter.Milliseconds(), MasterSet)
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := redisserver.Start(ctx, redisserver.Options{Config: conf, Sentinel: true})
		cancel()
		if err != nil {
			tb.Fatalf("start sentinel: %v", err)
		}
		tb.Cleanup(s.Stop)
		g.Sentinels = append(g.Sentinels, s)
	}
	// Ready once the replica is in sync and every Sentinel knows it and
	// its peers.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := nodeClient(tb, g.Replica)
	waitFor(tb, ctx, "replica in sync", func() (bool, error) { return InSync(ctx, rc) })
	for _, s := range g.Sentinels {
		c := nodeClient(tb, s)
		waitFor(tb, ctx, "sentinel "+s.Addr(), func() (bool, error) {
			m, err := c.Do(ctx, c.B().Arbitrary("SENTINEL", "MASTER", MasterSet).Build()).AsStrMap()
			return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2", err
		})
	}
	return g
}

// Addrs are the Sentinels' addresses.
func (g *SentinelGroup) Addrs() []string { return addrsOf(g.Sentinels) }

// Client opens a rueidis Sentinel client to the group, closed at cleanup.
func (g *SentinelGroup) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	return ClientWith(tb, rueidis.ClientOption{
		InitAddress:  g.Addrs(),
		Sentinel:     rueidis.SentinelOption{MasterSet: MasterSet},
		DisableCache: true,
	})
}
