package main

import (
	"net"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestParseRedis(t *testing.T) {
	for _, tc := range []struct {
		in         string
		addr       string
		user, pass string
		db         int
		tls        bool
	}{
		{in: "127.0.0.1:6379", addr: "127.0.0.1:6379"},
		{in: " localhost:7000 ", addr: "localhost:7000"},
		{in: "[::1]:6379", addr: "[::1]:6379"},
		{in: "redis://127.0.0.1:6379", addr: "127.0.0.1:6379"},
		{in: "redis://cache.internal", addr: "cache.internal:6379"},
		{in: "redis://127.0.0.1:6379/3", addr: "127.0.0.1:6379", db: 3},
		{in: "redis://svc:s3cret@10.0.0.5:6380/1", addr: "10.0.0.5:6380", user: "svc", pass: "s3cret", db: 1},
		{in: "redis://:onlypass@h:1", addr: "h:1", pass: "onlypass"},
		{in: "rediss://cache.example.com:6380", addr: "cache.example.com:6380", tls: true},
		{in: "rediss://u:p@cache.example.com:6380/2", addr: "cache.example.com:6380", user: "u", pass: "p", db: 2, tls: true},
	} {
		opt, err := parseRedis(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, []string{tc.addr}, opt.InitAddress, tc.in)
		assert.Equal(t, tc.user, opt.Username, tc.in)
		assert.Equal(t, tc.pass, opt.Password, tc.in)
		assert.Equal(t, tc.db, opt.SelectDB, tc.in)
		assert.Equal(t, tc.tls, opt.TLSConfig != nil, tc.in)
	}
	for _, in := range []string{"", "localhost", "127.0.0.1:", ":6379", "127.0.0.1:99999", "127.0.0.1:port",
		"://bad", "http://h:1", "unix:///tmp/redis.sock", "redis://h:1/db", "redis://h:1/1/2", "redis://u:pw@h:notaport"} {
		_, err := parseRedis(in)
		assert.ErrorIs(t, err, errRedisAddress, "%q", in)
		if err != nil {
			assert.Contains(t, err.Error(), "give host:port", "%q: the error names the fix", in)
			assert.NotContains(t, err.Error(), ":pw@", "%q: never the password", in)
		}
	}
	assert.Equal(t, "redis://u:xxxxx@h:1", redact("redis://u:pw@h:1"))
	assert.Equal(t, "redis://h:1", redact("redis://h:1"))
}

// TestRedisURLFromTheEnvironment: without --redis, $REDIS_URL as it is
// when the command runs.
func TestRedisURLFromTheEnvironment(t *testing.T) {
	srv := redistest.Start(t)
	t.Setenv("REDIS_URL", srv.Addr())
	code, out, errOut := cli(t, "inspect", "--namespace", "svc", "k")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "key ")

	t.Setenv("REDIS_URL", "redis://u:pw@nowhere:bad")
	code, _, errOut = cli(t, "inspect", "--namespace", "svc", "k")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `bad $REDIS_URL "redis://u:xxxxx@nowhere:bad"`)

	code, _, errOut = cli(t, "inspect", "--namespace", "svc", "--redis", srv.URL(), "k")
	assert.Equal(t, 0, code, "--redis wins over $REDIS_URL: %s", errOut)
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestUnreachableRedisIsOneClearError: every command that needs Redis stops
// at the connection check with one line naming the address, exit code 1.
func TestUnreachableRedisIsOneClearError(t *testing.T) {
	addr := closedPort(t)
	for _, args := range [][]string{
		{"bench", "--redis", addr, "--quick"},
		{"inspect", "--namespace", "svc", "--redis", "redis://u:pw@" + addr, "k"},
		{"hot", "--namespace", "svc", "--redis", addr},
		{"warmup", "--namespace", "svc", "--from", addr, "--to", "redis://" + addr + "/1"},
	} {
		code, out, errOut := cli(t, args...)
		assert.Equal(t, 1, code, "%v", args)
		assert.Empty(t, out, "%v", args)
		assert.Equal(t, 1, strings.Count(errOut, "\n"), "%v: one line: %q", args, errOut)
		assert.Contains(t, errOut, "cannot reach Redis at "+addr+": ", "%v", args)
		assert.NotContains(t, errOut, "pw", "%v", args)
	}
}

// TestConnectWithAPassword: the URL's password reaches Redis, and a
// refused AUTH is the connection check's error, with the address.
func TestConnectWithAPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	code, out, errOut := cli(t, "inspect", "--namespace", "svc", "--redis", "redis://:s3cret@"+srv.Addr(), "k")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "state ")
	_, err := connect(t.Context(), rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Password: "wrong"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Redis at "+srv.Addr()+" refused the connection: WRONGPASS")
}
