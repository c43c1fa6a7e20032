package redistest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redisserver"
)

// Start runs a redis-server for the test and stops it at cleanup.
func Start(tb testing.TB, args ...string) *redisserver.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := redisserver.Start(ctx, redisserver.Options{Args: args})
	if errors.Is(err, redisserver.ErrNotInstalled) {
		tb.Fatalf("%v", err)
	}
	if err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Client opens a rueidis client to s, closed at cleanup. Client-side caching
// is off: the code under test brings its own local tier.
func Client(tb testing.TB, s *redisserver.Server) rueidis.Client {
	tb.Helper()
	return ClientWith(tb, rueidis.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
}

// ClientWith opens a rueidis client with the given options, closed at cleanup.
func ClientWith(tb testing.TB, opt rueidis.ClientOption) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(opt)
	if err != nil {
		tb.Fatalf("rueidis client: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// AllKeys lists every key of c's Redis, sorted (with KEYS: for a test's
// own throwaway server only).
func AllKeys(tb testing.TB, c rueidis.Client) []string {
	tb.Helper()
	keys, err := c.Do(context.Background(), c.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		tb.Fatalf("KEYS *: %v", err)
	}
	slices.Sort(keys)
	return keys
}

// InfoField reads one numeric field of an INFO section.
func InfoField(tb testing.TB, c rueidis.Client, section, field string) int64 {
	tb.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		tb.Fatalf("INFO %s: %v", section, err)
	}
	_, rest, ok := strings.Cut(info, field+":")
	if !ok {
		tb.Fatalf("INFO %s has no %s", section, field)
	}
	v, _, _ := strings.Cut(rest, "\r\n")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		tb.Fatalf("INFO %s %s: %v", section, field, err)
	}
	return n
}

// CPU is the CPU time (user and system) Redis's main process has spent
// (INFO cpu): a benchmark diffs it to report Redis's share of its work.
func CPU(tb testing.TB, c rueidis.Client) time.Duration {
	tb.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		tb.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for _, field := range []string{"used_cpu_user:", "used_cpu_sys:"} {
		_, rest, ok := strings.Cut(info, field)
		if !ok {
			tb.Fatalf("INFO cpu has no %s", field)
		}
		v, _, _ := strings.Cut(rest, "\r\n")
		s, err := strconv.ParseFloat(v, 64)
		if err != nil {
			tb.Fatalf("INFO cpu %s %v", field, err)
		}
		total += s
	}
	return time.Duration(total * float64(time.Second))
}

// SelfCPU is the CPU time (user and system) the test process has spent:
// beside CPU, a benchmark's share of the work on its own side.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
