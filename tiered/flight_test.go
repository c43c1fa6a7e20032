package tiered

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A worker that ran a fetch waits for the next instead of ending, so
// fetches one after another run on one goroutine; close lets it go.
func TestWorkersAreReused(t *testing.T) {
	var w workers
	for range 20 {
		done := make(chan struct{})
		w.run(func() { close(done) })
		<-done
		require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.idle) == 1 }, 5*time.Second, time.Millisecond)
	}
	assert.Equal(t, 1, workerGoroutines(), "one goroutine ran them all")
	w.close()
	require.Eventually(t, func() bool { return workerGoroutines() == 0 }, 5*time.Second, time.Millisecond, "closed: the parked worker ended")
	done := make(chan struct{})
	w.run(func() { close(done) }) // after close: runs, then ends
	<-done
	require.Eventually(t, func() bool { return workerGoroutines() == 0 }, 5*time.Second, time.Millisecond)
}

// workerGoroutines counts the goroutines in workers.loop.
func workerGoroutines() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "tiered.(*workers).loop(")
}

// Concurrent fetches each get a goroutine; when they end, at most
// maxIdleWorkers stay parked.
func TestWorkersParkAtMostTheCap(t *testing.T) {
	var w workers
	defer w.close()
	release := make(chan struct{})
	var started sync.WaitGroup
	n := maxIdleWorkers + 20
	started.Add(n)
	for range n {
		w.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return len(w.idle) == maxIdleWorkers }, 5*time.Second, time.Millisecond)
	require.Eventually(t, func() bool { return workerGoroutines() == maxIdleWorkers }, 5*time.Second, time.Millisecond, "the others ended")
}
