package redistest

import (
	"context"
	"os"
	"testing"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runner stands in for a *testing.M: its Run calls run.
type runner func() int

func (r runner) Run() int { return r() }

// TestWithExampleRedisStartsOne: without REDIS_URL, the examples get a
// server of their own for the run, gone after it.
func TestWithExampleRedisStartsOne(t *testing.T) {
	t.Setenv(ExampleRedisEnv, "")
	os.Unsetenv(ExampleRedisEnv)
	var url string
	code := WithExampleRedis(runner(func() int {
		url = os.Getenv(ExampleRedisEnv)
		c := ClientWith(t, rueidis.MustParseURL(url))
		require.NoError(t, c.Do(context.Background(), c.B().Ping().Build()).Error())
		return 3
	}), "example:test:").Run()
	assert.Equal(t, 3, code, "the run's own exit code")
	assert.NotEmpty(t, url)
	assert.Empty(t, os.Getenv(ExampleRedisEnv), "REDIS_URL is unset again")
}

// TestWithExampleRedisClearsThePrefix: with REDIS_URL given, the examples
// use it, and their prefix is cleared first, and nothing else.
func TestWithExampleRedisClearsThePrefix(t *testing.T) {
	srv := Start(t)
	c := Client(t, srv)
	ctx := context.Background()
	for _, k := range []string{"example:test:a", "example:test:{b}:c", "other:a"} {
		require.NoError(t, c.Do(ctx, c.B().Set().Key(k).Value("v").Build()).Error())
	}
	t.Setenv(ExampleRedisEnv, srv.URL())
	var keys []string
	code := WithExampleRedis(runner(func() int {
		keys = AllKeys(t, c)
		return 0
	}), "example:test:").Run()
	assert.Equal(t, 0, code)
	assert.Equal(t, []string{"other:a"}, keys)
}
