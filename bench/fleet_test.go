package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestMain lets this test binary serve as a replica worker: process mode
// re-executes the running binary.
func TestMain(m *testing.M) {
	if IsWorker() {
		os.Exit(ServeWorker())
	}
	os.Exit(m.Run())
}

func entry(t *testing.T, name string) Entry {
	cs, err := Select([]string{name})
	require.NoError(t, err)
	return Entry{Candidate: cs[0], Seed: 1}
}

func TestFleetModes(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, processes := range []bool{false, true} {
		t.Run(map[bool]string{false: "in-process", true: "processes"}[processes], func(t *testing.T) {
			run := &Run{Addr: srv.Addr(), Config: Config{Processes: processes}}
			f, err := run.newFleet(ctx, "modes", entry(t, "tiercache"), 2)
			require.NoError(t, err)
			defer f.close()
			a, b := f.members[0], f.members[1]
			if processes {
				assert.NotEqual(t, os.Getpid(), a.pid, "a replica runs in a process of its own")
				assert.NotEqual(t, a.pid, b.pid)
			} else {
				assert.Equal(t, os.Getpid(), a.pid)
			}
			_, err = call[struct{}](ctx, b.p, "touch", touchArgs{Key: "k", Times: 1})
			require.NoError(t, err)
			_, err = call[struct{}](ctx, b.p, "watch", watchArgs{Key: "k", Want: "v1"})
			require.NoError(t, err)
			set, err := call[wallReply](ctx, a.p, "set", setArgs{Key: "k", Value: "v1"})
			require.NoError(t, err)
			seen, err := call[wallReply](ctx, b.p, "seen", deadlineArgs{Deadline: set.At + int64(5*time.Second)})
			require.NoError(t, err)
			assert.NotZero(t, seen.At, "the other replica read the write")

			old := b.pid
			_, err = call[struct{}](ctx, b.p, "load.start", loadSpec{Keys: 10, Goroutines: 1, OpTimeout: time.Second, Loader: time.Millisecond})
			require.NoError(t, err)
			_, err = f.replace(ctx, 1)
			require.NoError(t, err)
			if processes {
				assert.NotEqual(t, old, f.members[1].pid, "a replaced replica is a new process")
			}
			_, err = call[struct{}](ctx, f.members[1].p, "touch", touchArgs{Key: "k", Times: 1})
			require.NoError(t, err, "the successor serves")
		})
	}
}

func TestFleetWorkerCrashIsAnError(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	run := &Run{Addr: srv.Addr(), Config: Config{Processes: true}}
	f, err := run.newFleet(ctx, "crash", entry(t, "naive"), 1)
	require.NoError(t, err)
	defer f.close()
	p, err := os.FindProcess(f.members[0].pid)
	require.NoError(t, err)
	require.NoError(t, p.Kill())
	_, err = call[struct{}](ctx, f.members[0].p, "touch", touchArgs{Key: "k", Times: 1})
	assert.Error(t, err, "a call to a dead replica fails rather than hangs")
}

// TestZipfLedgerAcrossProcesses: the staleness check, done after the run
// from the source's write log, catches a cache with no cross-replica
// invalidation and passes a coherent one.
func TestZipfLedgerAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	run := &Run{Addr: srv.Addr(), Config: Config{Processes: true, Duration: time.Second, Replicas: 2}}
	defer run.Close()
	// Many keys: with few, every replica rewrites each key within the grace
	// itself, and even a cache that never hears of its peers looks fresh.
	shape := zipfShape{name: "ledger", keys: 1000, s: 1.1, goroutines: 2, writePct: 5, loader: time.Millisecond}
	figure := func(r Result, name string) float64 {
		m, ok := r.Metric(name)
		require.True(t, ok, "no %s in %+v", name, r.Metrics)
		return m.Value
	}

	stale, err := runZipf(ctx, run, entry(t, "go-redis-cache"), shape)
	require.NoError(t, err)
	assert.Positive(t, figure(stale, "stale-reads"), "go-redis-cache keeps its own copy after another replica's write")

	tc, err := runZipf(ctx, run, entry(t, "tiercache"), shape)
	require.NoError(t, err)
	assert.Zero(t, figure(tc, "stale-reads"))
	assert.Positive(t, figure(tc, "throughput"))
	assert.Positive(t, figure(tc, "loader-calls"), "a cold start loads from the origin")
	assert.Positive(t, figure(tc, "own-redis-calls"), "tiercache's own counters travel back")
	assert.Positive(t, figure(tc, "own-invalidations"), "the writes' invalidations reach the other replicas")
	assert.GreaterOrEqual(t, figure(tc, "own-lease-waits"), 0.0)
	assert.Positive(t, tc.RedisPerOp["evalsha"], "Redis's commandstats are diffed per run")
	assert.NotEmpty(t, tc.Samples["read latency (µs)"])
}
