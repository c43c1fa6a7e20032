package redistest

import (
	"context"
	"fmt"
	"testing"
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
