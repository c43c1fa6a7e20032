package coherence

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// slotLogKey names the per-slot logs of these tests.
func slotLogKey(slot uint16) string { return "sl:v1:invlog:{" + remote.SlotTag(slot) + "}" }

// slotLogFixture is a resumable bus on a Redis Cluster, and a client that
// plays the publishers: it appends invalidations to slot logs, and
// publishes them (a message delivered live) or not (a message lost in a
// gap).
type slotLogFixture struct {
	t   *testing.T
	c   rueidis.Client
	bus *Bus
	rec *recorder
}

func startSlotLogBus(t *testing.T, cl *redistest.Cluster, age time.Duration) *slotLogFixture {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Subscribe(ctx, Options{Client: cl.Client(t), Channel: "sl:inv", Namespace: "ns", Origin: 1,
		OnMessage: rec.onMessage, OnGap: rec.onGap, PingInterval: 50 * time.Millisecond, PingTimeout: 10 * time.Second,
		SlotLogKey: slotLogKey, LogAge: age})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return &slotLogFixture{t: t, c: cl.Client(t), bus: b, rec: rec}
}

// log appends an invalidation of key to slot's log, as a publishing script
// does, and returns the message stamped with its log id.
func (f *slotLogFixture) log(slot uint16, key string) Message {
	f.t.Helper()
	m := Message{Origin: 2, Namespace: "ns", Kind: KindKeys, Keys: []string{key}, PublishedAt: time.Now().UnixNano()}
	id, err := f.c.Do(context.Background(), f.c.B().Xadd().Key(slotLogKey(slot)).Id("*").
		FieldValue().FieldValue("m", rueidis.BinaryString(m.Encode())).Build()).ToString()
	require.NoError(f.t, err)
	m.LogID = strconv.Itoa(int(slot)) + "/" + id
	return m
}

// deliver logs and publishes an invalidation, and waits until the bus has
// applied it.
func (f *slotLogFixture) deliver(slot uint16, key string) {
	f.t.Helper()
	m := f.log(slot, key)
	publish(f.t, f.c, "sl:inv", m.Encode())
	require.Eventually(f.t, func() bool { return f.received(key) }, 5*time.Second, time.Millisecond)
}

func (f *slotLogFixture) received(key string) bool {
	for _, m := range f.rec.messages() {
		if len(m.Keys) == 1 && m.Keys[0] == key {
			return true
		}
	}
	return false
}

// resync makes a gap and waits until the bus has dealt with it; it reports
// whether the gap was repaired.
func (f *slotLogFixture) resync() bool {
	f.t.Helper()
	before := f.bus.Stats()
	f.bus.Resync("test")
	var after Stats
	require.Eventually(f.t, func() bool {
		after = f.bus.Stats()
		return after.Repairs+after.Unrepaired > before.Repairs+before.Unrepaired
	}, 10*time.Second, time.Millisecond)
	return after.Repairs > before.Repairs
}

// trim trims a slot's log by count as a publishing script does, recording
// the first entry left as the stream's max-deleted-entry-id.
func (f *slotLogFixture) trim(slot uint16, keep int64) {
	f.t.Helper()
	ctx, key := context.Background(), slotLogKey(slot)
	require.NoError(f.t, f.c.Do(ctx, f.c.B().Xtrim().Key(key).Maxlen().Threshold(strconv.FormatInt(keep, 10)).Build()).Error())
	left, err := f.c.Do(ctx, f.c.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
	require.NoError(f.t, err)
	first, last := left[0].ID, left[len(left)-1].ID
	require.NoError(f.t, f.c.Do(ctx, f.c.B().Xsetid().Key(key).LastId(last).Maxdeletedid(first).Build()).Error())
}

// TestSlotLogs: on a Redis Cluster, a gap is repaired from the per-slot
// logs, those the bus heard from and those it did not; it is reported
// when a log was trimmed past what the bus needs, or when the bus's floor
// is older than the logs' age.
func TestSlotLogs(t *testing.T) {
	cl := redistest.StartCluster(t)

	t.Run("replays-every-slot", func(t *testing.T) {
		f := startSlotLogBus(t, cl, 10*time.Second)
		for i, sl := range []uint16{1, 5000, 16383} {
			f.deliver(sl, "live"+strconv.Itoa(i))
		}
		// Missed: in a slot heard from, two never heard from, one of them
		// on each end of the range.
		missed := []string{"m1", "m2", "m3", "m4"}
		for i, sl := range []uint16{1, 9000, 0, 16383} {
			f.log(sl, missed[i])
		}
		require.True(t, f.resync(), "the logs reach back")
		for _, k := range missed {
			assert.True(t, f.received(k), "%s replayed", k)
		}
		assert.EqualValues(t, 4, f.bus.Stats().Replayed)
		// A second gap replays nothing again: the positions moved on.
		require.True(t, f.resync())
		assert.EqualValues(t, 4, f.bus.Stats().Replayed)
		assert.Empty(t, f.rec.gaps)
	})

	t.Run("trimmed-past-the-position", func(t *testing.T) {
		f := startSlotLogBus(t, cl, 10*time.Second)
		f.deliver(7, "seen")
		for range 3 {
			f.log(7, "lost")
		}
		f.trim(7, 1) // the entry the bus saw, and one it missed, are gone
		require.False(t, f.resync())
		assert.True(t, f.rec.hasGap("test"))

		// The bus starts over from now: a later gap is repairable again.
		// (Slot 7's trim is recent enough to count against the new floor,
		// which allows for clock skew; the log is gone as if expired.)
		require.NoError(t, f.c.Do(context.Background(), f.c.B().Del().Key(slotLogKey(7)).Build()).Error())
		f.log(8, "after")
		require.True(t, f.resync())
		assert.True(t, f.received("after"))
	})

	t.Run("trimmed-past-the-floor", func(t *testing.T) {
		f := startSlotLogBus(t, cl, 10*time.Second)
		for range 3 {
			f.log(9, "never-seen")
		}
		f.trim(9, 1) // two entries the bus never heard of were trimmed
		require.False(t, f.resync())
		assert.True(t, f.rec.hasGap("test"))
	})

	t.Run("pings-keep-the-floor-young", func(t *testing.T) {
		// With a 3.5 s age, a floor 1.5 s old is too old. Pings coming
		// back (every 50 ms) keep moving it up; once they stop, gaps are
		// reported. Time itself is what is tested, so the test lets 2 s
		// pass each way, without a replay (which moves the floor too); the
		// margin leaves pings 1.5 s to come back on a loaded machine.
		f := startSlotLogBus(t, cl, 3500*time.Millisecond)
		time.Sleep(2 * time.Second)
		require.True(t, f.resync(), "the pings moved the floor")
		nowhere := "nobody:listens"
		f.bus.pingTo.Store(&nowhere)
		time.Sleep(2 * time.Second)
		require.False(t, f.resync(), "no ping came back for two seconds")
		assert.True(t, f.rec.hasGap("test"))
	})

	t.Run("a-node-evicted", func(t *testing.T) {
		// A missed message's log, in a slot the bus never heard from, is
		// evicted before the replay: read from the floor, the missing log
		// looked empty, and the gap was called repaired.
		f := startSlotLogBus(t, cl, 10*time.Second)
		f.deliver(1, "live")
		f.log(9000, "missed")
		evictOnSlot(t, cl, f.c, 9000)
		n, err := f.c.Do(context.Background(), f.c.B().Exists().Key(slotLogKey(1)).Build()).AsInt64()
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "slot 1's log, another node's, is still there")
		require.False(t, f.resync(), "a gap across an eviction is not left to the logs")
		assert.True(t, f.rec.hasGap("test"))
		// The flush starts over: with no eviction since, gaps are repaired.
		f.log(8, "after")
		require.True(t, f.resync())
		assert.True(t, f.received("after"))
	})
}

// evictOnSlot makes the node holding slot evict (every key it can: a
// memory limit of one byte, for one write to the slot), then lifts the
// limit. Only that node: any command to a node under the limit evicts.
func evictOnSlot(t *testing.T, cl *redistest.Cluster, c rueidis.Client, slot uint16) {
	t.Helper()
	ctx := context.Background()
	var owner rueidis.Client
	for _, n := range cl.Nodes {
		nc := redistest.ClientWith(t, rueidis.ClientOption{InitAddress: []string{n.Addr()}, ForceSingleClient: true, DisableCache: true})
		if nc.Do(ctx, nc.B().Exists().Key(slotLogKey(slot)).Build()).Error() == nil { // others answer MOVED
			owner = nc
		}
	}
	require.NotNil(t, owner)
	require.NoError(t, owner.Do(ctx, owner.B().ConfigSet().ParameterValue().ParameterValue("maxmemory-policy", "allkeys-lru").ParameterValue("maxmemory", "1").Build()).Error())
	owner.Do(ctx, owner.B().Set().Key(slotLogKey(slot)+":ballast").Value("x").Build()) // evicts, then is refused (OOM)
	require.NoError(t, owner.Do(ctx, owner.B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").ParameterValue("maxmemory-policy", "noeviction").Build()).Error())
	exists, err := c.Do(ctx, c.B().Exists().Key(slotLogKey(slot)).Build()).AsInt64()
	require.NoError(t, err)
	require.Zero(t, exists, "the slot's log was evicted")
}

func TestSlotLogsValidate(t *testing.T) {
	cl := redistest.StartCluster(t)
	for name, o := range map[string]Options{
		"both logs":     {LogKey: "x", SlotLogKey: slotLogKey, LogAge: time.Minute},
		"no pings":      {SlotLogKey: slotLogKey, LogAge: time.Minute, PingInterval: -1},
		"age too short": {SlotLogKey: slotLogKey, LogAge: 2 * time.Second},
	} {
		o.Client, o.Channel, o.OnMessage, o.OnGap = cl.Client(t), "c", func(Message) {}, func(GapReason) {}
		_, err := Subscribe(context.Background(), o)
		assert.ErrorIs(t, err, ErrInvalidOptions, name)
	}
}

func TestParseSlotLogID(t *testing.T) {
	sl, id, ok := parseSlotLogID("16383/1700000000000-5")
	assert.True(t, ok)
	assert.EqualValues(t, 16383, sl)
	assert.Equal(t, "1700000000000-5", id)
	for _, bad := range []string{"", "1700000000000-5", "16384/1-0", "-1/1-0", "x/1-0", "3/"} {
		_, _, ok := parseSlotLogID(bad)
		assert.False(t, ok, bad)
	}
}

// TestSlotLogNodeMarks: a node's mark changes with what may make a slot log
// short: a new replication id (a promotion, as in a failover, which
// leaves the run id as it was), evictions, a restart.
func TestSlotLogNodeMarks(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	l := newSlotLogs(redistest.Client(t, srv), slotLogKey, 10*time.Second)
	ctx := context.Background()
	before, err := l.nodeMarks(ctx)
	require.NoError(t, err)
	require.Len(t, before, 1)
	for _, m := range before {
		require.NotEmpty(t, m.runID)
		require.NotEmpty(t, m.replID)
	}
	again, err := l.nodeMarks(ctx)
	require.NoError(t, err)
	assert.True(t, sameMarks(before, again))
	_, err = srv.Command("DEBUG", "CHANGE-REPL-ID")
	require.NoError(t, err)
	after, err := l.nodeMarks(ctx)
	require.NoError(t, err)
	assert.False(t, sameMarks(before, after), "a new replication id is a possible loss")
	assert.False(t, sameMarks(nil, after), "unknown marks are a possible loss")
}
