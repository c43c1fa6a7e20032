package tiered

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/leaktest"
	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// defaultClient opens a rueidis client with its default options:
// client-side caching on, every connection opened tracking (OPTIN).
func defaultClient(t testing.TB, srv *redisserver.Server) rueidis.Client {
	return redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}})
}

// newCacheOn builds a cache on a given (shared) client.
func newCacheOn[V any](t testing.TB, c rueidis.Client, opts Options[V]) *Cache[V] {
	t.Helper()
	opts.Client = c
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cache, err := New[V](ctx, opts)
	require.NoError(t, err)
	t.Cleanup(cache.Close)
	return cache
}

// redisSide is what Redis holds for a set of caches: connections and
// subscriptions.
type redisSide struct {
	clients  int
	channels []string
	numsub   int64
}

func observeRedis(t testing.TB, admin rueidis.Client, channel string) redisSide {
	ctx := context.Background()
	list, err := admin.Do(ctx, admin.B().ClientList().Build()).ToString()
	require.NoError(t, err)
	chs, err := admin.Do(ctx, admin.B().PubsubChannels().Build()).AsStrSlice()
	require.NoError(t, err)
	slices.Sort(chs)
	arr, err := admin.Do(ctx, admin.B().PubsubNumsub().Channel(channel).Build()).ToArray()
	require.NoError(t, err)
	n, err := arr[1].AsInt64()
	require.NoError(t, err)
	return redisSide{clients: strings.Count(strings.TrimSpace(list), "\n") + 1, channels: chs, numsub: n}
}

// disturbance is what closing another cache must never change in one.
type disturbance struct {
	resubscribes, pingTimeouts, overflows, repairs uint64
	flushes                                        map[string]uint64
}

func disturbanceOf[V any](c *Cache[V]) disturbance {
	s := c.Stats()
	return disturbance{s.Bus.Resubscribes, s.Bus.PingTimeouts, s.Bus.Overflows, s.Bus.Repairs, maps.Clone(s.LocalResets)}
}

// TestNewCloseCyclesLeaveNothingBehind: 200 cycles of two caches of one
// namespace opened on one shared client and closed in turn (one order,
// then the other), over every transport and over a client with rueidis's
// defaults as well as one with client-side caching off. Meanwhile a
// bystander cache per transport and client sits on the same namespace and
// clients. At the end goroutines, the server's connections and its
// subscriptions (PUBSUB CHANNELS, NUMSUB) are back to the baseline, and
// no bystander was disturbed: no resubscribe, ping timeout or flush, and
// each still receives invalidations.
func TestNewCloseCyclesLeaveNothingBehind(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv)
	shared := []rueidis.Client{redistest.Client(t, srv), defaultClient(t, srv)}
	transports := []Transport{TransportPubSub, TransportResumable, TransportTracking}
	const ns = "cycles"
	opts := func(tr Transport) Options[string] {
		o := testOptions[string](ns)
		o.Transport, o.LocalMaxCost, o.PingInterval = tr, 1<<20, 20*time.Millisecond
		return o
	}
	var bystanders []*Cache[string]
	for _, c := range shared {
		for _, tr := range transports {
			bystanders = append(bystanders, newCacheOn[string](t, c, opts(tr)))
		}
	}
	ctx := context.Background()
	cycle := func(i int) {
		c, tr := shared[(i/len(transports))%len(shared)], transports[i%len(transports)]
		o := opts(tr)
		o.Client = c
		a, err := New[string](ctx, o)
		require.NoError(t, err, "cycle %d", i)
		b, err := New[string](ctx, o)
		require.NoError(t, err, "cycle %d", i)
		if i%10 == 0 {
			require.NoError(t, a.Set(ctx, fmt.Sprint("k", i), "v"))
		}
		if i%2 == 0 {
			a.Close()
			b.Close()
		} else {
			b.Close()
			a.Close()
		}
	}
	// rueidis opens its connections lazily: a round of every kind first.
	for i := range 2 * len(transports) * len(shared) {
		cycle(i)
	}
	ignore := goleak.IgnoreCurrent()
	subscribers := int64(2 * len(shared)) // the pub/sub and resumable bystanders
	require.Eventually(t, func() bool { return observeRedis(t, admin, ns+":inv").numsub == subscribers },
		5*time.Second, time.Millisecond, "the warm-up's caches are gone")
	base := observeRedis(t, admin, ns+":inv")
	before := make([]disturbance, len(bystanders))
	for i, by := range bystanders {
		before[i] = disturbanceOf(by)
	}

	start := time.Now()
	const cycles = 200
	for i := range cycles {
		cycle(i)
	}
	took := time.Since(start)
	var after redisSide
	assert.Eventually(t, func() bool { after = observeRedis(t, admin, ns+":inv"); return assert.ObjectsAreEqual(base, after) },
		5*time.Second, time.Millisecond)
	require.Equal(t, base, after, "Redis is back to the baseline")
	// A connection rueidis already had starts its reader and writer
	// goroutines only once it is used concurrently (the caches' periodic
	// generation checks may be the first to), so those two are not
	// compared here: a connection left open is, by the server's client
	// count above, and any other goroutine is, below.
	goleak.VerifyNone(t, append(leaktest.IgnoreClusterClient(), ignore,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*pipe)._background"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*pipe)._backgroundWrite"))...)
	t.Logf("%d New/Close cycles (%d caches) in %v; baseline and after: %d connections, %d channels, NUMSUB %s:inv = %d",
		cycles, 2*cycles, took.Round(time.Millisecond), after.clients, len(after.channels), ns, after.numsub)

	for i, by := range bystanders {
		assert.Equal(t, before[i], disturbanceOf(by), "bystander %d (%s) undisturbed", i, by.opts.Transport)
	}
	// Every bystander still hears a write: it holds v1 locally (a minute's
	// TTL), and only an invalidation can make it read v2.
	writer := newCache[string](t, srv, opts(TransportPubSub))
	received := make([]uint64, len(bystanders))
	for i, by := range bystanders {
		received[i] = by.Stats().Bus.Received
	}
	require.NoError(t, writer.Set(ctx, "probe", "v1"))
	for i, by := range bystanders {
		// v1's own invalidation first, or it would drop the copy read next.
		require.Eventually(t, func() bool { return by.Stats().Bus.Received > received[i] }, 5*time.Second, time.Millisecond)
		// Read until the copy is held: under load a late ping may flush
		// the local tier between the read and the check.
		require.Eventually(t, func() bool {
			v, err := by.Get(ctx, "probe")
			require.NoError(t, err)
			require.Equal(t, "v1", v)
			by.local.Wait()
			_, ok := by.local.Get("probe")
			return ok
		}, 5*time.Second, time.Millisecond, "bystander %d holds the probe locally", i)
	}
	require.NoError(t, writer.Set(ctx, "probe", "v2"))
	for i, by := range bystanders {
		require.Eventually(t, func() bool { v, _ := by.Get(ctx, "probe"); return v == "v2" }, 5*time.Second, time.Millisecond,
			"bystander %d (%s) hears invalidations", i, by.opts.Transport)
	}
}

// TestTrackingOnADefaultClient: TransportTracking on rueidis clients with
// their default options (client-side caching on) works: a write on one
// replica invalidates the other.
func TestTrackingOnADefaultClient(t *testing.T) {
	srv := redistest.Start(t)
	rs := []*Cache[string]{
		newCacheOn[string](t, defaultClient(t, srv), trackingOptions[string]("csc")),
		newCacheOn[string](t, defaultClient(t, srv), trackingOptions[string]("csc")),
	}
	ctx := context.Background()
	primeTracked(t, rs)
	require.NoError(t, rs[0].Set(ctx, "k", "v2"))
	require.Eventually(t, func() bool { v, _ := rs[1].Get(ctx, "k"); return v == "v2" }, 5*time.Second, time.Millisecond)
	assert.Zero(t, rs[1].Stats().Bus.Resubscribes)
}

// TestNewRefusedByTheACLFailsAtOnce: for an ACL user without @pubsub (or,
// with TransportTracking, without CLIENT TRACKING), New with a ctx without
// deadline fails at once, well within DefaultStartTimeout, and its error
// carries Redis's NOPERM reply.
func TestNewRefusedByTheACLFailsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		transport Transport
		missing   string
	}{{TransportPubSub, "-@pubsub"}, {TransportResumable, "-@pubsub"}, {TransportTracking, "-client|tracking"}} {
		_, err := srv.Command("ACL", "SETUSER", "svc", "reset", "on", ">pw", "~acl:*", "&acl:*", "+@all", tc.missing)
		require.NoError(t, err)
		c := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}, Username: "svc", Password: "pw", DisableCache: true})
		o := testOptions[string]("acl")
		o.Client, o.Transport = c, tc.transport
		start := time.Now()
		_, err = New[string](context.Background(), o)
		took := time.Since(start)
		require.ErrorIs(t, err, ErrRemote, tc.transport)
		assert.Contains(t, err.Error(), "NOPERM")
		assert.Less(t, took, DefaultStartTimeout, "refused at once, not retried until the bound")
		t.Logf("%s, user with %s: failed after %v: %v", tc.transport, tc.missing, took.Round(time.Microsecond), err)
	}
}

// TestNewGivesUpAfterDefaultStartTimeout: Redis gone right after the
// client was made, and a ctx without deadline: New gives up after
// DefaultStartTimeout (generously: not before, and not long after), saying
// what its last attempt met.
func TestNewGivesUpAfterDefaultStartTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	srv.Kill()
	o := testOptions[string]("gone")
	o.Client = c
	start := time.Now()
	_, err := New[string](context.Background(), o)
	took := time.Since(start)
	require.ErrorIs(t, err, ErrRemote)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "connection refused")
	assert.GreaterOrEqual(t, took, DefaultStartTimeout)
	assert.Less(t, took, DefaultStartTimeout+5*time.Second)
	t.Logf("gave up after %v: %v", took.Round(time.Millisecond), err)
}
