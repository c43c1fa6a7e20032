package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
)

// nodeClient opens a client to exactly one server, with no Cluster or
// Sentinel discovery, closed at cleanup.
func nodeClient(tb testing.TB, s *redisserver.Server) rueidis.Client {
	tb.Helper()
	return ClientWith(tb, rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true, ForceSingleClient: true})
}

// waitFor polls ready every 10 ms until it reports true, and fails the
// test with what and the last error when ctx ends first.
func waitFor(tb testing.TB, ctx context.Context, what string, ready func() (bool, error)) {
	tb.Helper()
	for {
		ok, err := ready()
		if ok {
			return
		}
		if ctx.Err() != nil {
			tb.Fatalf("%s: not ready: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// InSync reports whether the replica behind c has its link to the master up.
func InSync(ctx context.Context, c rueidis.Client) (bool, error) {
	info, err := c.Do(ctx, c.B().Info().Section("replication").Build()).ToString()
	return err == nil && strings.Contains(info, "master_link_status:up"), err
}

func addrsOf(servers []*redisserver.Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Addr()
	}
	return out
}
