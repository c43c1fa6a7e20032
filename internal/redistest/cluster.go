package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
)

// Cluster is a Redis Cluster of three masters on loopback, no replicas.
type Cluster struct {
	Nodes []*redisserver.Server
}

// StartCluster starts the three nodes with cluster mode on, joins them with
// redis-cli --cluster create (the slots split evenly), waits until every
// node reports cluster_state:ok, and stops them at cleanup.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	cl := &Cluster{}
	for range 3 {
		cl.Nodes = append(cl.Nodes, Start(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000"))
	}
	args := []string{"--cluster", "create"}
	args = append(args, cl.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range cl.Nodes {
		c := nodeClient(tb, n)
		waitFor(tb, ctx, "cluster node "+n.Addr(), func() (bool, error) {
			info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
			return err == nil && strings.Contains(info, "cluster_state:ok"), err
		})
	}
	return cl
}

// Addrs are the nodes' addresses.
func (cl *Cluster) Addrs() []string { return addrsOf(cl.Nodes) }

// Client opens a rueidis Cluster client, closed at cleanup.
func (cl *Cluster) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	return ClientWith(tb, rueidis.ClientOption{InitAddress: cl.Addrs(), DisableCache: true})
}

// Reshard moves n slots from the node at index from to the node at index
// to, keys included (redis-cli --cluster reshard, which MIGRATEs them). It
// first waits until every node agrees on the slot map, since redis-cli
// refuses to start otherwise (the previous move may still be gossiping).
// It returns an error rather than failing the test, so that it can run
// beside the test's goroutine.
func (cl *Cluster) Reshard(from, to, n int) error {
	if err := cl.waitAgreed(10 * time.Second); err != nil {
		return err
	}
	id := func(i int) (string, error) {
		out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(cl.Nodes[i].Port()), "cluster", "myid").Output()
		return strings.TrimSpace(string(out)), err
	}
	fromID, err := id(from)
	if err != nil {
		return fmt.Errorf("cluster myid: %w", err)
	}
	toID, err := id(to)
	if err != nil {
		return fmt.Errorf("cluster myid: %w", err)
	}
	out, err := exec.Command("redis-cli", "--cluster", "reshard", cl.Nodes[0].Addr(),
		"--cluster-from", fromID, "--cluster-to", toID, "--cluster-slots", strconv.Itoa(n), "--cluster-yes").CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster reshard: %w: %s", err, out)
	}
	return nil
}

// waitAgreed waits until redis-cli --cluster check finds every node in
// agreement and every slot covered.
func (cl *Cluster) waitAgreed(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command("redis-cli", "--cluster", "check", cl.Nodes[0].Addr()).CombinedOutput()
		if err == nil && !strings.Contains(string(out), "[ERR]") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster never settled: %v: %s\nslot maps:\n%s", err, out, cl.slotMaps())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slotMaps is every node's CLUSTER NODES, for diagnosing a cluster that
// does not settle.
func (cl *Cluster) slotMaps() string {
	var b strings.Builder
	for _, n := range cl.Nodes {
		out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port()), "cluster", "nodes").CombinedOutput()
		fmt.Fprintf(&b, "%s (err %v):\n%s\n", n.Addr(), err, out)
	}
	return b.String()
}
