package redistest

import (
	"context"
	"testing"
	"time"
)

func TestSentinelGroupFailsOver(t *testing.T) {
	g := StartSentinel(t, 500*time.Millisecond)
	c := g.Client(t)
	ctx := context.Background()
	if err := c.Do(ctx, c.B().Set().Key("a").Value("1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	g.Master.Kill()
	start := time.Now()
	for {
		err := c.Do(ctx, c.B().Set().Key("a").Value("2").Build()).Error()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("failover took %v", time.Since(start))
}
