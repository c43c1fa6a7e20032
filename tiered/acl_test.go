package tiered_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/warmup"
	"github.com/tiercache/tiercache/writebehind"
)

// leastPrivilege is the ACL docs/operations.md gives a tiercache user, per
// feature, for namespace ns; TestLeastPrivilegeACL checks that it is
// enough. Keep the two in step: a new command in package remote or
// coherence fails the test until it is added here and in the docs.
func leastPrivilege(ns string) map[string][]string {
	return map[string][]string{
		"base":         {"resetkeys", "~" + ns + ":*", "resetchannels", "&" + ns + ":*", "-@all"},
		"cache":        {"+get", "+mget", "+set", "+del", "+pexpire", "+pttl", "+eval", "+evalsha", "+publish", "+subscribe", "+info"},
		"resumable":    {"+xadd", "+xrange", "+xrevrange"},
		"tracking":     {"+client|tracking", "+ping"},
		"write-behind": {"+xadd", "+xlen", "+xreadgroup", "+xack", "+xdel", "+xautoclaim", "+xgroup|create", "+xgroup|delconsumer", "+xinfo|consumers"},
		"warm-up":      {"+zincrby", "+zrange", "+zunionstore", "+zremrangebyrank", "+zremrangebyscore", "+scan"},
	}
}

func aclUser(t *testing.T, srv *redisserver.Server, rules ...string) rueidis.Client {
	t.Helper()
	_, err := srv.Command(append([]string{"ACL", "SETUSER", "svc", "reset", "on", ">pw"}, rules...)...)
	require.NoError(t, err)
	return redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "svc", Password: "pw", DisableCache: true})
}

// TestLeastPrivilegeACL runs every feature of a cache, with each transport,
// as an ACL user that has exactly the documented permissions, and checks
// that Redis refused nothing, at start or after.
func TestLeastPrivilegeACL(t *testing.T) {
	srv := redistest.Start(t)
	const ns = "svc:users"
	acl := leastPrivilege(ns)
	rules := slices.Concat(acl["base"], acl["cache"], acl["resumable"], acl["tracking"], acl["write-behind"], acl["warm-up"])
	t.Logf("ACL SETUSER svc on >… %s", strings.Join(rules, " "))
	c := aclUser(t, srv, rules...)
	ctx := context.Background()
	var warned warnings
	for _, tr := range []tiered.Transport{tiered.TransportPubSub, tiered.TransportResumable, tiered.TransportTracking} {
		hot, err := warmup.NewHotKeys(warmup.HotKeysOptions{Client: c, Namespace: ns})
		require.NoError(t, err)
		cache, err := tiered.New[string](ctx, tiered.Options[string]{Client: c, Namespace: ns, LocalTTL: time.Minute, RemoteTTL: time.Hour,
			Transport: tr, PingInterval: 10 * time.Millisecond, Sampler: hot, SampleEvery: 1, Logger: warned.logger()})
		require.NoError(t, err, tr)
		require.NoError(t, cache.Set(ctx, "k", "v", tiered.WithTags("t")), tr)
		for range 10 { // hot enough to outlive the hot set's first halving
			_, err = cache.Get(ctx, "k")
			require.NoError(t, err, tr)
		}
		_, err = cache.GetOrLoad(ctx, "loaded", func(context.Context) (string, error) { return "x", nil })
		require.NoError(t, err, tr)
		_, err = cache.GetMany(ctx, []string{"k", "loaded", "missing"})
		require.NoError(t, err, tr)
		require.NoError(t, cache.Delete(ctx, "loaded"), tr)
		// A load another replica holds the lease of: the waiter reads the
		// lease's TTL (PTTL in the lease script).
		peer, err := tiered.New[string](ctx, tiered.Options[string]{Client: c, Namespace: ns, LocalTTL: time.Minute, RemoteTTL: time.Hour, Transport: tr})
		require.NoError(t, err, tr)
		inLoad, release := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			_, err := cache.GetOrLoad(ctx, "shared", func(context.Context) (string, error) { close(inLoad); <-release; return "x", nil })
			first <- err
		}()
		<-inLoad
		second := make(chan error, 1)
		go func() {
			_, err := peer.GetOrLoad(ctx, "shared", func(context.Context) (string, error) { return "y", nil })
			second <- err
		}()
		require.Eventually(t, func() bool { return peer.Stats().LeaseWaits > 0 }, 10*time.Second, time.Millisecond, tr)
		close(release)
		require.NoError(t, <-first, tr)
		require.NoError(t, <-second, tr)
		peer.Close()
		require.NoError(t, cache.InvalidateTags(ctx, "t"), tr)
		require.NoError(t, cache.InvalidateAll(ctx), tr)

		require.NoError(t, cache.SetBehind(ctx, "behind", "v"), tr)
		delivered := make(chan struct{})
		// A short lease: a previous round's flusher whose release timed out
		// under load must not hold this one off past the wait below.
		f, err := writebehind.New(writebehind.Options[string]{Client: c, Namespace: ns, WriteTimeout: time.Second, LeaseTTL: 3 * time.Second,
			Writer: func(context.Context, []writebehind.Write[string]) error {
				close(delivered)
				return nil
			}})
		require.NoError(t, err)
		fctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- f.Run(fctx) }()
		select {
		case <-delivered:
		case err := <-done:
			t.Fatalf("%s: the flusher stopped: %v", tr, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the write-behind queue was never flushed: %+v", tr, f.Stats())
		}
		// The accepted write is acknowledged and deleted from the queue.
		require.Eventually(t, func() bool { q, _, err := f.QueueDepth(ctx); return err == nil && q == 0 }, 10*time.Second, time.Millisecond, tr)
		stop()
		<-done
		assert.Zero(t, f.Stats().RedisErrors, "%s: the flusher met no Redis error (a refused XAUTOCLAIM would be one)", tr)

		require.NoError(t, hot.Push(ctx), tr)
		top, err := warmup.Top(ctx, c, ns, 10)
		require.NoError(t, err, tr)
		assert.NotEmpty(t, top, tr)
		report, err := warmup.Preload(ctx, cache, warmup.Options[string]{Client: c, TopN: 10, ScanMatch: "*"})
		require.NoError(t, err, tr)
		assert.Zero(t, report.Failed, tr)

		if tr == tiered.TransportResumable {
			// A lost subscription is repaired from the log (XRANGE).
			_, err := srv.KillClients("pubsub")
			require.NoError(t, err)
			require.Eventually(t, func() bool { return cache.Stats().Bus.Repairs > 0 }, 10*time.Second, time.Millisecond)
			assert.Zero(t, cache.Stats().Bus.Unrepaired)
		}
		// Pings (or the tracking check) went on meanwhile: wait for a few
		// more, then nothing may have been refused.
		pings := cache.Stats().Bus.Pings
		require.Eventually(t, func() bool { return cache.Stats().Bus.Pings >= pings+3 }, 10*time.Second, time.Millisecond, tr)
		s := cache.Stats().Bus
		assert.Zero(t, s.Refusals, "%s: Redis refused nothing", tr)
		hot.Close()
		cache.Close()
	}
	assert.Empty(t, warned.matching("not allowed", "cannot read", "refused"), "no check was refused or skipped")

	// Without +info the cache still works, said once: restarts that keep
	// the generation key go undetected.
	restricted := aclUser(t, srv, slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return r == "+info" })...)
	var noInfo warnings
	cache, err := tiered.New[string](ctx, tiered.Options[string]{Client: restricted, Namespace: ns, LocalTTL: time.Minute, RemoteTTL: time.Hour, Logger: noInfo.logger()})
	require.NoError(t, err)
	defer cache.Close()
	require.NoError(t, cache.Set(ctx, "k", "v"))
	require.NoError(t, cache.InvalidateAll(ctx))
	assert.Len(t, noInfo.matching("INFO is not allowed"), 1)
}

// warnings collects what a cache logs.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.msgs = append(w.msgs, string(p))
		return len(p), nil
	}), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (w *warnings) matching(subs ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, m := range w.msgs {
		for _, s := range subs {
			if strings.Contains(m, s) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
