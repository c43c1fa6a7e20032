package tiered

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

func trackingOptions[V any](ns string) Options[V] {
	o := testOptions[V](ns)
	o.Transport = TransportTracking
	return o
}

// TestTrackingSeesWritesByOtherPrograms: a value changed with a plain
// redis-cli SET, never through tiercache, still invalidates every replica.
func TestTrackingSeesWritesByOtherPrograms(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, trackingOptions[string]("track"))
	ctx := context.Background()
	primeTracked(t, rs)

	// Another program overwrites the value key with garbage: the replica
	// must drop its copy (and then treat the garbage as a miss).
	_, err := srv.Command("SET", rs[1].remote.ValueKey("k"), "written by someone else")
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, ok := rs[1].local.Get("k"); return !ok }, 5*time.Second, time.Millisecond)
	_, err = rs[1].Get(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Positive(t, rs[1].Stats().Corrupt)
}

// TestTrackingSeesExpiry: a value that expires in Redis is dropped from
// the local tiers, though its local TTL is far off.
func TestTrackingSeesExpiry(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, trackingOptions[string]("expiry"))
	ctx := context.Background()
	require.NoError(t, rs[0].Set(ctx, "k", "v1"))
	// The expiry is set behind tiercache's back. That change is pushed
	// too: wait for it before the replica reads the key.
	before := rs[1].Stats().Bus.Received
	_, err := srv.Command("PEXPIRE", rs[0].remote.ValueKey("k"), "300")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rs[1].Stats().Bus.Received > before }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		v, err := rs[1].Get(ctx, "k")
		rs[1].local.Wait()
		_, ok := rs[1].local.Get("k")
		return err == nil && v == "v1" && ok
	}, 5*time.Second, time.Millisecond, "replica 1 holds k locally")
	// Now only Redis's expiry can make a read miss: the local TTL is a
	// minute, and each read refills the local tier while Redis has k.
	require.Eventually(t, func() bool { _, err := rs[1].Get(ctx, "k"); return errors.Is(err, ErrNotFound) }, 5*time.Second, time.Millisecond)
}

// TestTrackingFlushesOnDisconnect: the tracking connection is killed; the
// replica flushes (pushes were lost) and tracks again on a new connection.
func TestTrackingFlushesOnDisconnect(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, trackingOptions[string]("trackcut"))
	ctx := context.Background()
	require.NoError(t, rs[0].Set(ctx, "k", "v1"))
	_, err := rs[1].Get(ctx, "k")
	require.NoError(t, err)
	before := rs[1].Stats()
	_, err = srv.KillClients("normal")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s := rs[1].Stats()
		return s.Bus.Resubscribes > before.Bus.Resubscribes && s.LocalResets["resubscribe"] > before.LocalResets["resubscribe"]
	}, 10*time.Second, time.Millisecond)
	_, ok := rs[1].local.Get("k")
	assert.False(t, ok, "the local tier was flushed")
	// Tracking works on the new connection. Every data connection was
	// killed too: a replica's first call on one may fail (EOF).
	require.Eventually(t, func() bool { _, err := rs[1].Get(ctx, "k"); return err == nil }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return rs[0].Set(ctx, "k", "v2") == nil }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { v, err := rs[1].Get(ctx, "k"); return err == nil && v == "v2" }, 5*time.Second, time.Millisecond)
}

// TestTrackingFlushIsCountedAsSuch: Redis tells tracking connections that
// every key may have changed (a FLUSHALL); the replica flushes its local
// tier and counts it under its own reason (it was counted as a peer's
// message, which the generation key's own push also counts).
func TestTrackingFlushIsCountedAsSuch(t *testing.T) {
	srv := redistest.Start(t)
	rs := replicas[string](t, srv, 2, trackingOptions[string]("trackflush"))
	ctx := context.Background()
	primeTracked(t, rs)
	before := rs[1].Stats()
	_, err := srv.Command("FLUSHALL")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return rs[1].Stats().LocalResets["tracking-flush"] > before.LocalResets["tracking-flush"]
	}, 5*time.Second, time.Millisecond)
	_, ok := rs[1].local.Get("k")
	assert.False(t, ok, "the local tier was flushed")
	_, err = rs[1].Get(ctx, "k")
	assert.ErrorIs(t, err, ErrNotFound)
}

// TestStalenessLedgerTracking is the staleness ledger over the tracking
// transport: the invalidation arrives on another connection than the read,
// and the fill fence must still hold.
func TestStalenessLedgerTracking(t *testing.T) {
	srv := redistest.Start(t)
	res := runLedger(t, srv, ledgerRun{replicas: 4, keys: 64, minReads: 100_000, minDuration: 2 * time.Second, maxDuration: 60 * time.Second,
		transport: TransportTracking})
	t.Logf("tracking ledger: reads=%d stale=%d local-hits=%d writes=%d loads=%d", res.reads, res.stale, res.localHits, res.writes, res.loads)
	assertLedgerRan(t, res)
	assert.Zero(t, res.stale)
	assert.Positive(t, res.localHits)
}

// primeTracked writes k = "v1" through rs[0] and makes rs[1] hold it
// locally, after the write's own tracking push has reached it (or it would
// drop the copy it is about to read).
func primeTracked(t *testing.T, rs []*Cache[string]) {
	t.Helper()
	ctx := context.Background()
	before := rs[1].Stats().Bus.Received
	require.NoError(t, rs[0].Set(ctx, "k", "v1"))
	require.Eventually(t, func() bool { return rs[1].Stats().Bus.Received > before }, 5*time.Second, time.Millisecond)
	// Read until the copy is held: under load a late ping may flush the
	// local tier between the read and the check.
	require.Eventually(t, func() bool {
		v, err := rs[1].Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "v1", v)
		rs[1].local.Wait()
		_, ok := rs[1].local.Get("k")
		return ok
	}, 5*time.Second, time.Millisecond, "replica 1 holds k locally")
}
