package coherence

import (
	"context"
	"fmt"
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
)

// keyRecorder collects what a Tracker delivers.
type keyRecorder struct {
	mu   sync.Mutex
	keys []string
	gaps []GapReason
}

func (r *keyRecorder) onKeys(ks []string) { r.mu.Lock(); r.keys = append(r.keys, ks...); r.mu.Unlock() }
func (r *keyRecorder) onGap(g GapReason)  { r.mu.Lock(); r.gaps = append(r.gaps, g); r.mu.Unlock() }

func (r *keyRecorder) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range r.keys {
		if k == key {
			return true
		}
	}
	return false
}

func (r *keyRecorder) gapCount() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.gaps) }

func (r *keyRecorder) gapList() []GapReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.gaps)
}

func startTracker(t *testing.T, opts TrackingOptions) (*Tracker, *keyRecorder) {
	t.Helper()
	rec := &keyRecorder{}
	if opts.Prefix == "" {
		opts.Prefix = "ns:"
	}
	opts.OnKeys, opts.OnGap = rec.onKeys, rec.onGap
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := Track(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(tr.Close)
	return tr, rec
}

// trackingClients counts the server's connections in broadcast tracking
// mode (CLIENT LIST flag B).
func trackingClients(t *testing.T, admin rueidis.Client) int {
	n := 0
	for _, line := range clientList(t, admin) {
		for _, f := range strings.Fields(line) {
			if flags, ok := strings.CutPrefix(f, "flags="); ok && strings.Contains(flags, "B") {
				n++
			}
		}
	}
	return n
}

func defaultClient(t *testing.T, srv *redisserver.Server) rueidis.Client {
	return redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{srv.Addr()}})
}

// TestTrackingOnADefaultClient: rueidis's defaults turn client-side
// caching on, which opens every connection tracking in OPTIN mode, and
// Redis refuses to switch such a connection to BCAST. The tracker turns
// tracking off on its own connection first. rueidis's own cache on the
// same client keeps working: a DoCache value changed elsewhere is
// invalidated.
func TestTrackingOnADefaultClient(t *testing.T) {
	srv := redistest.Start(t)
	c := defaultClient(t, srv)
	admin := redistest.Client(t, srv)
	ctx := context.Background()
	tr, rec := startTracker(t, TrackingOptions{Client: c})
	require.NoError(t, admin.Do(ctx, admin.B().Set().Key("ns:k").Value("v1").Build()).Error())
	require.Eventually(t, func() bool { return rec.has("ns:k") }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, tr.Stats().Subscriptions)

	cached := func() string {
		v, err := c.DoCache(ctx, c.B().Get().Key("ns:k").Cache(), time.Minute).ToString()
		require.NoError(t, err)
		return v
	}
	require.Equal(t, "v1", cached())
	require.NoError(t, admin.Do(ctx, admin.B().Set().Key("ns:k").Value("v2").Build()).Error())
	require.Eventually(t, func() bool { return cached() == "v2" }, 5*time.Second, time.Millisecond,
		"rueidis's client-side cache is still invalidated on its own connections")
	assert.Zero(t, rec.gapCount())
}

// OnArrival sees a push's keys as they are read, even while OnKeys is
// busy with an earlier push, and only the prefix's; OnKeys still gets
// them, in order.
func TestTrackerOnArrivalRunsAheadOfTheQueue(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv)
	ctx := context.Background()
	a := newArrivals()
	rec := &keyRecorder{}
	tr, err := Track(ctx, TrackingOptions{
		Client:    redistest.Client(t, srv),
		Prefix:    "ns:",
		OnArrival: func(ks []string) { a.arrive(ks...) },
		OnKeys:    func(ks []string) { a.apply(ks...) },
		OnGap:     rec.onGap,
	})
	require.NoError(t, err)
	t.Cleanup(tr.Close)
	for _, k := range []string{"ns:a", "other:x", "ns:b"} {
		require.NoError(t, admin.Do(ctx, admin.B().Set().Key(k).Value("1").Build()).Error())
	}
	a.check(t, []string{"ns:a", "ns:b"})
	assert.Zero(t, rec.gapCount())
}

// TestTrackerCloseLeavesNothingBehind: a closed tracker's connection is
// closed, not returned to the client's pool still tracking: the server's
// connection count is back where it was and no connection is in
// broadcast mode.
func TestTrackerCloseLeavesNothingBehind(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv)
	for _, c := range []rueidis.Client{redistest.Client(t, srv), defaultClient(t, srv)} {
		require.NoError(t, c.Do(context.Background(), c.B().Ping().Build()).Error())
		before := len(clientList(t, admin))
		for range 20 {
			tr, _ := startTracker(t, TrackingOptions{Client: c})
			assert.Equal(t, 1, trackingClients(t, admin))
			tr.Close()
		}
		require.Eventually(t, func() bool { return len(clientList(t, admin)) == before && trackingClients(t, admin) == 0 },
			5*time.Second, time.Millisecond)
	}
}

// TestTrackRefusedByTheACLFailsAtOnce: CLIENT TRACKING, or the PING that
// checks the connection, refused at start fails Track at once with
// Redis's reply.
func TestTrackRefusedByTheACLFailsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, missing := range []string{"-client|tracking", "-ping"} {
		c := aclClient(t, srv, "u", rueidis.ClientOption{DisableCache: true}, "~ns:*", "&ns:*", "+@all", missing)
		_, err := Track(ctx, TrackingOptions{Client: c, Prefix: "ns:", OnKeys: func([]string) {}, OnGap: func(GapReason) {}})
		require.ErrorIs(t, err, errRefused, missing)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "NOPERM")
		t.Log(err)
	}
}

// TestTrackerReportsARefusedPingOnceAndKeepsTracking: the ACL loses PING
// after start. An error reply is an answer: the connection is alive and
// keeps pushing; the refusal is reported once, never treated as a dead
// connection to replace (and a gap to flush) every interval.
func TestTrackerReportsARefusedPingOnceAndKeepsTracking(t *testing.T) {
	srv := redistest.Start(t)
	c := aclClient(t, srv, "svc", rueidis.ClientOption{DisableCache: true}, "~ns:*", "&ns:*", "+@all")
	var refused refusedLog
	tr, rec := startTracker(t, TrackingOptions{Client: c, PingInterval: 10 * time.Millisecond, PingTimeout: time.Second, OnRefused: refused.on})
	setRules(t, srv, "svc", "-ping")
	require.Eventually(t, func() bool { return tr.Stats().Refusals >= 10 }, 10*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, refused.n.Load())
	assert.Contains(t, refused.text(), "NOPERM")
	s := tr.Stats()
	assert.Zero(t, s.PingTimeouts)
	assert.Zero(t, s.Resubscribes)
	assert.EqualValues(t, 1, s.Subscriptions)
	admin := redistest.Client(t, srv)
	require.NoError(t, admin.Do(context.Background(), admin.B().Set().Key("ns:k").Value("v").Build()).Error())
	require.Eventually(t, func() bool { return rec.has("ns:k") }, 5*time.Second, time.Millisecond)
	assert.Zero(t, rec.gapCount())
}

// TestTrackerHoldsWhileItsConnectionIsDown: as a bus, a tracker holds the
// local tier from the loss of its connection until its successor is set
// up and the gap reported, so nothing is refilled from Redis while no push
// can arrive.
func TestTrackerHoldsWhileItsConnectionIsDown(t *testing.T) {
	srv := redistest.Start(t)
	var holds holdCount
	tr, rec := startTracker(t, TrackingOptions{Client: defaultClient(t, srv), PingInterval: -1, OnHold: holds.onHold})
	srv.Kill()
	require.Eventually(t, func() bool { return holds.n.Load() == 1 }, 5*time.Second, time.Millisecond,
		"held while Redis is down")
	assert.Zero(t, tr.Stats().Resubscribes)
	require.NoError(t, srv.Restart(context.Background()))
	require.Eventually(t, func() bool { return slices.Contains(rec.gapList(), GapResubscribe) && holds.n.Load() == 0 }, 10*time.Second, time.Millisecond,
		"released once the new connection's gap is reported")
	assert.EqualValues(t, 1, holds.peak.Load())
}

// TestTrackerHoldsAcrossAnOverflow: pushes dropped from a full queue hold
// the local tier until the overflow gap is reported, as a Bus's do.
func TestTrackerHoldsAcrossAnOverflow(t *testing.T) {
	srv := redistest.Start(t)
	admin := redistest.Client(t, srv)
	ctx := context.Background()
	var holds holdCount
	stuck, release := blockedHandler(t)
	rec := &keyRecorder{}
	tr, err := Track(ctx, TrackingOptions{
		Client: redistest.Client(t, srv), Prefix: "ns:", QueueSize: 2, PingInterval: -1,
		OnHold: holds.onHold,
		OnKeys: func([]string) { stuck() },
		OnGap:  rec.onGap,
	})
	require.NoError(t, err)
	t.Cleanup(tr.Close)
	for i := range 6 {
		require.NoError(t, admin.Do(ctx, admin.B().Set().Key(fmt.Sprint("ns:k", i)).Value("1").Build()).Error())
	}
	require.Eventually(t, func() bool { return tr.Stats().Overflows > 0 && holds.n.Load() > 0 }, 5*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, holds.n.Load(), "one hold for the drops, however many")
	release.open()
	require.Eventually(t, func() bool { return slices.Contains(rec.gapList(), GapOverflow) && holds.n.Load() == 0 }, 5*time.Second, time.Millisecond,
		"released once the overflow gap is reported")
}
