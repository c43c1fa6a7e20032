package redistest

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/rediskeys"
	"github.com/tiercache/tiercache/internal/redisserver"
)

// ExampleRedisEnv is the variable the packages' runnable examples read
// their Redis from, as a user's program would: examples may not import
// internal/, so they cannot start a server themselves.
const ExampleRedisEnv = "REDIS_URL"

// Runner is what TestMain runs: a *testing.M, or a wrapper of one (what
// goleak.VerifyTestMain takes).
type Runner interface{ Run() int }

// WithExampleRedis wraps m, for TestMain, so that the package's examples
// always have a Redis and their output is always checked:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(redistest.WithExampleRedis(m, "example:tiered:"))
//	}
//
// When REDIS_URL is unset, Run starts a redis-server on a free port, sets
// REDIS_URL to it for the run and stops the server after. When REDIS_URL
// is set (a Redis of the caller's, or the parent's server inherited by a
// test's child process), Run uses it and first deletes the keys under
// prefix, the examples' namespaces, so that a second run starts as the
// first did (on a single Redis: on a Cluster, SCAN reaches one node). A
// server that cannot be started or reached fails the whole binary (exit
// status 1), as Start fails a test: `make test` installs redis-server.
func WithExampleRedis(m Runner, prefix string) Runner {
	return exampleRedis{m: m, prefix: prefix}
}

type exampleRedis struct {
	m      Runner
	prefix string
}

func (e exampleRedis) Run() int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if url := os.Getenv(ExampleRedisEnv); url != "" {
		if err := deletePrefix(ctx, url, e.prefix); err != nil {
			fmt.Fprintf(os.Stderr, "redistest: %s=%s: clearing %s*: %v\n", ExampleRedisEnv, url, e.prefix, err)
			return 1
		}
		return e.m.Run()
	}
	s, err := redisserver.Start(ctx, redisserver.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "redistest: a Redis for the examples: %v\n", err)
		return 1
	}
	defer s.Stop()
	os.Setenv(ExampleRedisEnv, s.URL())
	defer os.Unsetenv(ExampleRedisEnv)
	return e.m.Run()
}

// deletePrefix deletes the keys under prefix in the Redis at url.
func deletePrefix(ctx context.Context, url, prefix string) error {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return err
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return err
	}
	defer c.Close()
	return rediskeys.DeletePrefix(ctx, c, prefix)
}
