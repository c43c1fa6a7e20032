package redistest

import (
	"context"
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
		c := ClientWith(tb, rueidis.ClientOption{InitAddress: []string{n.Addr()}, DisableCache: true, ForceSingleClient: true})
		for {
			info, err := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				tb.Fatalf("cluster not ready: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return cl
}

// Addrs are the nodes' addresses.
func (cl *Cluster) Addrs() []string {
	out := make([]string, len(cl.Nodes))
	for i, n := range cl.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Client opens a rueidis Cluster client, closed at cleanup.
func (cl *Cluster) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	return ClientWith(tb, rueidis.ClientOption{InitAddress: cl.Addrs(), DisableCache: true})
}

// Reshard moves n slots from the node at index from to the node at index
// to, keys included (redis-cli --cluster reshard, which MIGRATEs them).
func (cl *Cluster) Reshard(tb testing.TB, from, to, n int) {
	tb.Helper()
	id := func(i int) string {
		out, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", itoa(cl.Nodes[i].Port()), "cluster", "myid").Output()
		if err != nil {
			tb.Fatalf("cluster myid: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	out, err := exec.Command("redis-cli", "--cluster", "reshard", cl.Nodes[0].Addr(),
		"--cluster-from", id(from), "--cluster-to", id(to), "--cluster-slots", itoa(n), "--cluster-yes").CombinedOutput()
	if err != nil {
		tb.Fatalf("redis-cli --cluster reshard: %v: %s", err, out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
