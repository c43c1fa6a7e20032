package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// dialTimeout bounds connecting to Redis and its first PING: a CLI aimed at
// the wrong address should say so at once, not after rueidis's own
// timeouts and retries.
const dialTimeout = 3 * time.Second

// errRedisAddress reports a --redis (or --from, --to, $REDIS_URL) that is
// neither host:port nor a redis:// or rediss:// URL.
var errRedisAddress = errors.New("not a Redis address")

// redisForms is the fix named by every address error.
const redisForms = "give host:port (e.g. 127.0.0.1:6379), redis://[user:pass@]host:port[/db], or rediss://… for TLS"

// parseRedis reads a Redis address: host:port, or a redis:// or rediss://
// URL with an optional user, password and database. (rueidis.ParseURL
// alone reads a bare host:port as a URL and fails on its colon.)
func parseRedis(s string) (rueidis.ClientOption, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return rueidis.ClientOption{}, fmt.Errorf("%w: empty; %s", errRedisAddress, redisForms)
	}
	if scheme, _, isURL := strings.Cut(s, "://"); isURL {
		if scheme != "redis" && scheme != "rediss" {
			return rueidis.ClientOption{}, fmt.Errorf("%w: scheme %q; %s", errRedisAddress, scheme, redisForms)
		}
		opt, err := rueidis.ParseURL(s)
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // without the URL it quotes, password and all
		}
		if err != nil {
			return rueidis.ClientOption{}, fmt.Errorf("%w: %v; %s", errRedisAddress, err, redisForms)
		}
		return opt, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return rueidis.ClientOption{}, fmt.Errorf("%w: %v; %s", errRedisAddress, err, redisForms)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return rueidis.ClientOption{}, fmt.Errorf("%w: %q needs a host and a port from 1 to 65535; %s", errRedisAddress, s, redisForms)
	}
	return rueidis.ClientOption{InitAddress: []string{net.JoinHostPort(host, port)}}, nil
}

// redisFlagOn declares the --redis flag of the commands that read a
// cache's Redis; redisFlag resolves it.
func redisFlagOn(fs *flag.FlagSet) *string {
	return fs.String("redis", "", "`ADDR` of the Redis: host:port, redis://[user:pass@]host:port[/db] or rediss://… (default $REDIS_URL)")
}

// redisFlag resolves a Redis flag: its value, else $REDIS_URL when the
// flag falls back to it (read now, when the command runs). It returns the
// options, or the problem to report.
func redisFlag(name, value string, fromEnv bool) (rueidis.ClientOption, string) {
	what := "--" + name
	if value == "" && fromEnv {
		value, what = os.Getenv("REDIS_URL"), "$REDIS_URL"
	}
	if value == "" {
		if fromEnv {
			return rueidis.ClientOption{}, fmt.Sprintf("--%s is required (or set $REDIS_URL): e.g. --%s 127.0.0.1:6379", name, name)
		}
		return rueidis.ClientOption{}, fmt.Sprintf("--%s is required: e.g. --%s 127.0.0.1:6379", name, name)
	}
	opt, err := parseRedis(value)
	if err != nil {
		return opt, fmt.Sprintf("bad %s %q: %v", what, redact(value), err)
	}
	return opt, ""
}

// redact masks the password of a Redis URL, for messages.
func redact(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	at := strings.LastIndexByte(rest, '@')
	if !ok || at < 0 {
		return s
	}
	user, pass, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass || pass == "" {
		return s
	}
	return s[:len(s)-len(rest)] + user + ":xxxxx" + rest[at:]
}

// connect opens a client and checks it with a PING, all within dialTimeout,
// so an unreachable Redis is one clear error naming its address (never
// the URL: it may hold a password).
func connect(ctx context.Context, opt rueidis.ClientOption) (rueidis.Client, error) {
	addr := strings.Join(opt.InitAddress, ",")
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	opt.DisableCache = true // the CLI reads each key once
	if opt.Dialer.Timeout == 0 || opt.Dialer.Timeout > dialTimeout {
		opt.Dialer.Timeout = dialTimeout
	}
	type dialed struct {
		c   rueidis.Client
		err error
	}
	// NewClient takes no ctx: it may wait on an address that accepts and
	// never answers. Past the limit it is left to finish, and closed.
	ch := make(chan dialed, 1)
	go func() {
		c, err := rueidis.NewClient(opt)
		ch <- dialed{c, err}
	}()
	var d dialed
	select {
	case d = <-ch:
	case <-ctx.Done():
		go func() {
			if d := <-ch; d.c != nil {
				d.c.Close()
			}
		}()
		return nil, fmt.Errorf("cannot reach Redis at %s: no answer within %v", addr, dialTimeout)
	}
	if d.err != nil && isRedisReply(d.err) { // a wrong password, say
		return nil, fmt.Errorf("Redis at %s refused the connection: %w", addr, d.err)
	}
	if d.err != nil {
		return nil, fmt.Errorf("cannot reach Redis at %s: %w", addr, d.err)
	}
	// Any reply proves Redis answers: an ACL user may be refused PING
	// (NOPERM) and still run the command at hand.
	if err := d.c.Do(ctx, d.c.B().Ping().Build()).Error(); err != nil && !isRedisReply(err) {
		d.c.Close()
		return nil, fmt.Errorf("cannot reach Redis at %s: PING: %w", addr, err)
	}
	return d.c, nil
}

func isRedisReply(err error) bool {
	_, ok := rueidis.IsRedisErr(err)
	return ok
}
