package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
)

// Cluster is a Redis Cluster of three masters on loopback, no replicas.
type Cluster struct {
	Nodes []*redisserver.Server
	// Heals counts the slots Reshard had to re-assign (see heal).
	Heals atomic.Int64
	// Fixes counts the reshards redis-cli ended with a slot left open,
	// closed with redis-cli --cluster fix.
	Fixes atomic.Int64
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
	for attempt := 1; ; attempt++ {
		err := cl.reshard(from, to, n)
		if !errors.Is(err, errRefused) || attempt == 3 {
			return err
		}
	}
}

// errRefused is a reshard redis-cli refused to start, moving nothing:
// its own check found the nodes in disagreement, which can come back
// between settle's check and redis-cli's (a heal's epoch bump, gossip of
// the previous move).
var errRefused = errors.New("redis-cli refused to reshard")

func (cl *Cluster) reshard(from, to, n int) error {
	if err := cl.settle(5 * time.Second); err != nil {
		return err
	}
	id := func(i int) (string, error) {
		out, err := cli(cl.Nodes[i], "cluster", "myid")
		return strings.TrimSpace(out), err
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
	if err != nil && strings.Contains(string(out), "Please fix your cluster problems before resharding") {
		return fmt.Errorf("%w: %s", errRefused, out)
	}
	if err != nil {
		// The same race can strike the last slot's CLUSTER SETSLOT … NODE
		// itself ("I'm not the owner of hash slot"), which ends redis-cli
		// with a slot still open: close it (--cluster fix) and settle the
		// owners, as after a reshard that ended that way.
		fix, ferr := exec.Command("redis-cli", "--cluster", "fix", cl.Nodes[0].Addr(), "--cluster-yes").CombinedOutput()
		cl.heal()
		if ferr != nil || cl.waitAgreed(5*time.Second) != nil {
			return fmt.Errorf("redis-cli --cluster reshard: %w: %s; fix: %v: %s", err, out, ferr, fix)
		}
		cl.Fixes.Add(1)
		return nil
	}
	if cl.waitAgreed(3*time.Second) != nil {
		cl.heal()
	}
	return nil
}

// settle waits until every node agrees on the slot map; if they still
// disagree after timeout, it heals the slots in dispute and waits once
// more. A reshard can leave a disagreement that outlives its own check:
// the target naming a third node as a slot's owner while the other two
// name the target, which gossip never settles either.
func (cl *Cluster) settle(timeout time.Duration) error {
	if cl.waitAgreed(timeout) == nil {
		return nil
	}
	cl.heal()
	return cl.waitAgreed(timeout)
}

// heal settles slots whose owner the nodes disagree about, to the owner most
// nodes name. Redis can end a reshard that way (redis/redis#2969): the
// target's CLUSTER SETSLOT … NODE is overridden by gossip from the source,
// so the target names the source as the owner while the source and the
// third node name the target, and gossip never settles it. The owner is
// told the slot is its own, then bumps its config epoch so that its claim
// wins everywhere.
func (cl *Cluster) heal() {
	views := make([][]string, len(cl.Nodes))
	byID := map[string]*redisserver.Server{}
	for i, n := range cl.Nodes {
		out, err := cli(n, "cluster", "nodes")
		if err != nil {
			return
		}
		views[i] = slotOwners(out)
		if id, err := cli(n, "cluster", "myid"); err == nil {
			byID[strings.TrimSpace(id)] = n
		}
	}
	for slot := range views[0] {
		votes := map[string]int{}
		for _, v := range views {
			votes[v[slot]]++
		}
		if len(votes) == 1 {
			continue
		}
		for owner, n := range votes {
			if node := byID[owner]; node != nil && 2*n > len(views) {
				cl.Heals.Add(1)
				cli(node, "cluster", "setslot", strconv.Itoa(slot), "node", owner)
				cli(node, "cluster", "bumpepoch")
			}
		}
	}
}

// slotOwners reads CLUSTER NODES output into the owner's id per slot.
func slotOwners(nodes string) []string {
	owners := make([]string, 16384)
	for line := range strings.Lines(nodes) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, errA := strconv.Atoi(lo)
			b, errB := strconv.Atoi(hi)
			for s := a; errA == nil && errB == nil && s <= b && s < len(owners); s++ {
				owners[s] = f[0]
			}
		}
	}
	return owners
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
		out, err := cli(n, "cluster", "nodes")
		fmt.Fprintf(&b, "%s (err %v):\n%s\n", n.Addr(), err, out)
	}
	return b.String()
}

// cli runs one redis-cli command against a node and returns its output.
func cli(n *redisserver.Server, args ...string) (string, error) {
	args = append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.Port())}, args...)
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	return string(out), err
}
