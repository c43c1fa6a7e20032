package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

type user struct {
	ID   int
	Name string
	Tags []string
}

func TestGetSetDelete(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[user](t, srv, 2, testOptions[user]("svc:users"))
	ctx := context.Background()

	_, err := rs[0].Get(ctx, "42")
	require.ErrorIs(t, err, ErrNotFound)

	u := user{ID: 42, Name: "Ada", Tags: []string{"a"}}
	require.NoError(t, rs[0].Set(ctx, "42", u))
	u.Tags[0] = "mutated after Set"
	got, err := rs[0].Get(ctx, "42")
	require.NoError(t, err)
	assert.Equal(t, user{ID: 42, Name: "Ada", Tags: []string{"a"}}, got, "the cache keeps its own copy")
	rs[0].local.Wait() // ristretto applies a new key's insert through a buffer
	before := rs[0].Stats().LocalMisses
	_, err = rs[0].Get(ctx, "42")
	require.NoError(t, err)
	assert.Equal(t, before, rs[0].Stats().LocalMisses, "own write fills the local tier")

	// rs[0]'s invalidation may still be on its way; a fill it overtakes is
	// rightly refused, so let it land first.
	require.Eventually(t, func() bool { return rs[1].Stats().InvalidationsReceived == 1 }, 5*time.Second, time.Millisecond)
	got, err = rs[1].Get(ctx, "42")
	require.NoError(t, err)
	assert.Equal(t, "Ada", got.Name)
	assert.Equal(t, uint64(1), rs[1].Stats().RemoteHits)
	rs[1].local.Wait()
	_, err = rs[1].Get(ctx, "42")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rs[1].Stats().RemoteHits, "a Redis hit fills the local tier: the second read stays local")

	require.NoError(t, rs[0].Delete(ctx, "42", "43"))
	_, err = rs[0].Get(ctx, "42")
	require.ErrorIs(t, err, ErrNotFound)
	require.Eventually(t, func() bool {
		_, err := rs[1].Get(ctx, "42")
		return errors.Is(err, ErrNotFound)
	}, 5*time.Second, time.Millisecond)
}

func TestGetOrLoadOneLoadPerKeyPerReplica(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("ns"))
	var calls atomic.Int32
	release := make(chan struct{})
	load := func(ctx context.Context) (string, error) {
		calls.Add(1)
		<-release
		return "loaded", nil
	}
	var wg sync.WaitGroup
	results := make(chan string, 50)
	for range 50 {
		wg.Go(func() {
			v, err := c.GetOrLoad(context.Background(), "k", load)
			assert.NoError(t, err)
			results <- v
		})
	}
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	close(results)
	for v := range results {
		assert.Equal(t, "loaded", v)
	}
	assert.Equal(t, int32(1), calls.Load())

	// Now cached in both tiers: no more loads, here or on a new replica.
	other := newCache[string](t, srv, testOptions[string]("ns"))
	v, err := other.GetOrLoad(context.Background(), "k", func(context.Context) (string, error) { return "", errors.New("must not load") })
	require.NoError(t, err)
	assert.Equal(t, "loaded", v)
}

func TestGetOrLoadHonoursCallerCtx(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("ns"))
	release := make(chan struct{})
	load := func(ctx context.Context) (string, error) {
		<-release
		return "v", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.GetOrLoad(ctx, "k", load)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// The shared load goes on for callers that are still waiting.
	done := make(chan string)
	go func() {
		v, _ := c.GetOrLoad(context.Background(), "k", load)
		done <- v
	}()
	close(release)
	assert.Equal(t, "v", <-done)
}

// TestLoadStartedBeforeAWriteNeverOverwritesIt is the fenced-fill race: a
// replica misses and starts loading the old value; a writer stores v2 and
// invalidates; the load then finishes. The old value must reach neither
// Redis nor any local tier.
func TestLoadStartedBeforeAWriteNeverOverwritesIt(t *testing.T) {
	for _, write := range []string{"set", "delete"} {
		t.Run(write, func(t *testing.T) {
			srv := redistest.Start(t)
			rs := replicas[string](t, srv, 2, testOptions[string]("ns"))
			ctx := context.Background()
			started, release := make(chan struct{}), make(chan struct{})
			got := make(chan string)
			go func() {
				v, err := rs[0].GetOrLoad(ctx, "k", func(context.Context) (string, error) {
					close(started)
					<-release
					return "v1 (old)", nil
				})
				assert.NoError(t, err)
				got <- v
			}()
			<-started
			if write == "set" {
				require.NoError(t, rs[1].Set(ctx, "k", "v2"))
			} else {
				require.NoError(t, rs[1].Delete(ctx, "k"))
			}
			close(release)
			assert.Equal(t, "v1 (old)", <-got, "callers that asked before the write get the load")
			rs[0].local.Wait()
			for i, r := range rs {
				v, err := r.Get(ctx, "k")
				if write == "set" {
					require.NoError(t, err, "replica %d", i)
					assert.Equal(t, "v2", v, "replica %d", i)
				} else {
					assert.ErrorIs(t, err, ErrNotFound, "replica %d", i)
				}
			}
			assert.Equal(t, uint64(1), rs[0].Stats().FillsVoided)
		})
	}
}

func TestLoaderErrorsAndPanics(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("ns")
	opts.LoadBackoff = 20 * time.Millisecond
	c := newCache[string](t, srv, opts)
	ctx := context.Background()
	boom := errors.New("origin down")
	_, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "", boom })
	assert.ErrorIs(t, err, boom)
	_, err = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { panic("bad loader") })
	assert.ErrorIs(t, err, ErrLoaderPanic)
	assert.Contains(t, err.Error(), "bad loader")
	// After the back-off the next load runs and is cached in both tiers.
	v, err := c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "ok", nil })
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	other := newCache[string](t, srv, testOptions[string]("ns"))
	v, err = other.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "ok", v)
	assert.Equal(t, uint64(2), c.Stats().LoadErrors)
}

func TestBadInputGetsAClearError(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("ns")
	opts.MaxValueBytes = 100
	c := newCache[string](t, srv, opts)
	ctx := context.Background()

	_, err := c.Get(ctx, "")
	assert.ErrorIs(t, err, ErrInvalidKey)
	assert.ErrorIs(t, c.Set(ctx, strings.Repeat("k", 513), "v"), ErrInvalidKey)
	assert.ErrorIs(t, c.Delete(ctx, "ok", ""), ErrInvalidKey)

	assert.ErrorIs(t, c.Set(ctx, "big", strings.Repeat("x", 200)), ErrValueTooLarge)
	_, err = c.Get(ctx, "big")
	assert.ErrorIs(t, err, ErrNotFound, "a refused Set stores nothing")
	// A loaded value too large to cache fails open: its callers get it,
	// uncached (every call loads again), counted.
	var loads atomic.Int32
	big := func(context.Context) (string, error) { loads.Add(1); return strings.Repeat("x", 200), nil }
	for range 2 {
		v, err := c.GetOrLoad(ctx, "big", big)
		require.NoError(t, err)
		assert.Len(t, v, 200)
	}
	assert.Equal(t, int32(2), loads.Load(), "not cached in either tier")
	assert.Equal(t, uint64(2), c.Stats().TooLarge)
	_, err = c.Get(ctx, "big")
	assert.ErrorIs(t, err, ErrNotFound)

	fc := newCache[func()](t, srv, testOptions[func()]("fn"))
	assert.ErrorIs(t, fc.Set(ctx, "k", func() {}), ErrCodec)
}

func TestCorruptRedisValueIsAMiss(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[user](t, srv, testOptions[user]("ns"))
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	for _, junk := range []string{"not an envelope", "tc\x01\x00" + strings.Repeat("\x00", 28) + "{not json"} {
		require.NoError(t, rc.Do(ctx, rc.B().Set().Key(c.remote.ValueKey("k")).Value(junk).Build()).Error())
		_, err := c.Get(ctx, "k")
		assert.ErrorIs(t, err, ErrNotFound)
	}
	u, err := c.GetOrLoad(ctx, "k", func(context.Context) (user, error) { return user{ID: 1}, nil })
	require.NoError(t, err)
	assert.Equal(t, 1, u.ID)
	assert.Equal(t, uint64(3), c.Stats().Corrupt)
	other := newCache[user](t, srv, testOptions[user]("ns"))
	u, err = other.Get(ctx, "k")
	require.NoError(t, err, "the load replaced the corrupt value in Redis")
	assert.Equal(t, 1, u.ID)
}

// A lease marker another writer left with absurd figures (a token stating
// a load of centuries, which doubled overflows) is waited out, not spun
// on: the waiter looks again when the lease ends, and loads.
func TestAForeignLeaseMarkerIsWaitedOut(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[user](t, srv, testOptions[user]("ns"))
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	marker := "tc\x00" + "x.y:9223372036854"
	require.NoError(t, rc.Do(ctx, rc.B().Set().Key(c.remote.ValueKey("k")).Value(marker).PxMilliseconds(300).Build()).Error())
	u, err := c.GetOrLoad(ctx, "k", func(context.Context) (user, error) { return user{ID: 7}, nil })
	require.NoError(t, err)
	assert.Equal(t, 7, u.ID, "loaded once the lease ended")
	assert.LessOrEqual(t, c.Stats().LeaseWaits, uint64(3), "one wait for the lease's end, not a round every instant")
}

// A lease marker with no TTL (PERSIST, a DUMP and RESTORE at TTL 0,
// another program) would never end: every caller of the key waited for
// it, polling Redis every millisecond, until its ctx ended. It is given a
// lease's life, and then taken.
func TestALeaseMarkerWithoutTTLEnds(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions[user]("ns")
	o.LeaseTTL = 300 * time.Millisecond
	c := newCache[user](t, srv, o)
	rc := redistest.Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, rc.Do(ctx, rc.B().Set().Key(c.remote.ValueKey("k")).Value("tc\x00"+"x.y:40").Build()).Error())
	var loads atomic.Int32
	u, err := c.GetOrLoad(ctx, "k", func(context.Context) (user, error) { loads.Add(1); return user{ID: 9}, nil })
	require.NoError(t, err)
	assert.Equal(t, 9, u.ID)
	assert.Equal(t, int32(1), loads.Load())
	assert.LessOrEqual(t, c.Stats().LeaseWaits, uint64(8), "paced waits until the lease's end, not a round every millisecond")
}

// A tag's version another program left longer than an envelope can carry
// made every value with the tag unreadable: each replica found it corrupt
// and loaded again, writing it back as unreadable as before. The version
// is replaced, and a value loaded once is read by the others.
func TestATagVersionTooLongIsReplaced(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, testOptions[string]("longtag"))
	rc := redistest.Client(t, srv)
	ctx := context.Background()
	versionKey := strings.Replace(rs[0].remote.ValueKey("x"), "{x}", "tagv:{t}", 1)
	require.NoError(t, rc.Do(ctx, rc.B().Set().Key(versionKey).Value(strings.Repeat("v", remote.MaxTagBytes+1)).Build()).Error())
	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "loaded", nil }
	for _, r := range rs {
		v, err := r.GetOrLoad(ctx, "k", load, WithTags("t"))
		require.NoError(t, err)
		assert.Equal(t, "loaded", v)
	}
	assert.Equal(t, int32(1), loads.Load(), "the second replica read the first one's value")
	assert.Zero(t, rs[1].Stats().Corrupt)

	o := testOptions[string]("longtag")
	o.MaxKeyBytes = 2 * remote.MaxTagBytes
	c := newCache[string](t, srv, o)
	assert.ErrorIs(t, c.Set(ctx, "k", "v", WithTags(strings.Repeat("t", remote.MaxTagBytes+1))), ErrInvalidTag,
		"a tag no envelope can carry is refused, whatever MaxKeyBytes")
}

func TestOptionsValidate(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	good := Options[string]{Client: rc, Namespace: "ns", LocalTTL: time.Second, RemoteTTL: time.Minute}
	for name, mutate := range map[string]func(*Options[string]){
		"nil client":         func(o *Options[string]) { o.Client = nil },
		"empty namespace":    func(o *Options[string]) { o.Namespace = "" },
		"brace in namespace": func(o *Options[string]) { o.Namespace = "a{b}" },
		"space in namespace": func(o *Options[string]) { o.Namespace = "a b" },
		"no local TTL":       func(o *Options[string]) { o.LocalTTL = 0 },
		"local over remote":  func(o *Options[string]) { o.LocalTTL = time.Hour },
		"jitter 1":           func(o *Options[string]) { o.TTLJitter = 1 },
		"negative cost":      func(o *Options[string]) { o.LocalMaxCost = -1 },
		"too many tags":      func(o *Options[string]) { o.MaxTags = remote.MaxTags + 1 },
	} {
		o := good
		mutate(&o)
		_, err := New[string](context.Background(), o)
		assert.ErrorIs(t, err, ErrInvalidOptions, name)
	}
	c, err := New[string](context.Background(), good)
	require.NoError(t, err)
	c.Close()
}

func TestUseAfterClose(t *testing.T) {
	srv := redistest.Start(t)
	c := newCache[string](t, srv, testOptions[string]("ns"))
	ctx := context.Background()
	require.NoError(t, c.Set(ctx, "k", "v"))
	c.Close()
	c.Close()
	_, err := c.Get(ctx, "k")
	assert.ErrorIs(t, err, ErrClosed)
	_, err = c.GetOrLoad(ctx, "k", func(context.Context) (string, error) { return "v", nil })
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, c.Set(ctx, "k", "v"), ErrClosed)
	assert.ErrorIs(t, c.Delete(ctx, "k"), ErrClosed)
	// Calls of no keys too: nothing to do is no reason to pretend.
	assert.ErrorIs(t, c.Delete(ctx), ErrClosed)
	_, err = c.GetMany(ctx, nil)
	assert.ErrorIs(t, err, ErrClosed)
	_, err = c.GetOrLoadMany(ctx, nil, func(context.Context, []string) (map[string]string, error) { return nil, nil })
	assert.ErrorIs(t, err, ErrClosed)
	_, _, err = c.Warm(ctx, nil)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, c.InvalidateTags(ctx), ErrClosed)
}

func TestNewFailsWhenRedisDoesNotAnswer(t *testing.T) {
	srv := redistest.Start(t)
	opts := testOptions[string]("ns")
	opts.Client = redistest.Client(t, srv)
	require.NoError(t, srv.Pause())
	defer srv.Resume()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := New[string](ctx, opts)
	assert.ErrorIs(t, err, ErrRemote)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestNamespacesAreIsolated(t *testing.T) {
	srv := redistest.Start(t)
	a := newCache[string](t, srv, testOptions[string]("svc-a"))
	b := newCache[string](t, srv, testOptions[string]("svc-b"))
	ctx := context.Background()
	require.NoError(t, a.Set(ctx, "k", "from a"))
	require.NoError(t, b.Set(ctx, "k", "from b"))
	va, _ := a.Get(ctx, "k")
	vb, _ := b.Get(ctx, "k")
	assert.Equal(t, "from a", va)
	assert.Equal(t, "from b", vb)
	require.NoError(t, a.Delete(ctx, "k"))
	assert.Never(t, func() bool { return b.Stats().InvalidationsReceived > 0 }, 200*time.Millisecond, 10*time.Millisecond)
	vb, err := b.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "from b", vb)
}

func TestCloseUnsubscribesFromTheCallersClient(t *testing.T) {
	srv := redistest.Start(t)
	rc := redistest.Client(t, srv)
	opts := testOptions[string]("ns")
	opts.Client = rc
	subscribers := func() int64 {
		arr, err := rc.Do(context.Background(), rc.B().PubsubNumsub().Channel("ns:inv").Build()).ToArray()
		require.NoError(t, err)
		n, err := arr[1].AsInt64()
		require.NoError(t, err)
		return n
	}
	for range 20 {
		c, err := New[string](context.Background(), opts)
		require.NoError(t, err)
		require.Equal(t, int64(1), subscribers())
		c.Close()
		require.Eventually(t, func() bool { return subscribers() == 0 }, 5*time.Second, time.Millisecond,
			"Close must unsubscribe: the client is the caller's and stays open")
	}
	// The caller's client still works.
	require.NoError(t, rc.Do(context.Background(), rc.B().Ping().Build()).Error())
}

// A miss costs the round trips the design promises: a value Redis holds,
// one (the read that would have taken the lease finds the value); a key
// Redis lacks, two (that read takes the lease, then the fill); Get with no
// loader, one plain GET, which leaves no lease behind.
func TestMissRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, testOptions[string]("trips"))
	ctx := context.Background()
	calls := func(c *Cache[string]) map[string]uint64 {
		out := map[string]uint64{}
		for i, op := range c.Stats().Remote.Ops {
			if op.Calls > 0 {
				out[remote.Op(i).String()] = op.Calls
			}
		}
		return out
	}
	diff := func(before, after map[string]uint64) map[string]uint64 {
		out := map[string]uint64{}
		for k, v := range after {
			if d := v - before[k]; d > 0 {
				out[k] = d
			}
		}
		return out
	}
	var loads atomic.Int32
	load := func(context.Context) (string, error) { loads.Add(1); return "loaded", nil }

	require.NoError(t, rs[0].Set(ctx, "held", "v"))
	before := calls(rs[1])
	v, err := rs[1].GetOrLoad(ctx, "held", load)
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	assert.Equal(t, map[string]uint64{"get_or_lease": 1}, diff(before, calls(rs[1])), "a value Redis holds: one round trip")

	before = calls(rs[1])
	v, err = rs[1].GetOrLoad(ctx, "absent", load)
	require.NoError(t, err)
	assert.Equal(t, "loaded", v)
	assert.Equal(t, map[string]uint64{"get_or_lease": 1, "fill": 1}, diff(before, calls(rs[1])), "a key Redis lacks: lease in the read, then the fill")
	assert.Equal(t, int32(1), loads.Load())

	before = calls(rs[1])
	_, err = rs[1].Get(ctx, "nothing")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, map[string]uint64{"get": 1}, diff(before, calls(rs[1])), "Get without a loader: a plain GET")
	r, err := rs[0].remote.GetOrLease(ctx, "nothing", "next")
	require.NoError(t, err)
	assert.True(t, r.Leased, "Get left no lease behind")
}

// TestAValueJustReadIsALocalHit: the read right after a miss that Redis
// answered, or that loaded, is a local hit, although the insert reaches
// ristretto later (the local tier's pending lists, and their hand-over).
// Before the lists, most of these second reads missed and went to Redis
// again.
func TestAValueJustReadIsALocalHit(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	writer := newCache[int](t, srv, testOptions[int]("justread"))
	reader := newCache[int](t, srv, testOptions[int]("justread"))
	const n = 200
	for i := range n {
		require.NoError(t, writer.Set(ctx, fmt.Sprint("redis-", i), i))
	}
	// The writes' invalidations land first: one that reached the reader
	// after its read of the key would rightly drop the copy just read.
	require.Eventually(t, func() bool { return reader.Stats().InvalidationsReceived >= n }, 10*time.Second, time.Millisecond)
	unused := func(context.Context) (int, error) { return 0, errors.New("unused: Redis holds the key") }
	for i := range n {
		k := fmt.Sprint("redis-", i)
		before := reader.Stats()
		v, err := reader.GetOrLoad(ctx, k, unused)
		require.NoError(t, err)
		require.Equal(t, i, v)
		v, err = reader.Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, i, v)
		after := reader.Stats()
		require.Equal(t, before.LocalMisses+1, after.LocalMisses, "key %s: the second read missed locally", k)
		require.Equal(t, before.LocalHits+1, after.LocalHits, "key %s", k)
	}
	for i := range n {
		k := fmt.Sprint("loaded-", i)
		before := reader.Stats()
		v, err := reader.GetOrLoad(ctx, k, func(context.Context) (int, error) { return -i, nil })
		require.NoError(t, err)
		require.Equal(t, -i, v)
		v, err = reader.Get(ctx, k)
		require.NoError(t, err)
		require.Equal(t, -i, v)
		after := reader.Stats()
		require.Equal(t, before.LocalMisses+1, after.LocalMisses, "key %s: the second read missed locally: resets %v, local %+v, bus %+v", k, after.LocalResets, after.Local, after.Bus)
		require.Equal(t, before.LocalHits+1, after.LocalHits, "key %s", k)
	}
}
