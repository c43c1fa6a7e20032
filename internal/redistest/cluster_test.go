package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClusterStartsAndReshards(t *testing.T) {
	cl := StartCluster(t)
	c := cl.Client(t)
	ctx := context.Background()
	for i := range 100 {
		if err := c.Do(ctx, c.B().Set().Key(fmt.Sprint("k", i)).Value("v").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Reshard(0, 1, 500); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if v, err := c.Do(ctx, c.B().Get().Key(fmt.Sprint("k", i)).Build()).ToString(); err != nil || v != "v" {
			t.Fatalf("k%d after reshard: %q %v", i, v, err)
		}
	}
}

// TestClusterHealsASplitSlot recreates what a reshard once left behind
// (redis/redis#2969): the owner of a slot names another node as its owner,
// the rest of the cluster names the owner, and gossip never settles it.
func TestClusterHealsASplitSlot(t *testing.T) {
	cl := StartCluster(t)
	ids := make([]string, len(cl.Nodes))
	for i, n := range cl.Nodes {
		out, err := cli(n, "cluster", "myid")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = strings.TrimSpace(out)
	}
	// Slot 0 belongs to node 0 (redis-cli --cluster create splits in
	// order); node 0 alone now believes node 1 has it.
	if out, err := cli(cl.Nodes[0], "cluster", "setslot", "0", "node", ids[1]); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("setslot: %q %v", out, err)
	}
	if cl.waitAgreed(2*time.Second) == nil {
		t.Fatal("the split did not happen: the nodes agree")
	}
	cl.heal()
	if err := cl.waitAgreed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if cl.Heals.Load() != 1 {
		t.Errorf("healed %d slots, want 1", cl.Heals.Load())
	}
	for i, n := range cl.Nodes {
		out, err := cli(n, "cluster", "nodes")
		if err != nil {
			t.Fatal(err)
		}
		if owner := slotOwners(out)[0]; owner != ids[0] {
			t.Errorf("node %d says slot 0 belongs to %s, want %s", i, owner, ids[0])
		}
	}
}

// A dispute the last reshard left behind is healed before the next one,
// instead of failing it.
func TestReshardHealsADisputeLeftBefore(t *testing.T) {
	cl := StartCluster(t)
	id1, err := cli(cl.Nodes[1], "cluster", "myid")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cli(cl.Nodes[0], "cluster", "setslot", "0", "node", strings.TrimSpace(id1)); err != nil || strings.TrimSpace(out) != "OK" {
		t.Fatalf("setslot: %q %v", out, err)
	}
	if err := cl.Reshard(1, 2, 10); err != nil {
		t.Fatal(err)
	}
	if cl.Heals.Load() == 0 {
		t.Error("the dispute was not healed")
	}
	if err := cl.waitAgreed(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
