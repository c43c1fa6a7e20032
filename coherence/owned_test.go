package coherence

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redisserver"
	"github.com/tiercache/tiercache/internal/redistest"
)

// aclClient creates (or changes) the ACL user name with the given rules and
// opens a client logged in as that user. Pass DisableCache and the like in
// opt; its address and credentials are filled in.
func aclClient(t *testing.T, srv *redisserver.Server, name string, opt rueidis.ClientOption, rules ...string) rueidis.Client {
	t.Helper()
	_, err := srv.Command(append([]string{"ACL", "SETUSER", name, "reset", "on", ">pw"}, rules...)...)
	require.NoError(t, err)
	opt.InitAddress, opt.Username, opt.Password = []string{srv.Addr()}, name, "pw"
	return redistest.ClientWith(t, opt)
}

// setRules changes an existing ACL user's rules.
func setRules(t *testing.T, srv *redisserver.Server, name string, rules ...string) {
	t.Helper()
	_, err := srv.Command(append([]string{"ACL", "SETUSER", name}, rules...)...)
	require.NoError(t, err)
}

// numsub is PUBSUB NUMSUB of one channel.
func numsub(t *testing.T, c rueidis.Client, ch string) int64 {
	t.Helper()
	arr, err := c.Do(context.Background(), c.B().PubsubNumsub().Channel(ch).Build()).ToArray()
	require.NoError(t, err)
	n, err := arr[1].AsInt64()
	require.NoError(t, err)
	return n
}

// channels is PUBSUB CHANNELS: every channel with a subscriber.
func channels(t *testing.T, c rueidis.Client) []string {
	t.Helper()
	chs, err := c.Do(context.Background(), c.B().PubsubChannels().Build()).AsStrSlice()
	require.NoError(t, err)
	return chs
}

// clientList is CLIENT LIST, one line per connection.
func clientList(t *testing.T, c rueidis.Client) []string {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().ClientList().Build()).ToString()
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(s), "\n")
}

// TestBusesSharingAClientAreIndependent: two buses of one namespace on one
// client hold a subscription each; closing one takes its subscription and
// its ping channel away and leaves the other's alone: no resubscribe, no
// gap, and it still receives.
func TestBusesSharingAClientAreIndependent(t *testing.T) {
	srv := redistest.Start(t)
	shared := redistest.Client(t, srv)
	admin := redistest.Client(t, srv)
	a, _ := startBus(t, srv, Options{Client: shared, Origin: 1, PingInterval: 20 * time.Millisecond})
	b, rec := startBus(t, srv, Options{Client: shared, Origin: 2, PingInterval: 20 * time.Millisecond})
	assert.EqualValues(t, 2, numsub(t, admin, "ns:inv"))
	a.Close()
	require.Eventually(t, func() bool { return numsub(t, admin, "ns:inv") == 1 }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return numsub(t, admin, a.pingChan) == 0 }, 5*time.Second, time.Millisecond)
	assert.ElementsMatch(t, []string{"ns:inv", b.pingChan}, channels(t, admin))

	publish(t, admin, "ns:inv", (&Message{Origin: 3, Namespace: "ns", Kind: KindKeys, Keys: []string{"after"}}).Encode())
	require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 5*time.Second, time.Millisecond)
	// Pings kept coming back to b throughout: wait for a few more.
	echo := b.lastPingEcho.Load()
	require.Eventually(t, func() bool { return b.lastPingEcho.Load() > echo }, 5*time.Second, time.Millisecond)
	s := b.Stats()
	assert.EqualValues(t, 1, s.Subscriptions)
	assert.Zero(t, s.Resubscribes)
	assert.Zero(t, s.PingTimeouts)
	rec.mu.Lock()
	assert.Empty(t, rec.gaps)
	rec.mu.Unlock()
}

// TestSubscribeRefusedByTheACLFailsAtOnce: a user without @pubsub gets
// NOPERM for SUBSCRIBE; Subscribe returns it at once (errRefused, Redis's
// reply in the message) instead of retrying until its ctx ends.
func TestSubscribeRefusedByTheACLFailsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := aclClient(t, srv, "nopubsub", rueidis.ClientOption{DisableCache: true}, "~ns:*", "&ns:*", "+@all", "-@pubsub")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Subscribe(ctx, Options{Client: c, Channel: "ns:inv", Namespace: "ns", OnMessage: func(Message) {}, OnGap: func(GapReason) {}})
	require.ErrorIs(t, err, errRefused)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "NOPERM")
	t.Log(err)

	// A channel outside the user's &-patterns is refused the same way.
	c = aclClient(t, srv, "otherns", rueidis.ClientOption{DisableCache: true}, "~other:*", "&other:*", "+@all")
	_, err = Subscribe(ctx, Options{Client: c, Channel: "ns:inv", Namespace: "ns", OnMessage: func(Message) {}, OnGap: func(GapReason) {}})
	require.ErrorIs(t, err, errRefused)
	assert.Contains(t, err.Error(), "NOPERM")
}

// TestSubscribeOutOfTimeSaysWhy: with Redis gone, Subscribe gives up when
// its ctx ends, and the error carries the last attempt's.
func TestSubscribeOutOfTimeSaysWhy(t *testing.T) {
	srv := redistest.Start(t)
	c := redistest.Client(t, srv)
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Subscribe(ctx, Options{Client: c, Channel: "ns:inv", OnMessage: func(Message) {}, OnGap: func(GapReason) {}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "last attempt")
	assert.Contains(t, err.Error(), "connection refused")
}

// refusedLog counts OnRefused calls and keeps the last error.
type refusedLog struct {
	n    atomic.Int32
	last atomic.Pointer[error]
}

func (r *refusedLog) on(err error) { r.n.Add(1); r.last.Store(&err) }

func (r *refusedLog) text() string {
	if p := r.last.Load(); p != nil {
		return (*p).Error()
	}
	return ""
}

// TestBusReportsARefusedPingOnce: the ACL loses PUBLISH after start. The
// bus's pings are refused: a configuration error, reported once however
// often it recurs, and no gap (Redis accepted no ping that could fail to
// come back).
func TestBusReportsARefusedPingOnce(t *testing.T) {
	srv := redistest.Start(t)
	c := aclClient(t, srv, "svc", rueidis.ClientOption{DisableCache: true}, "~ns:*", "&ns:*", "+@all")
	var refused refusedLog
	b, rec := startBus(t, srv, Options{Client: c, Origin: 1, PingInterval: 10 * time.Millisecond, PingTimeout: time.Second, OnRefused: refused.on})
	setRules(t, srv, "svc", "-publish")
	require.Eventually(t, func() bool { return b.Stats().Refusals >= 10 }, 10*time.Second, time.Millisecond)
	assert.EqualValues(t, 1, refused.n.Load(), "reported once, not per ping")
	assert.Contains(t, refused.text(), "NOPERM")
	assert.Contains(t, refused.text(), "PUBLISH")
	assert.Zero(t, b.Stats().PingTimeouts)
	assert.Zero(t, b.Stats().Resubscribes)
	assert.False(t, rec.hasGap(GapPingTimeout))

	// Fixed, then refused again: a new episode, reported again.
	setRules(t, srv, "svc", "+publish")
	echo := b.lastPingEcho.Load()
	require.Eventually(t, func() bool { return b.lastPingEcho.Load() > echo }, 5*time.Second, time.Millisecond)
	setRules(t, srv, "svc", "-publish")
	require.Eventually(t, func() bool { return refused.n.Load() == 2 }, 5*time.Second, time.Millisecond)
}

// TestBusOnAClusterMovesOnFromAFailingNode: on a Cluster a bus subscribes
// through one node of the client's (a message published on any node
// reaches every node's subscribers); one that cannot be reached is skipped
// for the next. Here every dial to one node fails: each of twelve buses
// (which start at a random node) ends up subscribed on another one, and
// receives what is published through the failing node's peers.
func TestBusOnAClusterMovesOnFromAFailingNode(t *testing.T) {
	cl := redistest.StartCluster(t)
	down := cl.Nodes[0].Addr()
	var refusedDials atomic.Int64
	dial := func(ctx context.Context, dst string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
		if dst == down {
			refusedDials.Add(1)
			return nil, errors.New("test: node unreachable")
		}
		return d.DialContext(ctx, "tcp", dst)
	}
	c := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: cl.Addrs()[1:], DisableCache: true, DialCtxFn: dial})
	require.Len(t, c.Nodes(), 3, "the failing node is among the client's nodes")
	var recs []*recorder
	for range 12 {
		_, rec := startBus(t, nil, Options{Client: c, Origin: 1, PingInterval: -1})
		recs = append(recs, rec)
	}
	var subscribed int64
	for i, n := range cl.Nodes {
		nc := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{n.Addr()}, DisableCache: true, ForceSingleClient: true})
		got := numsub(t, nc, "ns:inv")
		if i == 0 {
			assert.Zero(t, got, "no bus on the failing node")
		}
		subscribed += got
	}
	assert.EqualValues(t, 12, subscribed)
	pub := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{cl.Nodes[1].Addr()}, DisableCache: true, ForceSingleClient: true})
	publish(t, pub, "ns:inv", (&Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{"k"}}).Encode())
	for _, rec := range recs {
		require.Eventually(t, func() bool { return len(rec.messages()) == 1 }, 5*time.Second, time.Millisecond)
	}
	t.Logf("dials to the failing node: %d", refusedDials.Load())
}
